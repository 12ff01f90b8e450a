"""The release check: bosh-cli's own rules for building a release, applied to this tree offline.

`bosh create-release` fails late and one problem at a time; this check reports every problem at
once, before any bosh CLI is involved (CI has none). What it applies, read from
cloudfoundry/bosh-cli at commit 19ee1a8d9adeb784eb62892517be53c2dfa5f814:

- release/pkg/dir_reader.go (`applyFilesPattern`, `applyExcludedFilesPattern`,
  `isPackageableFile`, `collectFiles`): every `files:` glob of a package spec is matched against
  src/ and then blobs/ and must match at least one packageable file ("Missing files for pattern
  '%s'"); directories are not packageable, and neither is a regular file reached through a
  symlinked directory; `excluded_files` is applied afterwards (so a pattern whose only matches
  are excluded still counts as matched); `packaging` and `pre_packaging` may not come in
  through `files:`; a package without `packaging` is refused. A package dir with `spec.lock`
  (written by `bosh vendor-package`) is taken as is.
- vendor/github.com/bmatcuk/doublestar (v1.3.4, `RecursiveGlob`): `*` and `?` stop at `/` but
  match dot files (unlike Python's glob), `**` as a whole path component matches any number of
  directories, `[...]`, `{a,b}` and `\\` escapes.
- release/pkg/package.go and release/job/job.go (`AttachDependencies`, `AttachPackages`):
  dependencies and job packages must name packages of the release.
- release/job/dir_reader.go: every template named in a job spec is read from templates/.
- releasedir/fs_release_dir.go (`BuildRelease` calls `SyncBlobs` first) and
  releasedir/fs_blobs_dir.go (`removeUnknownBlobs`): create-release *deletes* every file under
  blobs/ that config/blobs.yml does not list, so a blob placed there by hand vanishes and its
  pattern then matches nothing. Blob paths must be safe local paths.
- releasedir/fs_config.go and releasedir/provider.go: config/final.yml needs a `name` and a
  `blobstore.provider` (`local`, `s3` or `gcs`; private.yml can only add options), which
  `bosh vendor-package` uploads to.

Names: bosh-cli's generators make `packages/NAME` and `jobs/NAME`; this check requires the spec's
name to equal its directory and to use only `A-Za-z0-9_.-`.

Release policy on top (`UNWANTED`): files that must never reach a VM even when a `files:` glob
catches them (`excluded_files` must take them out).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

#: Packages this release does not write itself: `bosh vendor-package` creates packages/NAME/spec.lock
#: (scripts/make-release.sh runs it). The value says where from.
VENDORED: dict[str, str] = {"python-3.12": "cloudfoundry/bosh-package-python-release"}

#: Files that must not be in a package even when its `files:` globs match them.
UNWANTED: dict[str, tuple[str, ...]] = {
    "vipdrain": ("vipdrain/lab/**", "**/__pycache__/**", "**/*.pyc"),
}

NAME = re.compile(r"[A-Za-z0-9_.-]+")
BLOBSTORE_PROVIDERS = ("local", "s3", "gcs")


@dataclass(frozen=True)
class Problem:
    """One reason `bosh create-release` would fail (or ship something it must not)."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# --- doublestar v1 globs ------------------------------------------------------------------------


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    parts.append(current)
    return parts


def _expand_braces(pattern: str) -> list[str]:
    """`a/{b,c/d}*` -> [`a/b*`, `a/c/d*`] (nested braces and escapes respected)."""
    depth, start, escaped = 0, -1, False
    for i, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                options, level, current, esc = [], 0, "", False
                for c in pattern[start + 1 : i]:
                    if esc:
                        esc = False
                    elif c == "\\":
                        esc = True
                    elif c == "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    elif c == "," and level == 0:
                        options.append(current)
                        current = ""
                        continue
                    current += c
                options.append(current)
                head, tail = pattern[:start], pattern[i + 1 :]
                return [p for option in options for p in _expand_braces(head + option + tail)]
    if depth:
        raise ValueError(f"unclosed '{{' in pattern '{pattern}'")
    return [pattern]


def _component_regex(component: str, pattern: str) -> str:
    out, i = "", 0
    while i < len(component):
        char = component[i]
        if char == "\\":
            if i + 1 >= len(component):
                raise ValueError(f"trailing '\\' in pattern '{pattern}'")
            out += re.escape(component[i + 1])
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = component.find("]", i + 2)
            if end == -1:
                raise ValueError(f"unclosed '[' in pattern '{pattern}'")
            body = component[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out += "[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]"
            i = end
        else:
            out += re.escape(char)
        i += 1
    return out


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching the relative paths doublestar v1's Glob finds for `pattern`."""
    alternatives = []
    for expanded in _expand_braces(pattern):
        components = _split_unescaped(expanded, "/")
        out = ""
        for index, component in enumerate(components):
            last = index == len(components) - 1
            if component == "**":
                out += ".+" if last else "(?:[^/]+/)*"
            else:
                out += _component_regex(component, pattern) + ("" if last else "/")
        alternatives.append(out)
    return re.compile("(?:" + "|".join(alternatives) + ")\\Z")


def _walk(base: Path) -> Iterator[tuple[str, Path]]:
    """(path relative to base, path) of every non-directory under base; directories are entered
    through symlinks too, as doublestar does (symlink loops are not followed twice)."""
    seen: set[tuple[int, int]] = set()
    stack = [base]
    while stack:
        directory = stack.pop()
        try:
            info = directory.stat()
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=True):
                stack.append(path)
            if not entry.is_dir(follow_symlinks=False):
                yield path.relative_to(base).as_posix(), path


