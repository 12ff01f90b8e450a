"""The release's blobs: fetch them (pinned keepalived source, cp312 manylinux wheels) and add them.

    python3 scripts/release_blobs.py fetch --dest DIR [--keepalived-tarball FILE | --keepalived-stand-in]
    python3 scripts/release_blobs.py add --dest DIR [--release-dir .] [--bosh bosh | --stand-in]
    python3 scripts/release_blobs.py keepalived --dest DIR [--keepalived-tarball FILE]

`fetch` lays the blobs out under DIR as their blob paths (`keepalived/keepalived-2.3.4.tar.gz`,
`vipdrain-deps/<wheel>`); `add` makes config/blobs.yml say exactly that: `bosh remove-blob` for
blobs of ours that are no longer fetched (an older wheel), `bosh add-blob` for the rest.

keepalived: the version haproxy-boshrelease ships (cloudfoundry/haproxy-boshrelease at commit
c8180eddb84b78c107b19f4c6191616120c05d21: packages/keepalived/packaging pins
KEEPALIVED_VERSION=2.3.4 from https://keepalived.org/software/keepalived-2.3.4.tar.gz, and its
config/blobs.yml lists that tarball with size 1241315 and sha256 6afd95dd...36bf). A download is
refused unless its sha256 is that one.

`add --stand-in` does what `bosh add-blob` does, for CI (no bosh CLI there): cloudfoundry/bosh-cli
at 19ee1a8d9adeb784eb62892517be53c2dfa5f814, releasedir/fs_blobs_dir.go `TrackBlob`: the file is
copied to blobs/PATH (a safe local path) and config/blobs.yml gets `PATH: {size, sha}` with the
SHA-1 (the CLI's default digest), no object_id until `bosh upload-blobs`.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Pin:
    """A source tarball pinned by version and sha256."""

    version: str
    url: str
    sha256: str
    size: int

    @property
    def blob_path(self) -> str:
        return f"keepalived/keepalived-{self.version}.tar.gz"


KEEPALIVED = Pin(
    version="2.3.4",
    url="https://keepalived.org/software/keepalived-2.3.4.tar.gz",
    sha256="6afd95ddb7d3e0d3b8b8e5b3a489144131b61a01b06d29e883d0c44acc8a36bf",
    size=1241315,
)

#: The stemcell's Python (the vendored python-3.12 package) and platform.
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
#: Blob directories this release owns; `add` removes stale blobs there only.
OWN_BLOB_DIRS = ("keepalived/", "vipdrain-deps/")
WHEEL_DIR = "vipdrain-deps"


class BlobError(Exception):
    """A blob cannot be fetched or added; the message says which and why."""


def runtime_requirements(pyproject: Path) -> list[str]:
    """pyproject.toml's `project.dependencies`: what the wheels must cover."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise BlobError("reading pyproject.toml needs Python 3.11 or later (tomllib)") from None
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def pip_download_command(
    requirements: Sequence[str], dest: Path, python: str = sys.executable, python_version: str = PYTHON_VERSION
) -> list[str]:
    """`pip download` of binary wheels for `python_version` on x86_64 manylinux (not this machine)."""
    abi = "cp" + python_version.replace(".", "")
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    return [
        python, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--dest", str(dest), "--only-binary", ":all:",
        "--python-version", python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
        *platforms, "--platform", "any",
        *requirements,
    ]  # fmt: skip


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_pin(path: Path, pin: Pin) -> None:
    """Raise BlobError unless `path` is the pinned tarball."""
    actual = sha256_of(path)
    if actual != pin.sha256:
        raise BlobError(f"{path}: sha256 {actual}, expected {pin.sha256} (keepalived {pin.version}, {pin.url})")


def fetch_keepalived(dest: Path, pin: Pin = KEEPALIVED, tarball: Path | None = None, stand_in: bool = False) -> Path:
    """Place the keepalived tarball at dest/<blob path>: downloaded (or copied from `tarball`) and
    verified, or - `stand_in`, CI without internet - a file with the right name that is no tarball."""
    target = dest / pin.blob_path
    target.parent.mkdir(parents=True, exist_ok=True)
    if stand_in:
        target.write_text(f"stand-in for {pin.url} (sha256 {pin.sha256}): not a tarball, never compile it\n")
        return target
    if target.is_file() and sha256_of(target) == pin.sha256:
        return target
    partial = target.with_name(target.name + ".part")
    if tarball is not None:
        shutil.copyfile(tarball, partial)
    else:
        try:
            with urllib.request.urlopen(pin.url, timeout=120) as answer, partial.open("wb") as out:
                shutil.copyfileobj(answer, out)
        except OSError as exc:
            raise BlobError(f"cannot download {pin.url}: {exc} (or pass --keepalived-tarball FILE)") from exc
    try:
        verify_pin(partial, pin)
    except BlobError:
        partial.unlink()
        raise
    partial.replace(target)
    return target


