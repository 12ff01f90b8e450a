"""The job's scripts from `lifecycle/`: `common.sh` pasted in where a script includes it."""

from __future__ import annotations

import re
from pathlib import Path

from vipdrain.boshjob.job import GENERATED_BY, INCLUDE_MARK, REGENERATE, GeneratorError

_INCLUDE = re.compile(r'/(?P<name>[A-Za-z0-9_.-]+)"\s*' + re.escape(INCLUDE_MARK) + r"\s*$")


def expand_includes(text: str, lifecycle_dir: Path, source: str) -> str:
    """Replace each `source .../X" # vipdrain:include` line with the file X from `lifecycle_dir`."""
    out = []
    for line in text.splitlines():
        match = _INCLUDE.search(line)
        if not match:
            out.append(line)
            continue
        name = match.group("name")
        path = lifecycle_dir / name
        if not path.is_file():
            raise GeneratorError(f"lifecycle/{source} includes {name}, which is not in {lifecycle_dir}")
        body = [x for x in path.read_text().splitlines() if not x.startswith("# shellcheck shell=")]
        out.append(f"# --- lifecycle/{name}, pasted by vipdrain generate-job ---")
        out.extend(body)
        out.append(f"# --- end of lifecycle/{name} ---")
    return "\n".join(out) + "\n"


def render_script(lifecycle_dir: Path, source: str) -> str:
    """A lifecycle file as a job template: includes pasted, a 'generated' note after line 1."""
    path = lifecycle_dir / source
    if not path.is_file():
        raise GeneratorError(f"missing lifecycle source {path}")
    text = expand_includes(path.read_text(), lifecycle_dir, source)
    # BOSH renders every job file with ERB: an `<%` would run as Ruby, so the scripts hold none
    # (they take all their settings from the rendered config, through vipdrain).
    if "<%" in text:
        raise GeneratorError(f"lifecycle/{source} contains '<%', which BOSH's ERB would evaluate")
    first, _, rest = text.partition("\n")
    note = f"# {GENERATED_BY} from lifecycle/{source}: {REGENERATE}."
    if first.startswith("#!"):
        return f"{first}\n{note}\n{rest}"
    return f"{note}\n{text}"
