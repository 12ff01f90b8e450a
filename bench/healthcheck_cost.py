"""What keepalived's health check costs per run (issue 16): CPU (user + sys) of the check process.

Each check is started as keepalived starts it (a fresh process, no shell) against a real haproxy
started here on 127.0.0.1 (no root needed; haproxy is one of the lab's packages), and its CPU
is the child's rusage from os.wait4. Rows, `--runs` runs each (every run must pass):
- vipdrain's default check, the job's bin/healthcheck (lifecycle/healthcheck, bash builtins),
  with `HOST:PORT` and with `http://HOST:PORT/PATH`;
- the check it replaced, `python -m vipdrain.probe` (this interpreter: the lower bound; on a BOSH
  VM it also went through the bash wrapper bin/vipdrain, which sources the runtime);
- haproxy-boshrelease's `killall -0 haproxy` (psmisc), which checks only that some process of that
  name exists (it scans /proc: its cost grows with the number of processes, listed below);
- `/bin/bash -c :`, the floor of any bash check.
Writes bench/results/healthcheck_cost.json and prints "target <= 5 ms: met/not met" for the
median of vipdrain's check.

    python bench/healthcheck_cost.py [--runs 100]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "healthcheck_cost.json"
SCRIPT = REPO / "lifecycle" / "healthcheck"
TARGET_MS = 5.0
#: What render.probe_command passes for keepalived.healthcheck.timeout 1 (PROBE_TIMEOUT_SHARE).
TIMEOUT = "0.7"


#: keepalived's scripts inherit keepalived's environment: keepalived_ctl's, under monit - PATH and
#: the runtime, no LANG/LC_* (a UTF-8 locale makes every bash or Python start load it: --inherit-env).
KEEPALIVED_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def child_cpu_ms(argv: Sequence[str], env: Mapping[str, str]) -> float:
    """Start `argv` (no shell, as keepalived does), wait; CPU ms of that child. It must exit 0."""
    pid = os.posix_spawn(argv[0], list(argv), env)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed (status {status}): the benchmark measures passing checks")
    return (usage.ru_utime + usage.ru_stime) * 1000


def stats(values: list[float]) -> dict[str, float]:
    ms = sorted(values)
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[round(0.95 * (len(ms) - 1))], 2),
            "max_ms": round(ms[-1], 2), "n": len(ms)}


@contextlib.contextmanager
def real_haproxy(directory: Path) -> Iterator[tuple[str, Path, str]]:
    """haproxy on 127.0.0.1 answering every request with 200 (`monitor-uri /health` too);
    yields (HOST:PORT, its pid file, what it is)."""
    with socket.create_server(("127.0.0.1", 0)) as probe_port:
        port = probe_port.getsockname()[1]
    pid_file = directory / "haproxy.pid"
    config = directory / "haproxy.cfg"
    config.write_text("\n".join([
        "defaults", "  mode http", "  timeout connect 1s", "  timeout client 5s", "  timeout server 5s",
        "frontend fe", f"  bind 127.0.0.1:{port}", "  monitor-uri /health",
        "  http-request return status 200 content-type text/plain string ok", ""]))
    # -db: one process in the foreground, which writes no pid file: ours names it, as bpm's does.
    binary = shutil.which("haproxy")
    if binary is None:
        raise SystemExit("haproxy is not installed: `make setup` installs the lab's packages")
    proc = subprocess.Popen([binary, "-db", "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file.write_text(f"{proc.pid}\n")
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
        version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, check=False).stdout
        yield f"127.0.0.1:{port}", pid_file, version.splitlines()[0] if version else "haproxy"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(runs: int, env: Mapping[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vipdrain-hc-bench-") as tmp, \
            real_haproxy(Path(tmp)) as (where, pid_file, what):
        log = str(Path(tmp) / "keepalived.log")
        common = ["--pid-file", str(pid_file), "--timeout", TIMEOUT]
        rows: dict[str, list[str] | None] = {
            "vipdrain bin/healthcheck HOST:PORT": [str(SCRIPT), *common, "--tcp", where, "--log", log],
            "vipdrain bin/healthcheck http://HOST:PORT/health": [
                str(SCRIPT), *common, "--tcp", f"http://{where}/health", "--log", log],
            "old default: python -m vipdrain.probe HOST:PORT": [
                sys.executable, "-m", "vipdrain.probe", *common, "--tcp", where],
            "haproxy-boshrelease: killall -0 haproxy": (
                [killall, "-0", "haproxy"] if (killall := shutil.which("killall")) else None),
            "floor: /bin/bash -c : (bash's start-up alone)": ["/bin/bash", "-c", ":"],
        }
        results: dict[str, Any] = {}
        for name, argv in rows.items():
            if argv is None:
                results[name] = "not measured: killall (psmisc) is not installed here"
                continue
            child_cpu_ms(argv, env)  # warm the page cache
            results[name] = stats([child_cpu_ms(argv, env) for _ in range(runs)])
        assert not Path(log).exists(), "a passing check wrote to the log"
    ours = max(v["median_ms"] for k, v in results.items() if k.startswith("vipdrain") and isinstance(v, dict))
    bash = subprocess.run(["/bin/bash", "--version"], capture_output=True, text=True, check=False).stdout
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return {
        "git": commit or "unknown",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count() or 0, "kernel": platform.release(),
                    "bash": bash.splitlines()[0] if bash else "none", "loadavg": [round(x, 2) for x in os.getloadavg()],
                    "processes": sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())},
        "frontend": what,
        "environment": "inherited" if env is os.environ else KEEPALIVED_ENV,
        "timeout": float(TIMEOUT),
        "runs": runs,
        "cpu_per_check": results,
        "target": {"median_ms_at_most": TARGET_MS, "measured_ms": ours, "met": ours <= TARGET_MS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--inherit-env", action="store_true", help="run the checks with this environment "
                        "(locale included) instead of keepalived's")
    args = parser.parse_args()
    result = run(args.runs, os.environ if args.inherit_env else KEEPALIVED_ENV)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {result['machine']}; frontend: {result['frontend']}; environment: {result['environment']}; "
          f"{args.runs} runs each")
    for name, value in result["cpu_per_check"].items():
        shown = value if not isinstance(value, dict) else (
            f"median {value['median_ms']:.2f} ms, p95 {value['p95_ms']:.2f} ms")
        print(f"  {name:52} {shown}")
    target = result["target"]
    print(f"target <= {TARGET_MS:g} ms: {'met' if target['met'] else 'not met'} "
          f"(vipdrain's check, median {target['measured_ms']:.2f} ms)")


if __name__ == "__main__":
    main()
