"""The release's packages: specs that BOSH can fingerprint, and each package compiled the way a
BOSH compilation VM compiles it.

How the agent compiles (cloudfoundry/bosh-agent at commit e94765aa146b8904371acfdc7034d41d17deb374):
- agent/compiler/concrete_compiler.go `Compile`: the dependencies are installed under
  /var/vcap/packages/NAME, the package's source tarball is unpacked into
  /var/vcap/data/compile/NAME (the files at their paths relative to src/ or blobs/, `packaging`
  at the top), BOSH_INSTALL_TARGET is the package's *enable path* /var/vcap/packages/NAME, a
  symlink to /var/vcap/data/packages/NAME/VERSION; afterwards the install dir is tarred and later
  unpacked under another version dir on the job VM, so nothing may bake the symlink's target in.
- agent/compiler/compiler_unix.go `runPackagingCommand`: `bash -x packaging`, working dir the
  compile dir, environment BOSH_COMPILE_TARGET, BOSH_INSTALL_TARGET, BOSH_PACKAGE_NAME,
  BOSH_PACKAGE_VERSION merged over the agent's own environment (vendor/.../bosh-utils/system/
  exec_cmd_runner_unix.go `mergeEnv`) - a daemon's environment, with no PYTHONPATH.

The tests run `packaging` with *only* PATH and those BOSH_* variables (`env -i`), which is at
least as strict. BOSH_PACKAGES_DIR is not an agent variable: the packaging defaults it to
/var/vcap/packages, and the tests point it at their own packages dir.

The python-3.12 stand-in is a real Python (3.12 when this machine has one) installed as a venv at
packages/python-3.12 (bin/python3, bin/pip3, lib/pythonX.Y/site-packages, like the real package),
with bosh/compile.env and bosh/runtime.env copied verbatim from
cloudfoundry/bosh-package-python-release at commit 07a34fe27da6f13266208289b07a29daf0213f3d
(src/compile-3.12.env, src/runtime-3.12.env; tests/bosh/fixtures/python-3.12/), only
/var/vcap/packages and the python3.12 directory name substituted. So compile.env exports
`PYTHONPATH=...:$PYTHONPATH` and defines bosh_pip, bosh_pip_local and bosh_generate_runtime_env,
as the real one does.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import release_blobs
import release_rules
import yaml
from bosh_harness import REPO, render

from frontends import answering

PACKAGES = REPO / "packages"
FIXTURES = Path(__file__).with_name("fixtures")
#: The agent's PATH is a daemon's; nothing from this test's environment comes along.
AGENT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _spec(name: str) -> dict:
    return yaml.safe_load((PACKAGES / name / "spec").read_text())


def test_package_specs() -> None:
    assert _spec("vipdrain")["name"] == "vipdrain"
    assert _spec("vipdrain")["dependencies"] == ["python-3.12"]
    assert _spec("keepalived")["name"] == "keepalived"
    assert _spec("keepalived")["files"] == ["keepalived/keepalived-*.tar.gz"]
    job_spec = yaml.safe_load((REPO / "jobs/keepalived/spec").read_text())
    for package in job_spec["packages"]:
        # python-3.12 is vendored with `bosh vendor-package` (docs/BOSH.md), not written here.
        assert package in release_rules.VENDORED or (PACKAGES / package / "packaging").is_file(), package


def test_vipdrain_package_takes_the_python_package_from_src_without_the_lab() -> None:
    files = release_rules.package_files(_spec("vipdrain"), "vipdrain", REPO / "src", REPO / "blobs").files
    assert "vipdrain/__init__.py" in files
    assert "vipdrain/cli.py" in files
    assert "vipdrain/probe.py" in files
    assert not [f for f in files if f.startswith("vipdrain/lab/")], "the lab must not ship to VMs"
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]


@pytest.mark.parametrize("name", ["vipdrain", "keepalived"])
def test_packaging_scripts_are_valid_bash(name: str) -> None:
    subprocess.run(["bash", "-n", str(PACKAGES / name / "packaging")], check=True)
    if shutil.which("shellcheck"):
        done = subprocess.run(["shellcheck", str(PACKAGES / name / "packaging")], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


def _configure_options() -> list[str]:
    """The `--...` options of the keepalived packaging's ./configure call."""
    text = (PACKAGES / "keepalived" / "packaging").read_text()
    call = text[text.index("./configure") :].split("\n\n", 1)[0]
    return [word for word in call.split() if word.startswith("--")]