def _packageable(path: Path, src_dir: Path) -> bool:
    """bosh-cli's isPackageableFile: a symlink always is; a regular file only when its real path,
    relative to src/'s real path, is the path it was found under (not through a symlinked dir)."""
    if path.is_symlink():
        return True
    return os.path.relpath(path, src_dir) == os.path.relpath(os.path.realpath(path), os.path.realpath(src_dir))


def matches(pattern: str, base: Path, src_dir: Path) -> dict[str, Path]:
    """Packageable files under `base` that `pattern` matches: relative path -> path."""
    if not base.is_dir():
        return {}
    regex = glob_regex(pattern)
    return {rel: path for rel, path in _walk(base) if regex.match(rel) and _packageable(path, src_dir)}


# --- packages -----------------------------------------------------------------------------------


@dataclass
class PackageFiles:
    """What `bosh create-release` puts in a package: relative path -> source file."""

    files: dict[str, Path] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def package_files(spec: Mapping, where: str, src_dir: Path, blobs_dir: Path) -> PackageFiles:
    """The files of one package spec, as bosh-cli's DirReaderImpl collects them."""
    result = PackageFiles()
    name = spec.get("name")
    for pattern in spec.get("files") or []:
        found = {**matches(pattern, blobs_dir, src_dir), **matches(pattern, src_dir, src_dir)}
        if not found:
            result.problems.append(
                Problem(where, f"Missing files for pattern '{pattern}' (nothing under src/ or blobs/ matches it)")
            )
        for rel, path in found.items():
            result.files.setdefault(rel, path)
    for pattern in spec.get("excluded_files") or []:
        for rel in {**matches(pattern, src_dir, src_dir), **matches(pattern, blobs_dir, src_dir)}:
            result.files.pop(rel, None)
    for special in ("packaging", "pre_packaging"):
        if special in result.files:
            result.problems.append(
                Problem(
                    where, f"Expected special '{special}' file to not be included via 'files' key for package '{name}'"
                )
            )
    for pattern in UNWANTED.get(str(name), ()):
        regex = glob_regex(pattern)
        shipped = sorted(rel for rel in result.files if regex.match(rel))
        if shipped:
            listed = ", ".join(shipped[:3]) + (f" and {len(shipped) - 3} more" if len(shipped) > 3 else "")
            result.problems.append(
                Problem(where, f"ships {listed}, which must not reach a VM: add '{pattern}' to excluded_files")
            )
    return result


