"""The release's packages: specs that BOSH can fingerprint, and the vipdrain package compiled the
way a BOSH compilation VM does it (`bash -x packaging`, isolated environment, offline wheels),
with a stand-in for the vendored python package."""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bosh_harness import REPO

PACKAGES = REPO / "packages"


def _spec(name: str) -> dict:
    return yaml.safe_load((PACKAGES / name / "spec").read_text())


def _glob_release(pattern: str, base: Path) -> list[Path]:
    """Files a BOSH `files:` glob matches under `base` (Ruby-like `**`)."""
    return [Path(p) for p in glob.glob(str(base / pattern), recursive=True) if Path(p).is_file()]


def test_package_specs() -> None:
    assert _spec("vipdrain")["name"] == "vipdrain"
    assert _spec("vipdrain")["dependencies"] == ["python-3.12"]
    assert _spec("keepalived")["name"] == "keepalived"
    assert _spec("keepalived")["files"] == ["keepalived/keepalived-*.tar.gz"]
    job_spec = yaml.safe_load((REPO / "jobs/keepalived/spec").read_text())
    for package in job_spec["packages"]:
        # python-3.12 is vendored with `bosh vendor-package` (docs/BOSH.md), not written here.
        assert package == "python-3.12" or (PACKAGES / package / "packaging").is_file(), package


def test_vipdrain_package_takes_the_python_package_from_src() -> None:
    matched = {p.relative_to(REPO / "src") for p in _glob_release("vipdrain/**/*", REPO / "src")}
    assert Path("vipdrain/__init__.py") in matched
    assert Path("vipdrain/cli.py") in matched


@pytest.mark.parametrize("name", ["vipdrain", "keepalived"])
def test_packaging_scripts_are_valid_bash(name: str) -> None:
    subprocess.run(["bash", "-n", str(PACKAGES / name / "packaging")], check=True)
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", str(PACKAGES / name / "packaging")], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def _runtime_requirements() -> list[str]:
    """pyproject.toml's runtime dependencies (what the wheel blobs must cover)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed distribution's metadata says the same
        from importlib.metadata import requires

        return [r for r in requires("vipdrain") or [] if "extra ==" not in r]
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def _stage_vipdrain(compile_dir: Path) -> None:
    """Lay out the package's files as BOSH does: spec globs from src/ (and blobs/) by path."""
    spec = _spec("vipdrain")
    excluded = {p for pattern in spec.get("excluded_files", []) for p in _glob_release(pattern, REPO / "src")}
    for pattern in spec["files"]:
        for path in _glob_release(pattern, REPO / "src"):
            if path in excluded:
                continue
            target = compile_dir / path.relative_to(REPO / "src")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    # The blobs: wheels of the runtime dependencies, built the way docs/BOSH.md says (for the
    # test's own python; the release's blobs are cp312 wheels).
    wheels = compile_dir / "vipdrain-deps"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), *_runtime_requirements()],
        check=True,
        timeout=600,
    )
    assert list(wheels.glob("*.whl")), "pip wheel produced no wheels"


def test_vipdrain_packaging_compiles_and_imports(tmp_path: Path) -> None:
    compile_dir = tmp_path / "compile" / "vipdrain"
    packages_dir = tmp_path / "packages"
    install = packages_dir / "vipdrain"
    compile_dir.mkdir(parents=True)
    install.mkdir(parents=True)
    _stage_vipdrain(compile_dir)
    shutil.copy(PACKAGES / "vipdrain" / "packaging", compile_dir / "packaging")

    # Stand-in for the vendored python-3.12 package: its compile.env puts a python on PATH.
    python_bin = Path(sys.executable).parent
    stand_in = packages_dir / "python-3.12" / "bosh"
    stand_in.mkdir(parents=True)
    (stand_in / "compile.env").write_text(f'export PATH="{python_bin}:$PATH"\n')
    (stand_in / "runtime.env").write_text(f'export PATH="{python_bin}:$PATH"\n')

    # What the agent does: `bash -x packaging`, isolated env, minimal PATH, cwd = package dir.
    done = subprocess.run(
        ["bash", "-x", "packaging"],
        cwd=compile_dir,
        env={
            "BOSH_COMPILE_TARGET": str(compile_dir),
            "BOSH_INSTALL_TARGET": str(install),
            "BOSH_PACKAGE_NAME": "vipdrain",
            "BOSH_PACKAGES_DIR": str(packages_dir),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    runtime_env = install / "bosh" / "runtime.env"
    assert runtime_env.is_file()

    # A job script's view: source both runtime.env files, then import from the package only.
    probe = (
        "import vipdrain, yaml, tenacity, requests, sys; "
        "print('\\n'.join(m.__file__ for m in (vipdrain, yaml, tenacity, requests)))"
    )
    job = subprocess.run(
        [
            "bash",
            "-c",
            f'set -eu; source "{stand_in}/runtime.env"; source "{runtime_env}"; python3 -c "{probe}"; '
            "vipdrain --version",
        ],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert job.returncode == 0, job.stderr
    *files, version = job.stdout.splitlines()
    site = next((install / "lib").glob("python3.*/site-packages"))
    for file in files:
        assert Path(file).is_relative_to(site), f"{file} was not imported from the package"
    from vipdrain import __version__

    assert version.strip() == f"vipdrain {__version__}"
    # Compiled once at packaging time; no source-tree caches came along.
    assert list((site / "vipdrain").glob("__pycache__/*.pyc"))


def test_vipdrain_packaging_refuses_to_run_without_wheels(tmp_path: Path) -> None:
    compile_dir = tmp_path / "compile"
    packages_dir = tmp_path / "packages"
    (packages_dir / "python-3.12" / "bosh").mkdir(parents=True)
    (packages_dir / "python-3.12" / "bosh" / "compile.env").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH"\n'
    )
    (compile_dir / "vipdrain").mkdir(parents=True)
    shutil.copy(PACKAGES / "vipdrain" / "packaging", compile_dir / "packaging")
    done = subprocess.run(
        ["bash", "packaging"],
        cwd=compile_dir,
        env={
            "BOSH_INSTALL_TARGET": str(tmp_path / "install"),
            "BOSH_PACKAGES_DIR": str(packages_dir),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "no wheels in vipdrain-deps/" in done.stderr
