"""The release check (scripts/release_rules.py): bosh-cli's rules for `bosh create-release`,
applied offline; and the fetch step (scripts/release_blobs.py) that places the blobs.

The rules are bosh-cli's (cloudfoundry/bosh-cli at commit 19ee1a8d9adeb784eb62892517be53c2dfa5f814;
the module docstring of scripts/release_rules.py names each file). Each rule has a test that makes
it fail on a copy of the release tree, and the unchanged tree fails the way `bosh create-release`
fails on a fresh clone: "Missing files for pattern".
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import release_blobs
import release_rules
import yaml
from bosh_harness import REPO

RELEASE_PARTS = ("config", "jobs", "packages", "src", "pyproject.toml")


def copy_release(dest: Path) -> Path:
    """A fresh clone's release tree (what bosh reads), blobs/ and all untracked state left out."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in RELEASE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, symlinks=True, ignore=shutil.ignore_patterns("*.egg-info"))
        else:
            shutil.copy2(source, dest / part)
    return dest


def problems(root: Path) -> list[str]:
    return [str(p) for p in release_rules.check_release(root)]


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the fetch step places, as CI can have it: the cp312 manylinux wheels downloaded from
    PyPI, and a file named like the pinned keepalived tarball (no internet for keepalived.org)."""
    dest = tmp_path_factory.mktemp("fetched")
    release_blobs.fetch_keepalived(dest, stand_in=True)
    release_blobs.fetch_wheels(dest, release_blobs.runtime_requirements(REPO / "pyproject.toml"))
    return dest


def test_fresh_clone_fails_naming_each_pattern_that_matches_nothing(tmp_path: Path) -> None:
    found = problems(copy_release(tmp_path / "release"))
    assert (
        "packages/keepalived/spec: Missing files for pattern 'keepalived/keepalived-*.tar.gz' "
        "(nothing under src/ or blobs/ matches it)" in found
    )
    assert any("packages/vipdrain/spec: Missing files for pattern 'vipdrain-deps/*.whl'" in p for p in found)
    assert len(found) == 2, found


def test_release_builds_with_what_the_fetch_step_places(tmp_path: Path, fetched: Path) -> None:
    root = copy_release(tmp_path / "release")
    release_blobs.add(root, release_blobs.staged_blobs(fetched), bosh=None)
    assert problems(root) == []
    index = yaml.safe_load((root / "config" / "blobs.yml").read_text())
    assert release_blobs.KEEPALIVED.blob_path in index
    wheels = [p for p in index if p.startswith("vipdrain-deps/")]
    assert any(w.startswith("vipdrain-deps/pyyaml-") and "cp312" in w and "manylinux" in w for w in wheels)
    assert any(w.startswith("vipdrain-deps/tenacity-") for w in wheels)
    assert any(w.startswith("vipdrain-deps/prometheus_client-") for w in wheels)
    assert not any("requests" in w for w in wheels), "requests is no dependency any more"


def test_fetched_wheels_are_binary_cp312_manylinux_x86_64(fetched: Path) -> None:
    for wheel in (fetched / "vipdrain-deps").glob("*.whl"):
        tags = wheel.name[: -len(".whl")].split("-")[-3:]
        python, abi, platform = tags
        assert python in ("cp312", "py3"), wheel.name
        assert abi in ("cp312", "abi3", "none"), wheel.name
        assert platform == "any" or ("manylinux" in platform and platform.endswith("x86_64")), wheel.name


def test_a_blob_placed_by_hand_is_deleted_by_create_release(tmp_path: Path, fetched: Path) -> None:
    """bosh create-release syncs blobs first and removes files blobs.yml does not list."""
    root = copy_release(tmp_path / "release")
    target = root / "blobs" / release_blobs.KEEPALIVED.blob_path
    target.parent.mkdir(parents=True)
    shutil.copy(fetched / release_blobs.KEEPALIVED.blob_path, target)
    found = problems(root)
    expected = f"blobs/{release_blobs.KEEPALIVED.blob_path}: not listed in config/blobs.yml"
    assert any(p.startswith(expected) for p in found), found


def test_stale_wheels_are_removed_and_unchanged_blobs_not_added_again(tmp_path: Path, fetched: Path) -> None:
    root = copy_release(tmp_path / "release")
    old = tmp_path / "tenacity-1.0-py3-none-any.whl"
    old.write_bytes(b"old wheel")
    release_blobs.stand_in_add_blob(root, old, "vipdrain-deps/tenacity-1.0-py3-none-any.whl")
    first = release_blobs.add(root, release_blobs.staged_blobs(fetched), bosh=None)
    assert first.remove == ("vipdrain-deps/tenacity-1.0-py3-none-any.whl",)
    assert not (root / "blobs" / "vipdrain-deps" / "tenacity-1.0-py3-none-any.whl").exists()
    again = release_blobs.add(root, release_blobs.staged_blobs(fetched), bosh=None)
    assert again == release_blobs.BlobPlan(remove=(), add=())


def test_stand_in_add_blob_writes_what_bosh_add_blob_writes(tmp_path: Path) -> None:
    """fs_blobs_dir.go TrackBlob: blobs/PATH and `PATH: {size, sha}` (SHA-1), no object_id."""
    root = copy_release(tmp_path / "release")
    blob = tmp_path / "x.tar.gz"
    blob.write_bytes(b"some bytes")
    release_blobs.stand_in_add_blob(root, blob, "keepalived/x.tar.gz")
    index = yaml.safe_load((root / "config" / "blobs.yml").read_text())
    assert index == {"keepalived/x.tar.gz": {"size": 10, "sha": hashlib.sha1(b"some bytes").hexdigest()}}
    assert (root / "blobs" / "keepalived" / "x.tar.gz").read_bytes() == b"some bytes"
    with pytest.raises(release_blobs.BlobError, match="safe local path"):
        release_blobs.stand_in_add_blob(root, blob, "../outside.tar.gz")


def test_keepalived_download_is_refused_unless_its_sha256_is_the_pinned_one(tmp_path: Path) -> None:
    tarball = tmp_path / "keepalived-9.9.9.tar.gz"
    tarball.write_bytes(b"not the tarball")
    wrong = release_blobs.Pin("9.9.9", "https://example.invalid/k.tar.gz", "0" * 64, 15)
    with pytest.raises(release_blobs.BlobError, match="sha256"):
        release_blobs.fetch_keepalived(tmp_path / "dest", wrong, tarball=tarball)
    assert not list((tmp_path / "dest").rglob("*.tar.gz*")), "a refused download leaves nothing behind"
    right = release_blobs.Pin("9.9.9", "https://example.invalid/k.tar.gz", release_blobs.sha256_of(tarball), 15)
    placed = release_blobs.fetch_keepalived(tmp_path / "dest", right, tarball=tarball)
    assert placed == tmp_path / "dest" / "keepalived" / "keepalived-9.9.9.tar.gz"


def test_keepalived_pin_is_the_version_haproxy_boshrelease_ships() -> None:
    assert release_blobs.KEEPALIVED.version.startswith("2.3.")
    assert release_blobs.KEEPALIVED.url.endswith(f"keepalived-{release_blobs.KEEPALIVED.version}.tar.gz")
    assert release_rules.glob_regex("keepalived/keepalived-*.tar.gz").match(release_blobs.KEEPALIVED.blob_path)


# --- one rule at a time -------------------------------------------------------------------------


@pytest.fixture
def built(tmp_path: Path, fetched: Path) -> Path:
    root = copy_release(tmp_path / "release")
    release_blobs.add(root, release_blobs.staged_blobs(fetched), bosh=None)
    assert problems(root) == []
    return root


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_missing_template_is_named(built: Path) -> None:
    (built / "jobs" / "keepalived" / "templates" / "drain.erb").unlink()
    assert problems(built) == [
        "jobs/keepalived/spec: template 'drain.erb' does not exist in jobs/keepalived/templates/"
    ]


def test_unknown_package_dependency_is_named(built: Path) -> None:
    _edit_yaml(built / "packages" / "vipdrain" / "spec", lambda s: s["dependencies"].append("python-3.13"))
    assert problems(built) == [
        "packages/vipdrain/spec: Expected to find package 'python-3.13' since it's a dependency of package 'vipdrain'"
    ]


def test_unknown_job_package_is_named(built: Path) -> None:
    _edit_yaml(built / "jobs" / "keepalived" / "spec", lambda s: s["packages"].append("haproxy"))
    assert problems(built) == [
        "jobs/keepalived/spec: Expected to find package 'haproxy' since it's a dependency of job 'keepalived'"
    ]


def test_invalid_and_mismatched_names_are_named(built: Path) -> None:
    _edit_yaml(built / "packages" / "keepalived" / "spec", lambda s: s.update(name="keep alived"))
    assert problems(built)[0].startswith("packages/keepalived/spec: package name 'keep alived' is not valid")


def test_excluded_files_must_take_out_caches_and_the_lab(built: Path) -> None:
    cache = built / "src" / "vipdrain" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "cli.cpython-312.pyc").write_bytes(b"")
    assert problems(built) == []  # excluded_files takes it out
    _edit_yaml(built / "packages" / "vipdrain" / "spec", lambda s: s.update(excluded_files=[]))
    found = problems(built)
    assert any("ships vipdrain/lab/" in p and "add 'vipdrain/lab/**' to excluded_files" in p for p in found)
    # Named among the first three, or counted ("and N more") when the tree holds other caches.
    assert any("add '**/__pycache__/**' to excluded_files" in p for p in found), found


def test_packaging_may_not_come_in_through_files(built: Path) -> None:
    (built / "src" / "packaging").write_text("")
    _edit_yaml(built / "packages" / "vipdrain" / "spec", lambda s: s["files"].append("packaging"))
    assert problems(built) == [
        "packages/vipdrain/spec: Expected special 'packaging' file to not be included via 'files' key "
        "for package 'vipdrain'"
    ]


def test_placeholder_blobstore_is_refused(built: Path) -> None:
    (built / "config" / "final.yml").write_text(
        "name: vipdrain\nblobstore: {provider: s3, options: {bucket_name: REPLACE-WITH-THE-BUCKET}}\n"
    )
    assert problems(built) == [
        "config/final.yml: the blobstore is a placeholder: bosh vendor-package and create-release --final upload to it"
    ]


@pytest.mark.parametrize(
    ("pattern", "path", "matched"),
    [
        ("vipdrain/**/*", "vipdrain/cli.py", True),  # ** matches zero directories
        ("vipdrain/**/*", "vipdrain/lab/cli.py", True),
        ("vipdrain/*", "vipdrain/.hidden", True),  # doublestar's * matches dot files, Python's glob does not
        ("vipdrain/*", "vipdrain/lab/cli.py", False),  # * stops at /
        ("vipdrain-deps/*.whl", "vipdrain-deps/a.whl", True),
        ("vipdrain-deps/*.whl", "vipdrain-deps/sub/a.whl", False),
        ("keepalived/keepalived-?.?.?.tar.gz", "keepalived/keepalived-2.3.4.tar.gz", True),
        ("keepalived/keepalived-[0-9]*.tar.gz", "keepalived/keepalived-x.tar.gz", False),
        ("{a,b/c}/*.txt", "b/c/x.txt", True),
        ("**/*.pyc", "x.pyc", True),
        ("a/**", "a", False),
    ],
)
def test_glob_semantics_are_doublestar_v1(pattern: str, path: str, matched: bool) -> None:
    assert bool(release_rules.glob_regex(pattern).match(path)) is matched


# --- the whole recipe: scripts/make-release.sh with a stand-in bosh CLI ------------------------


def _make_release(root: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the recipe in `root` with tests/bosh/fake_bosh.py as the bosh CLI (it refuses what the
    real one refuses: see its docstring), a stand-in keepalived tarball and a python release dir."""
    shutil.copytree(
        REPO / "scripts", root / "scripts", ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
    )
    python_release = tmp_path / "bosh-package-python-release"
    (python_release / "packages" / "python-3.12").mkdir(parents=True)
    (python_release / "packages" / "python-3.12" / "spec").write_text("---\nname: python-3.12\nfiles: []\n")
    bosh = tmp_path / "bin" / "bosh"
    bosh.parent.mkdir(parents=True)
    bosh.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).with_name("fake_bosh.py")}" "$@"\n')
    bosh.chmod(0o755)
    log = tmp_path / "bosh.log"
    env = {
        **os.environ,
        "BOSH": str(bosh),
        "PYTHON": sys.executable,
        "PYTHON_RELEASE_DIR": str(python_release),
        "KEEPALIVED_STAND_IN": "1",
        "FAKE_BOSH_LOG": str(log),
    }
    done = subprocess.run(
        ["bash", "scripts/make-release.sh", "out/vipdrain-dev.tgz"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    calls = log.read_text().splitlines() if log.exists() else []
    return done, [" ".join(call.split()[:2]) for call in calls]


def test_make_release_goes_from_a_fresh_clone_to_a_tarball(tmp_path: Path) -> None:
    root = copy_release(tmp_path / "release")
    done, calls = _make_release(root, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "out" / "vipdrain-dev.tgz").is_file()
    adds = [c for c in calls if c.startswith("add-blob")]
    assert len(adds) >= 3, calls  # keepalived + the wheels
    assert calls[len(adds) :] == ["vendor-package python-3.12", "create-release --force"], calls
    assert (root / "packages" / "python-3.12" / "spec.lock").is_file()
    assert list((root / ".blobstore").iterdir()), "python-3.12 went to the local dev blobstore"
    assert release_rules.check_release(root) == []
    # A second run changes no blob (same wheels): only vendoring and the build again.
    done, calls = _make_release(root, tmp_path / "again")
    assert done.returncode == 0, done.stderr[-3000:]
    assert calls == ["vendor-package python-3.12", "create-release --force"]


def test_make_release_with_the_placeholder_s3_blobstore_fails_at_vendoring(tmp_path: Path) -> None:
    """What the README's recipe ran into before: vendor-package uploads to config/final.yml's
    blobstore, a placeholder S3 bucket without credentials."""
    root = copy_release(tmp_path / "release")
    (root / "config" / "final.yml").write_text(
        "name: vipdrain\nblobstore:\n  provider: s3\n"
        "  options:\n    bucket_name: REPLACE-WITH-THE-VIPDRAIN-BLOBS-BUCKET\n"
    )
    done, calls = _make_release(root, tmp_path)
    assert done.returncode != 0
    assert calls[-1] == "vendor-package python-3.12"
    assert "refused the upload" in done.stderr


@pytest.mark.parametrize("script", ["scripts/make-release.sh", "tests/bosh/package_keepalived.sh"])
def test_release_shell_scripts_are_clean(script: str) -> None:
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", str(REPO / script)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout
