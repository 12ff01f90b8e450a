"""Reading the job's rendered config file (YAML, or JSON for a `.json` file) and validating it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from vipdrain.config.checks import build
from vipdrain.config.props import Props, Report, flatten
from vipdrain.config.spec import parse_link, parse_spec
from vipdrain.config.vips import InterfaceLookup
from vipdrain.errors import MISSING, ConfigInvalid, Problem
from vipdrain.model import JobConfig

SECTIONS = ("properties", "spec", "links")


def load_config(path: str | Path, *, interface_of: InterfaceLookup | None = None) -> JobConfig:
    """Read the job's rendered config (YAML, or JSON for a `.json` file) and validate it.

    An unreadable or unparseable file is a `ConfigInvalid` with one problem naming the file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"cannot be read: {exc.strerror or exc}")]) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                                     f"offset {exc.start})")]) from exc
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"is not valid {kind}: {_parse_error(exc)}")]) from exc
    except RecursionError as exc:
        raise _too_deep(path, kind) from exc
    try:
        return parse_config(doc if doc is not None else {}, interface_of=interface_of)
    except RecursionError as exc:
        raise _too_deep(path, kind) from exc


def _too_deep(path: Path, kind: str) -> ConfigInvalid:
    # The parsers (and the checks) recurse per level: a document nested thousands deep is no
    # job config, and must not end in a traceback.
    return ConfigInvalid([Problem(str(path), MISSING, f"is nested too deeply to be a job config ({kind} "
                                  "nesting beyond Python's recursion limit)")])


def _parse_error(exc: Exception) -> str:
    """One line: what the parser expected and where."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def parse_config(doc: Mapping[str, Any], *, interface_of: InterfaceLookup | None = None) -> JobConfig:
    """Validate the rendered document; raise `ConfigInvalid` listing every problem found."""
    report = Report()
    if not isinstance(doc, Mapping):
        report.add("(config)", doc, f"must be a map with the sections {', '.join(SECTIONS)}")
        raise ConfigInvalid(report.problems)
    for key in doc:
        if key not in SECTIONS:
            report.add(str(key), doc[key], f"is not a known section (expected {', '.join(SECTIONS)})")
    legacy: dict[str, Any] = {}
    props = Props(flatten(doc.get("properties"), report, legacy), report)
    spec = parse_spec(doc.get("spec"), report)
    link_peers = parse_link(doc.get("links"), spec, report)
    cfg = build(props, spec, link_peers, interface_of, report, legacy)
    if cfg is None or report.problems:
        raise ConfigInvalid(report.problems)
    return cfg
