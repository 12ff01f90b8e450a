"""Reading the job's rendered config file (YAML, or JSON for a `.json` file) and validating it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
        doc = _parse(text, kind)
    except ValueError as exc:
        raise ConfigInvalid([Problem(str(path), MISSING, f"is not valid {kind}: {_parse_error(exc)}")]) from exc
    except RecursionError as exc:
        raise _too_deep(path, kind) from exc
    try:
        return parse_config(doc if doc is not None else {}, interface_of=interface_of)
    except RecursionError as exc:
        raise _too_deep(path, kind) from exc


def _parse(text: str, kind: str) -> Any:
    """The document in `text`. JSON is tried first whatever `kind`: the job's template renders
    JSON (which is YAML), and PyYAML's import alone costs more than a drain's whole config
    (about 12 ms of its start-up, vipdrain.drain). Only text that is not JSON is read as YAML.
    A YAML error is raised as a ValueError."""
    try:
        return json.loads(text)
    except ValueError:
        if kind == "JSON":
            raise
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _YamlInvalid(exc) from exc


class _YamlInvalid(ValueError):
    """A YAML parse error, carrying PyYAML's own (with its mark) for `_parse_error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.problem = getattr(error, "problem", None)
        self.problem_mark = getattr(error, "problem_mark", None)


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