def fetch_wheels(dest: Path, requirements: Sequence[str], python_version: str = PYTHON_VERSION) -> list[Path]:
    """Download the wheels into dest/vipdrain-deps/ (emptied first: it holds exactly one set)."""
    wheel_dir = dest / WHEEL_DIR
    shutil.rmtree(wheel_dir, ignore_errors=True)
    wheel_dir.mkdir(parents=True)
    done = subprocess.run(
        pip_download_command(requirements, wheel_dir, python_version=python_version),
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BlobError(f"pip download failed for {python_version} manylinux x86_64:\n{done.stderr.strip()}")
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise BlobError(f"pip download left no wheels in {wheel_dir}")
    return wheels


def staged_blobs(dest: Path) -> dict[str, Path]:
    """Blob path -> file, for everything `fetch` placed under dest."""
    return {
        p.relative_to(dest).as_posix(): p
        for p in sorted(dest.rglob("*"))
        if p.is_file() and not p.name.endswith(".part")
    }


@dataclass(frozen=True)
class BlobPlan:
    """What `add` does to config/blobs.yml: blobs to remove, then (blob path, file) to add."""

    remove: tuple[str, ...]
    add: tuple[tuple[str, Path], ...]


def plan(index: dict, staged: dict[str, Path]) -> BlobPlan:
    """Remove our blobs that are not staged any more; add every staged one whose size or digest
    differs from the index (bosh add-blob of an unchanged file would be a no-op anyway)."""
    remove = tuple(sorted(p for p in index if p.startswith(OWN_BLOB_DIRS) and p not in staged))
    add = tuple((path, file) for path, file in staged.items() if not _indexed(index.get(path), file))
    return BlobPlan(remove=remove, add=add)


def _indexed(entry: object, file: Path) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("size") == file.stat().st_size
        and entry.get("sha") in (sha1_of(file), "sha256:" + sha256_of(file))
    )


def sha1_of(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def read_index(release_dir: Path) -> dict:
    path = release_dir / "config" / "blobs.yml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def stand_in_add_blob(release_dir: Path, file: Path, blob_path: str) -> None:
    """What `bosh add-blob FILE PATH` does (fs_blobs_dir.go TrackBlob), without the CLI."""
    parts = Path(blob_path).parts
    if not parts or Path(blob_path).is_absolute() or ".." in parts:
        raise BlobError(f"Invalid blob path '{blob_path}': must be a safe local path")
    target = release_dir / "blobs" / blob_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(file, target)
    index = read_index(release_dir)
    index[blob_path] = {"size": target.stat().st_size, "sha": sha1_of(target)}
    _write_index(release_dir, index)


def stand_in_remove_blob(release_dir: Path, blob_path: str) -> None:
    """What `bosh remove-blob PATH` does (fs_blobs_dir.go UntrackBlob)."""
    (release_dir / "blobs" / blob_path).unlink(missing_ok=True)
    index = read_index(release_dir)
    index.pop(blob_path, None)
    _write_index(release_dir, index)


def _write_index(release_dir: Path, index: dict) -> None:
    text = yaml.safe_dump(dict(sorted(index.items())), default_flow_style=False) if index else "{}\n"
    (release_dir / "config" / "blobs.yml").write_text("---\n" + text)


def add(release_dir: Path, staged: dict[str, Path], bosh: str | None) -> BlobPlan:
    """Apply the plan with the bosh CLI (`bosh`), or with the stand-in when `bosh` is None."""
    todo = plan(read_index(release_dir), staged)
    for blob_path in todo.remove:
        if bosh is None:
            stand_in_remove_blob(release_dir, blob_path)
        else:
            subprocess.run([bosh, "remove-blob", "--dir", str(release_dir), blob_path], check=True)
    for blob_path, file in todo.add:
        if bosh is None:
            stand_in_add_blob(release_dir, file, blob_path)
        else:
            subprocess.run([bosh, "add-blob", "--dir", str(release_dir), str(file), blob_path], check=True)
    return todo


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download the blobs into --dest, laid out as blob paths")
    fetch.add_argument("--dest", type=Path, required=True)
    fetch.add_argument("--release-dir", type=Path, default=Path("."))
    fetch.add_argument("--python-version", default=PYTHON_VERSION, help="of the vendored python package")
    source = fetch.add_mutually_exclusive_group()
    source.add_argument("--keepalived-tarball", type=Path, help="a downloaded keepalived tarball (verified)")
    source.add_argument("--keepalived-stand-in", action="store_true", help="CI only: a file named like the tarball")
    only = sub.add_parser("keepalived", help="only the keepalived tarball into --dest (verified); print its path")
    only.add_argument("--dest", type=Path, required=True)
    only.add_argument("--keepalived-tarball", type=Path, help="a downloaded keepalived tarball (verified)")
    adder = sub.add_parser("add", help="make config/blobs.yml list exactly the fetched blobs")
    adder.add_argument("--dest", type=Path, required=True)
    adder.add_argument("--release-dir", type=Path, default=Path("."))
    how = adder.add_mutually_exclusive_group()
    how.add_argument("--bosh", default="bosh", help="the bosh CLI (default: bosh)")
    how.add_argument("--stand-in", action="store_true", help="CI only: do what bosh add-blob does, in Python")
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            requirements = runtime_requirements(args.release_dir / "pyproject.toml")
            tarball = fetch_keepalived(args.dest, tarball=args.keepalived_tarball, stand_in=args.keepalived_stand_in)
            wheels = fetch_wheels(args.dest, requirements, args.python_version)
            for path in [tarball, *wheels]:
                print(path.relative_to(args.dest).as_posix())
        elif args.command == "keepalived":
            print(fetch_keepalived(args.dest, tarball=args.keepalived_tarball))
        else:
            done = add(args.release_dir, staged_blobs(args.dest), None if args.stand_in else args.bosh)
            for blob_path in done.remove:
                print(f"removed blob {blob_path}")
            for blob_path, _file in done.add:
                print(f"added blob {blob_path}")
    except (BlobError, subprocess.CalledProcessError) as exc:
        print(f"release blobs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