def test_keepalived_configure_options_are_keepalived_2_3_options() -> None:
    """Every --enable/--disable/--with option names a feature of keepalived 2.3.4's configure.ac
    (tests/bosh/fixtures/keepalived-2.3.4-configure-features.txt, read from acassen/keepalived at
    tag v2.3.4): 2.x calls the iptables switch --disable-iptables (--disable-libiptc is gone), and
    autoconf only *warns* about unknown options unless --enable-option-checking=fatal is given,
    so that option must be there too."""
    known = set()
    for line in (FIXTURES / "keepalived-2.3.4-configure-features.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, feature = line.split()
            known |= {f"enable:{feature}"} if kind == "enable" else {f"with:{feature}"}
    options = _configure_options()
    assert "--enable-option-checking=fatal" in options
    assert "--disable-iptables" in options
    autoconf_own = ("--prefix=", "--enable-option-checking=")
    unknown = []
    for option in options:
        if option.startswith(autoconf_own):
            continue
        name = option[2:].split("=", 1)[0]
        kind, _, feature = name.partition("-")
        key = {"enable": "enable", "disable": "enable", "with": "with", "without": "with"}.get(kind, kind)
        if f"{key}:{feature}" not in known:
            unknown.append(option)
    assert not unknown, f"keepalived 2.3.4's configure does not know {unknown}"


def test_keepalived_configure_options_pass_keepalived_2_3s_sanity_checks() -> None:
    """configure stops with "disable-libipset requires vrrp and iptables" and the like
    (tests/bosh/fixtures/keepalived-2.3.4-configure-conflicts.txt, from its configure.ac)."""
    given = {option[2:].split("=", 1)[0] for option in _configure_options()}
    features = {name.split("-", 1)[1] for name in given if name.startswith(("enable-", "disable-"))}
    refused = []
    for line in (FIXTURES / "keepalived-2.3.4-configure-conflicts.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            when, feature = line.split()
            if when in given and feature in features:
                refused.append(f"--{when} with --*-{feature}")
    assert not refused, f"keepalived 2.3.4's configure refuses {refused}"


def _stand_in_interpreter() -> str:
    """A Python 3.12 like the vendored package's when this machine has one, else this one."""
    candidates = [
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
        "/usr/bin/python3.12",
        "/usr/local/bin/python3.12",
    ]
    return next((c for c in candidates if os.access(c, os.X_OK)), sys.executable)


@dataclass
class PythonStandIn:
    """packages/python-3.12 as the vendored package lays it out, with the real env files."""

    home: Path
    version: str  # "3.12"

    @property
    def python(self) -> Path:
        return self.home / "bin" / "python3"


def make_python_stand_in(packages_dir: Path) -> PythonStandIn:
    home = packages_dir / "python-3.12"
    subprocess.run([_stand_in_interpreter(), "-m", "venv", str(home)], check=True, timeout=300)
    version = subprocess.run(
        [str(home / "bin" / "python3"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (home / "bosh").mkdir()
    for name in ("compile.env", "runtime.env"):
        text = (FIXTURES / "python-3.12" / name).read_text()
        assert "export PYTHONPATH=/var/vcap/packages/python-3.12/lib/python3.12/site-packages:$PYTHONPATH" in text
        text = text.replace("/var/vcap/packages", str(packages_dir)).replace("python3.12", f"python{version}")
        (home / "bosh" / name).write_text(text)
    return PythonStandIn(home=home, version=version)


@dataclass
class AgentDirs:
    """/var/vcap as the agent uses it while compiling one package."""

    root: Path

    @property
    def packages(self) -> Path:
        return self.root / "packages"

    def compile_dir(self, name: str) -> Path:
        return self.root / "data" / "compile" / name

    def install_target(self, name: str) -> Path:
        return self.packages / name


def stage_package(agent: AgentDirs, name: str, blobs_dir: Path, complete: bool = True) -> Path:
    """Unpack package `name` into its compile dir as the agent does: the files bosh-cli puts in
    the package (release_rules.package_files: src/ and blobs/) plus `packaging`; the install
    target is a symlink to a version dir, as the agent's bundle `Enable` makes it. `complete`:
    every `files:` pattern must match (bosh create-release refuses the package otherwise)."""
    spec = _spec(name)
    files = release_rules.package_files(spec, name, REPO / "src", blobs_dir)
    assert not (complete and files.problems), "\n".join(map(str, files.problems))
    compile_dir = agent.compile_dir(name)
    for rel, path in files.files.items():
        target = compile_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.copyfile(PACKAGES / name / "packaging", compile_dir / "packaging")
    version_dir = agent.root / "data" / "packages" / name / "compiled-here"
    version_dir.mkdir(parents=True)
    agent.packages.mkdir(parents=True, exist_ok=True)
    agent.install_target(name).symlink_to(version_dir)
    return compile_dir


def run_packaging(agent: AgentDirs, name: str) -> subprocess.CompletedProcess[str]:
    """`bash -x packaging` in the compile dir with only PATH and the agent's BOSH_* variables."""
    return subprocess.run(
        ["env", "-i",
         f"PATH={AGENT_PATH}",
         f"BOSH_COMPILE_TARGET={agent.compile_dir(name)}",
         f"BOSH_INSTALL_TARGET={agent.install_target(name)}",
         f"BOSH_PACKAGE_NAME={name}",
         "BOSH_PACKAGE_VERSION=0123456789abcdef0123456789abcdef01234567",
         f"BOSH_PACKAGES_DIR={agent.packages}",
         "bash", "-x", "packaging"],
        cwd=agent.compile_dir(name), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def move_to_job_vm(agent: AgentDirs, name: str) -> None:
    """The compiled package reaches the job VM as a tarball unpacked under another version dir."""
    link = agent.install_target(name)
    compiled = link.resolve()
    moved = compiled.with_name("on-the-job-vm")
    compiled.rename(moved)
    link.unlink()
    link.symlink_to(moved)


@pytest.fixture(scope="module")
def compiled_vipdrain(tmp_path_factory: pytest.TempPathFactory) -> tuple[AgentDirs, PythonStandIn]:
    """The vipdrain package compiled against the python-3.12 stand-in, from the wheels the release
    fetch step downloads (for the stand-in's Python version, manylinux x86_64, binary only)."""
    tmp = tmp_path_factory.mktemp("agent")
    agent = AgentDirs(tmp / "vcap")
    python = make_python_stand_in(agent.packages)
    blobs = tmp / "blobs"
    release_blobs.fetch_wheels(blobs, release_blobs.runtime_requirements(REPO / "pyproject.toml"), python.version)
    stage_package(agent, "vipdrain", blobs)
    done = run_packaging(agent, "vipdrain")
    assert done.returncode == 0, done.stderr[-4000:]
    move_to_job_vm(agent, "vipdrain")
    return agent, python


def test_vipdrain_packaging_compiles_under_the_agents_environment(compiled_vipdrain) -> None:
    agent, python = compiled_vipdrain
    site = agent.install_target("vipdrain") / "lib" / f"python{python.version}" / "site-packages"
    assert (site / "vipdrain" / "cli.py").is_file()
    assert list((site / "vipdrain").glob("__pycache__/*.pyc")), "byte-compiled once, at packaging time"
    assert not (site / "vipdrain" / "lab").exists(), "the lab does not ship"
    assert not list(site.glob("requests*")), "requests is not a dependency"
    assert (agent.install_target("vipdrain") / "bosh" / "runtime.env").is_file()


def test_compiled_vipdrain_runs_from_the_install_target(compiled_vipdrain) -> None:
    agent, _python = compiled_vipdrain
    done = subprocess.run(
        ["env", "-i", f"PATH={AGENT_PATH}", str(agent.install_target("vipdrain") / "bin" / "vipdrain"), "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    from vipdrain import __version__

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"vipdrain {__version__}"


def test_lab_commands_say_the_lab_is_not_in_the_package(compiled_vipdrain) -> None:
    agent, _python = compiled_vipdrain
    vipdrain = agent.install_target("vipdrain") / "bin" / "vipdrain"
    done = subprocess.run(
        ["env", "-i", f"PATH={AGENT_PATH}", str(vipdrain), "lab", "status"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert "vipdrain lab" in done.stderr and "BOSH package" in done.stderr, done.stderr


def test_job_scripts_import_only_from_the_packages(compiled_vipdrain) -> None:
    """A job script's view: both runtime.env files (python's expands an unset $PYTHONPATH)."""
    agent, python = compiled_vipdrain
    probe = ("import vipdrain, yaml, tenacity, prometheus_client; "
             "print(vipdrain.__file__, yaml.__file__, tenacity.__file__, prometheus_client.__file__)")
    done = subprocess.run(
        ["env", "-i", f"PATH={AGENT_PATH}", "bash", "-c",
         f'source "{python.home}/bosh/runtime.env"; source "{agent.install_target("vipdrain")}/bosh/runtime.env"; '
         f'python3 -c "{probe}"'],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    site = agent.install_target("vipdrain") / "lib" / f"python{python.version}" / "site-packages"
    for file in done.stdout.split():
        assert Path(file).is_relative_to(site), f"{file} was not imported from the package"


def test_health_check_runs_from_the_compiled_package_through_the_job_wrapper(compiled_vipdrain, tmp_path) -> None:
    """keepalived's check, as keepalived.conf runs it: the job's bin/vipdrain (rendered ERB) with
    VIPDRAIN_ROOT at the stand-in /var/vcap, `probe --pid-file --tcp`: healthy while a pid is
    alive and the frontend accepts, unhealthy once the frontend is closed."""
    agent, _python = compiled_vipdrain
    wrapper = tmp_path / "vipdrain"
    wrapper.write_text(render({"keepalived": {"vip": "192.0.2.100"}}, templates=["vipdrain.erb"])["bin/vipdrain"])
    wrapper.chmod(0o755)
    pid_file = tmp_path / "haproxy.pid"
    pid_file.write_text(f"{os.getpid()}\n")

    def check(endpoint: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["env", "-i", f"PATH={AGENT_PATH}", f"VIPDRAIN_ROOT={agent.root}", str(wrapper),
             "probe", "--pid-file", str(pid_file), "--tcp", endpoint, "--timeout", "0.5"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    with answering(b"HTTP/1.0 200 OK\r\n\r\n") as endpoint:
        healthy = check(endpoint)
    assert healthy.returncode == 0, healthy.stderr
    unhealthy = check(endpoint)
    assert unhealthy.returncode != 0
    assert endpoint in unhealthy.stderr


def test_vipdrain_packaging_refuses_to_run_without_wheels(tmp_path: Path) -> None:
    agent = AgentDirs(tmp_path / "vcap")
    make_python_stand_in(agent.packages)
    stage_package(agent, "vipdrain", tmp_path / "no-blobs-here", complete=False)
    done = run_packaging(agent, "vipdrain")
    assert done.returncode != 0
    assert "no wheels in vipdrain-deps/" in done.stderr
