"""The whole job: build every generated file, compare with what is committed, write; the
`generate-job` and `keepalived-argv` commands."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vipdrain.boshjob.docs import render_properties_doc
from vipdrain.boshjob.job import (
    CONFIG_TEMPLATE,
    JOB_DIR,
    MONIT_SOURCE,
    PROPERTIES_DOC,
    SCRIPTS,
    GeneratorError,
    check_properties,
    render_spec,
    retired_properties,
)
from vipdrain.boshjob.scripts import render_script
from vipdrain.boshjob.template import render_config_template

if TYPE_CHECKING:  # annotations only: the schema loads when the generator runs
    from vipdrain.config.schema import PropertyDef

def build(
    props: Sequence[PropertyDef], lifecycle_dir: Path, retired: Mapping[str, str] | None = None
) -> dict[Path, str]:
    """Every generated file (path relative to the release root -> content)."""
    retired = retired_properties() if retired is None else dict(retired)
    check_properties(props)
    clash = sorted(set(retired) & {p.name for p in props})
    if clash:
        raise GeneratorError(f"retired property names are also in the schema: {', '.join(clash)}")
    templates = JOB_DIR / "templates"
    files: dict[Path, str] = {JOB_DIR / "spec": render_spec(props, retired)}
    files[JOB_DIR / "monit"] = render_script(lifecycle_dir, MONIT_SOURCE)
    for script in SCRIPTS:
        files[templates / script.template] = render_script(lifecycle_dir, script.source)
    files[templates / CONFIG_TEMPLATE] = render_config_template(props, retired)
    files[PROPERTIES_DOC] = render_properties_doc(props, retired)
    return files


def _owned_files(out: Path) -> set[Path]:
    """Files on disk under the directory the generator owns (relative to `out`)."""
    root = out / JOB_DIR
    if not root.is_dir():
        return set()
    return {p.relative_to(out) for p in root.rglob("*") if p.is_file()}


def differences(files: Mapping[Path, str], out: Path, context: int = 3) -> list[str]:
    """How the files under `out` differ from `files` (a unified diff per changed file)."""
    report: list[str] = []
    for rel, want in files.items():
        path = out / rel
        if not path.is_file():
            report.append(f"missing: {rel}")
            continue
        have = path.read_text()
        if have != want:
            diff = difflib.unified_diff(
                have.splitlines(), want.splitlines(), f"{rel} (on disk)", f"{rel} (generated)", lineterm="", n=context
            )
            report.append(f"differs: {rel}\n" + "\n".join(diff))
    report += [f"not generated (remove it): {rel}" for rel in sorted(_owned_files(out) - set(files))]
    return report


def write(files: Mapping[Path, str], out: Path) -> list[Path]:
    """Write the files that changed, remove strays under jobs/keepalived/; return what changed."""
    changed = []
    for rel, content in files.items():
        path = out / rel
        if path.is_file() and path.read_text() == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        changed.append(rel)
    for rel in sorted(_owned_files(out) - set(files)):
        (out / rel).unlink()
        changed.append(rel)
    return changed


def find_repo(start: Path | None = None) -> Path:
    """The release root: the nearest directory (from `start`, else the working directory, else
    this source tree) holding lifecycle/common.sh."""
    here = (start or Path.cwd()).resolve()
    candidates: Iterable[Path] = [here, *here.parents, Path(__file__).resolve().parents[3]]
    for directory in candidates:
        if (directory / "lifecycle" / "common.sh").is_file():
            return directory
    raise GeneratorError("no lifecycle/common.sh here or above: run from the vipdrain repository or pass --repo")


# --- CLI ------------------------------------------------------------------------------------


def cmd_generate_job(args: argparse.Namespace) -> int:
    from vipdrain.config.schema import PROPERTIES

    repo = Path(args.repo).resolve() if args.repo else find_repo()
    out = Path(args.out).resolve() if args.out else repo
    try:
        files = build(PROPERTIES, repo / "lifecycle")
    except GeneratorError as exc:
        print(f"vipdrain generate-job: {exc}", file=sys.stderr)
        return 1
    if args.check:
        report = differences(files, out)
        if report:
            print("\n".join(report), file=sys.stderr)
            print(
                f"vipdrain generate-job --check: {len(report)} generated file(s) out of date: run `make generate`",
                file=sys.stderr,
            )
            return 1
        print(f"generated files up to date ({len(files)} files)", file=sys.stderr)
        return 0
    changed = write(files, out)
    for rel in changed:
        print(f"wrote {rel}", file=sys.stderr)
    print(f"{len(changed)} of {len(files)} generated file(s) changed", file=sys.stderr)
    return 0


def cmd_keepalived_argv(args: argparse.Namespace) -> int:
    from vipdrain.keepalived import command_line
    from vipdrain.layout import Layout

    for arg in command_line(Layout.from_env(args.root), args.config_id):
        print(arg)
    return 0