def _load_yaml(path: Path, problems: list[Problem], root: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        problems.append(Problem(str(path.relative_to(root)), f"cannot read: {exc}"))
        return None


def _check_name(name: object, directory: str, where: str, kind: str) -> list[Problem]:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return [Problem(where, f"{kind} name {name!r} is not valid: use only A-Z a-z 0-9 _ . -")]
    if name != directory:
        return [Problem(where, f"{kind} name '{name}' differs from its directory '{directory}'")]
    return []


def _packages(root: Path, blobs_dir: Path, problems: list[Problem]) -> dict[str, list[str]]:
    """Package name -> dependencies, for every package of the release (vendored ones included)."""
    packages: dict[str, list[str]] = {}
    src_dir = root / "src"
    for directory in sorted(p for p in (root / "packages").glob("*") if p.is_dir()):
        lock = directory / "spec.lock"
        where = f"packages/{directory.name}"
        if lock.is_file():
            data = _load_yaml(lock, problems, root) or {}
            problems.extend(_check_name(data.get("name"), directory.name, where + "/spec.lock", "package"))
            packages[str(data.get("name"))] = list(data.get("dependencies") or [])
            continue
        spec = _load_yaml(directory / "spec", problems, root)
        if not isinstance(spec, dict):
            problems.append(Problem(where + "/spec", "missing or not a YAML mapping"))
            continue
        name = spec.get("name")
        problems.extend(_check_name(name, directory.name, where + "/spec", "package"))
        if not (directory / "packaging").is_file():
            problems.append(Problem(where, f"Expected to find '{directory / 'packaging'}' for package '{name}'"))
        problems.extend(package_files(spec, where + "/spec", src_dir, blobs_dir).problems)
        packages[str(name)] = list(spec.get("dependencies") or [])
    for name in VENDORED:  # not in a fresh clone: scripts/make-release.sh vendors it first
        packages.setdefault(name, [])
    for name, dependencies in packages.items():
        for dependency in dependencies:
            if dependency not in packages:
                problems.append(
                    Problem(
                        f"packages/{name}/spec",
                        f"Expected to find package '{dependency}' since it's a dependency of package '{name}'",
                    )
                )
    problems.extend(_cycles(packages))
    return packages


def _cycles(packages: Mapping[str, Sequence[str]]) -> list[Problem]:
    problems, done, active = [], set(), []

    def visit(name: str) -> None:
        if name in active:
            cycle = [*active[active.index(name) :], name]
            problems.append(Problem(f"packages/{name}/spec", "dependency cycle: " + " -> ".join(cycle)))
            return
        if name in done or name not in packages:
            return
        active.append(name)
        for dependency in packages[name]:
            visit(dependency)
        active.pop()
        done.add(name)

    for name in packages:
        visit(name)
    return problems


def _jobs(root: Path, packages: Mapping[str, object], problems: list[Problem]) -> None:
    for directory in sorted(p for p in (root / "jobs").glob("*") if p.is_dir()):
        where = f"jobs/{directory.name}/spec"
        spec = _load_yaml(directory / "spec", problems, root)
        if not isinstance(spec, dict):
            problems.append(Problem(where, "missing or not a YAML mapping"))
            continue
        name = spec.get("name")
        problems.extend(_check_name(name, directory.name, where, "job"))
        for template in spec.get("templates") or {}:
            if not (directory / "templates" / template).is_file():
                problems.append(
                    Problem(where, f"template '{template}' does not exist in jobs/{directory.name}/templates/")
                )
        for package in spec.get("packages") or []:
            if package not in packages:
                problems.append(
                    Problem(where, f"Expected to find package '{package}' since it's a dependency of job '{name}'")
                )


def _safe_blob_path(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def _blobs(root: Path, blobs_dir: Path, problems: list[Problem]) -> None:
    index = _load_yaml(root / "config" / "blobs.yml", problems, root)
    if index is None:
        index = {}
    if not isinstance(index, dict):
        problems.append(Problem("config/blobs.yml", "must be a mapping of blob path -> {size, sha, object_id}"))
        return
    for path, entry in index.items():
        if not _safe_blob_path(str(path)):
            problems.append(Problem("config/blobs.yml", f"Invalid blob path '{path}': must be a safe local path"))
            continue
        uploaded = isinstance(entry, dict) and entry.get("object_id")
        if not uploaded and not (blobs_dir / str(path)).is_file():
            problems.append(
                Problem(
                    "config/blobs.yml",
                    f"blob '{path}' has no object_id and is not in blobs/: add it again with bosh add-blob",
                )
            )
    for rel, _path in _walk(blobs_dir) if blobs_dir.is_dir() else ():
        if rel not in index:
            problems.append(
                Problem(
                    f"blobs/{rel}",
                    "not listed in config/blobs.yml: bosh create-release deletes it (it syncs blobs first); "
                    "add it with bosh add-blob",
                )
            )


def _final_config(root: Path, problems: list[Problem]) -> None:
    final = _load_yaml(root / "config" / "final.yml", problems, root) or {}
    where = "config/final.yml"
    if not isinstance(final, dict):
        problems.append(Problem(where, "not a YAML mapping"))
        return
    if bool(final.get("name")) == bool(final.get("final_name")):
        problems.append(Problem(where, "needs 'name' (or 'final_name', not both)"))
    blobstore = final.get("blobstore") or {}
    provider = blobstore.get("provider")
    options = blobstore.get("options") or {}
    if provider not in BLOBSTORE_PROVIDERS:
        problems.append(
            Problem(where, f"blobstore.provider is {provider!r}; bosh knows {', '.join(BLOBSTORE_PROVIDERS)}")
        )
    elif provider == "local" and not options.get("blobstore_path"):
        problems.append(Problem(where, "blobstore.options.blobstore_path is required for the local provider"))
    elif any(str(value).startswith("REPLACE") for value in options.values()):
        problems.append(
            Problem(
                where, "the blobstore is a placeholder: bosh vendor-package and create-release --final upload to it"
            )
        )


def check_release(root: Path, blobs_dir: Path | None = None) -> list[Problem]:
    """Every problem bosh-cli would find building a dev release of `root` (blobs in `blobs_dir`,
    default root/blobs), plus files that must not ship."""
    blobs_dir = root / "blobs" if blobs_dir is None else blobs_dir
    problems: list[Problem] = []
    _final_config(root, problems)
    _blobs(root, blobs_dir, problems)
    packages = _packages(root, blobs_dir, problems)
    _jobs(root, packages, problems)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 scripts/release_rules.py [RELEASE_DIR]`: exit 1 and list every problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release_dir", nargs="?", default=".", type=Path)
    args = parser.parse_args(argv)
    problems = check_release(args.release_dir.resolve())
    for problem in problems:
        print(f"release check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"release check: {args.release_dir} builds (bosh-cli's rules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
