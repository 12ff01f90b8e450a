#!/usr/bin/env python3
"""A stand-in for the bosh CLI's release commands, for testing scripts/make-release.sh offline.

Read from cloudfoundry/bosh-cli at commit 19ee1a8d9adeb784eb62892517be53c2dfa5f814; each command
refuses what the real one refuses, and records its argv in $FAKE_BOSH_LOG:

- `add-blob PATH BLOBS-PATH`, `remove-blob BLOBS-PATH` (cmd/add_blob.go, releasedir/fs_blobs_dir.go
  TrackBlob/UntrackBlob): scripts/release_blobs.py's stand-ins, which copy the file and write
  config/blobs.yml as TrackBlob does.
- `vendor-package PACKAGE SRC-DIR` (releasedir/fs_release_dir.go VendorPackage, provider.go
  newBlobstore, fs_config.go Blobstore): the package must exist in SRC-DIR; it is uploaded to this
  release's blobstore, which config/final.yml must configure: `local` needs `blobstore_path`
  (relative paths are joined to the release dir) and works offline; `s3`/`gcs` need credentials
  and a real bucket, which a workstation without config/private.yml does not have, so they are
  refused here as the upload is refused there. Writes packages/PACKAGE/spec.lock and
  .final_builds/packages/PACKAGE/index.yml.
- `create-release [--force] [--tarball T]` (fs_release_dir.go BuildRelease): first the blob sync
  (fs_blobs_dir.go SyncBlobs/removeUnknownBlobs deletes files in blobs/ that blobs.yml does not
  list), then the release is read with bosh-cli's rules (scripts/release_rules.py); any problem
  fails the command. Without --force a dirty git tree is refused (git status --porcelain).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import release_blobs
import release_rules


def fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


def _options(argv: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    options: dict[str, str | bool] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--dir", "--tarball", "--name", "--version"):
            options[arg[2:]] = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            options[key] = value
        elif arg.startswith("--"):
            options[arg[2:]] = True
        else:
            positional.append(arg)
        i += 1
    return options, positional


def vendor_package(release: Path, package: str, source: Path) -> int:
    spec = source / "packages" / package / "spec"
    if not spec.is_file():
        return fail(f"Expected to find package '{package}' in release at '{source}'")
    final = yaml.safe_load((release / "config" / "final.yml").read_text()) or {}
    blobstore = final.get("blobstore") or {}
    provider, options = blobstore.get("provider"), blobstore.get("options") or {}
    if not provider:
        return fail(f"Expected non-empty 'blobstore.provider' in config '{release / 'config' / 'final.yml'}'")
    if provider != "local":
        private = release / "config" / "private.yml"
        return fail(
            f"Finalizing vendored package: Creating blob in inner blobstore: {provider} blobstore "
            f"'{options}' refused the upload (no credentials: {private} missing)"
        )
    if not options.get("blobstore_path"):
        return fail("Validating blobstore: missing blobstore_path")
    store = Path(options["blobstore_path"])
    store = store if store.is_absolute() else release / store
    store.mkdir(parents=True, exist_ok=True)
    content = spec.read_bytes()
    blob_id = str(uuid.uuid4())
    (store / blob_id).write_bytes(content)
    fingerprint = hashlib.sha1(content).hexdigest()
    lock = release / "packages" / package
    lock.mkdir(parents=True, exist_ok=True)
    (lock / "spec.lock").write_text(yaml.safe_dump({"name": package, "fingerprint": fingerprint}))
    index = release / ".final_builds" / "packages" / package
    index.mkdir(parents=True, exist_ok=True)
    entry = {"version": fingerprint, "blobstore_id": blob_id, "sha1": hashlib.sha1(content).hexdigest()}
    (index / "index.yml").write_text(yaml.safe_dump({"builds": {fingerprint: entry}, "format-version": "2"}))
    return 0


def create_release(release: Path, force: bool, tarball: str | None) -> int:
    if not force and (release / ".git").exists():
        status = subprocess.run(["git", "-C", str(release), "status", "--porcelain"], capture_output=True, text=True)
        if status.stdout.strip():
            return fail("Release is dirty, use --force to proceed")
    index = release_blobs.read_index(release)
    blobs = release / "blobs"
    for path in sorted(blobs.rglob("*")) if blobs.is_dir() else ():
        if path.is_file() and path.relative_to(blobs).as_posix() not in index:
            path.unlink()  # SyncBlobs: "Deleting blob ... that is not in the blob index."
    problems = release_rules.check_release(release)
    if problems:
        return fail("Building a release from directory: " + "; ".join(map(str, problems)))
    if tarball:
        manifest = release / ".fake-bosh-release.MF"
        manifest.write_text(json.dumps({"name": "vipdrain", "version": "0+dev.1"}))
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(manifest, "release.MF")
            for part in ("jobs", "packages"):
                tar.add(release / part, part)
        manifest.unlink()
    return 0


def main(argv: list[str]) -> int:
    log = os.environ.get("FAKE_BOSH_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(" ".join(argv) + "\n")
    if not argv:
        return fail("fake bosh: no command")
    command, rest = argv[0], argv[1:]
    options, args = _options(rest)
    release = Path(str(options.get("dir", "."))).resolve()
    try:
        if command == "add-blob" and len(args) == 2:
            release_blobs.stand_in_add_blob(release, Path(args[0]), args[1])
            return 0
        if command == "remove-blob" and len(args) == 1:
            release_blobs.stand_in_remove_blob(release, args[0])
            return 0
    except release_blobs.BlobError as exc:
        return fail(str(exc))
    if command == "vendor-package" and len(args) == 2:
        return vendor_package(release, args[0], Path(args[1]))
    if command == "create-release" and not args:
        return create_release(release, bool(options.get("force")), options.get("tarball"))  # type: ignore[arg-type]
    return fail(f"fake bosh: unsupported command {argv}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
