"""The warm drain (vipdrain.warm): which calls go to the server, its request format, and - with a
real server process and real clients - the exchange and its faults: no server, a stale socket, a
stopped server, a client that stalls, a client killed mid-drain, the socket file removed.

The server here runs a stand-in for `cli.main` (`RUNNER`: echo, env, mark, sleep), so no config
or root is needed; the processes, the socket, the fds and the signals are the real ones. The lab
tests (tests/lab/test_warm_lab.py) run real drains through it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vipdrain.layout import Layout
from vipdrain.warm import client
from vipdrain.warm.client import decode_request, encode_request, socket_path, warm_root

# --- which calls go warm ------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "env", "root"), [
    (["drain", "job_changed", "hash_changed"], {}, "/var/vcap"),
    (["drain", "--root", "/r", "job_shutdown", "hash_unchanged", "haproxy"], {}, "/r"),
    (["drain", "--root=/r", "-v", "job_check_status"], {"VIPDRAIN_ROOT": "/e"}, "/r"),
    (["drain", "job_changed"], {"VIPDRAIN_ROOT": "/e"}, "/e"),
    (["drain", "--config", "/c.yml", "job_new", "hash_new"], {}, "/var/vcap"),
])
def test_a_bosh_drain_goes_to_the_server_of_its_root(argv: list[str], env: dict[str, str], root: str) -> None:
    assert warm_root(argv, env) == root


@pytest.mark.parametrize(("argv", "env"), [
    (["drain"], {}),  # an operator's drain: their terminal, their Ctrl-C
    (["drain", "--root", "/r"], {}),
    (["drain", "--help", "job_changed"], {}),
    (["drain", "-x", "job_changed"], {}),
    (["drain", "job_changed", "hash_changed"], {"VIPDRAIN_WARM": "0"}),
    (["status"], {}),
    (["undrain", "job_changed"], {}),
    ([], {}),
])
def test_anything_else_runs_in_process(argv: list[str], env: dict[str, str]) -> None:
    assert warm_root(argv, env) is None


def test_the_client_finds_the_socket_where_the_layout_puts_it(tmp_path: Path) -> None:
    assert socket_path(str(tmp_path)) == str(Layout(root=tmp_path).drain_socket)


def test_a_request_round_trips() -> None:
    argv = ["drain", "job_changed", "h\u00e4sh", ""]
    env = {b"BOSH_JOB_STATE": b'{"a": "=b"}', b"EMPTY": b""}
    body = encode_request(argv, env, b"/some/dir", 0o027)
    assert int.from_bytes(body[:4], "big") == len(body) - 4
    assert decode_request(body[4:]) == (argv, env, b"/some/dir", 0o027)


@pytest.mark.parametrize("body", [b"/\x0022\x00x", b"/\x0022\x005\x00a", b"/\x0022\x00-1", b"/\x0022\x000\x00NOEQUALS",
                                  b"/\x0022\x000\x00=v", b"/\x009\x000", b"/\x001000\x000", b"/\x000"])
def test_a_malformed_request_is_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode_request(body)


# --- a real server --------------------------------------------------------------------------------

RUNNER = """\
import os, pathlib, sys, time
from vipdrain.layout import Layout
from vipdrain.warm.server import serve

def run(argv):
    cmd, *rest = argv
    if cmd == "echo":
        print(" ".join(rest))
        print("to stderr", file=sys.stderr)
        return int(os.environ.get("CODE", "0"))
    if cmd == "env":
        mask = os.umask(0)
        print(os.environ.get(rest[0], "-"), os.getcwd(), sys.stdin.read().strip(), oct(mask))
        return 0
    if cmd in ("mark", "sleep"):
        pathlib.Path(rest[0]).write_text(str(os.getpid()))
        time.sleep(60 if cmd == "sleep" else 0)
        return 0
    raise SystemExit(9)

sys.exit(serve(Layout(root=pathlib.Path(sys.argv[1])), run=run))
"""


class Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = socket_path(str(root))
        self.log = root / "server.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(root)], stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.path):
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the server did not listen within 30 s"
            time.sleep(0.02)

    def call(self, *argv: str, env: dict[str, str] | None = None, input: str = "",
             timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A client process, as the drain script starts one: `python -c` running client.run_warm."""
        code = ("import sys; from vipdrain.warm.client import run_warm\n"
                "code = run_warm(sys.argv[2:], sys.argv[1])\n"
                "sys.exit(100 if code is None else code)")
        return subprocess.run([sys.executable, "-c", code, self.path, *argv], input=input, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path)
    yield srv
    srv.proc.send_signal(signal.SIGCONT)
    srv.proc.terminate()
    srv.proc.wait(10)


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_request_runs_in_a_child_with_the_clients_stdout_stderr_and_exit_code(server: Server) -> None:
    done = server.call("echo", "17", env={"CODE": "3"})
    assert (done.returncode, done.stdout) == (3, "17\n")
    assert "to stderr" in done.stderr
    assert "drain server child" in done.stderr and "exit 3, CPU user" in done.stderr


def test_the_child_gets_the_clients_environment_cwd_stdin_and_umask(server: Server, tmp_path: Path) -> None:
    code = ("import os, sys; os.chdir(sys.argv[2]); os.umask(0o027); from vipdrain.warm.client import run_warm\n"
            "sys.exit(run_warm(['env', 'BOSH_JOB_STATE'], sys.argv[1]) or 0)")
    done = subprocess.run([sys.executable, "-c", code, server.path, str(tmp_path)], input="from stdin\n",
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "BOSH_JOB_STATE": '{"persistent_disk":0}'})
    assert done.stdout == f'{{"persistent_disk":0}} {tmp_path} from stdin 0o27\n', done.stderr


def test_no_server_or_a_stale_socket_falls_back_at_once(tmp_path: Path) -> None:
    path = socket_path(str(tmp_path))
    t0 = time.monotonic()
    assert client.run_warm(["echo"], path) is None
    Path(path).parent.mkdir(parents=True)
    import socket

    with socket.socket(socket.AF_UNIX) as dead:  # bound, never listening: a server that died
        dead.bind(path)
    assert client.run_warm(["echo"], path) is None
    assert time.monotonic() - t0 < client.HANDSHAKE_TIMEOUT


def test_a_stopped_server_is_passed_over_and_never_runs_the_request_later(server: Server, tmp_path: Path) -> None:
    mark = tmp_path / "ran"
    server.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    done = server.call("mark", str(mark))
    assert done.returncode == 100, "the client must fall back"
    assert time.monotonic() - t0 < 10
    server.proc.send_signal(signal.SIGCONT)
    assert server.call("echo", "after").stdout == "after\n"  # served again
    assert not mark.exists(), "the request given up on ran anyway"
    assert "dropped a request" in server.log.read_text()


def test_a_client_that_stalls_holds_up_the_next_one_only_for_the_request_timeout(server: Server) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as stalled:
        stalled.connect(server.path)
        assert stalled.recv(1) == client.READY
        t0 = time.monotonic()
        done = server.call("echo", "next")
    # The next client may fall back (the handshake is shorter than the stall) or be served after it.
    assert done.returncode in (0, 100)
    assert time.monotonic() - t0 < 10
    assert server.call("echo", "again").stdout == "again\n"


def test_a_killed_client_takes_its_drain_with_it(server: Server, tmp_path: Path) -> None:
    """A BOSH agent that kills its drain (timeout) kills an in-process drain; the warm one must
    not run on behind its back."""
    mark = tmp_path / "child.pid"
    code = "import sys; from vipdrain.warm.client import run_warm; run_warm(sys.argv[2:], sys.argv[1])"
    caller = subprocess.Popen([sys.executable, "-c", code, server.path, "sleep", str(mark)])
    deadline = time.monotonic() + 30
    while not mark.exists() or not mark.read_text():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(mark.read_text())
    assert not _gone(child, 0.3)
    caller.kill()
    caller.wait(10)
    assert _gone(child, 10), "the child outlived its client"
    assert server.proc.poll() is None


def test_the_server_exits_when_its_socket_is_removed(server: Server) -> None:
    os.unlink(server.path)
    assert server.proc.wait(timeout=30) == 0
    assert "was removed or replaced" in server.log.read_text()
    assert not Layout(root=server.root).drain_server_pid.exists()


def test_a_second_server_does_not_steal_the_socket(server: Server) -> None:
    second = subprocess.run([sys.executable, "-c", RUNNER, str(server.root)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert second.returncode == 1
    assert server.call("echo", "still").stdout == "still\n"


def test_sigterm_stops_the_server_and_removes_its_socket_and_pid_file(server: Server) -> None:
    layout = Layout(root=server.root)
    assert layout.drain_server_pid.read_text().strip() == str(server.proc.pid)
    server.proc.terminate()
    assert server.proc.wait(timeout=30) == 0
    assert not os.path.exists(server.path) and not layout.drain_server_pid.exists()


def test_a_client_that_gives_up_before_go_runs_nothing(server: Server, tmp_path: Path) -> None:
    """The client's last moment to fall back is before GO: a child it never said GO to must not
    run the drain (or two drains would run, one in-process and one here)."""
    import socket
    from array import array

    mark = tmp_path / "ran"
    read_end, write_end = os.pipe()
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(10)
        conn.connect(server.path)
        assert conn.recv(1) == client.READY
        fds = array("i", [0, write_end, 2])
        conn.sendmsg([encode_request(["mark", str(mark)], {}, b"/", 0o022)],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        assert conn.recv(1) == client.STARTED
        time.sleep(0.5)  # a client stalled before GO: the child waits, it does not run
        assert not mark.exists()
    os.close(write_end)
    assert os.read(read_end, 100) == b"", "the child exits without writing"
    os.close(read_end)
    assert server.call("echo", "x").stdout == "x\n"
    assert not mark.exists()


def test_the_benchmark_counts_the_childs_cpu(server: Server) -> None:
    """bench/run.py measures a drain's CPU from outside; a warm drain spends it in the server's
    child, which only the line it prints reports."""
    import json

    from benchmod import load_bench

    client_code = "import sys; from vipdrain.warm.client import run_warm; sys.exit(run_warm(sys.argv[2:], sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", load_bench().RUSAGE_WRAPPER, sys.executable, "-c", client_code,
                           server.path, "echo", "5"], capture_output=True, text=True, timeout=60, check=True)
    usage = json.loads(done.stdout.splitlines()[-1])
    assert usage["warm"] is True and usage["stdout"] == "5\n"
    assert usage["maxrss_kib"] > 0 and usage["user"] + usage["sys"] > 0


def test_warm_start_off_starts_no_server(tmp_path: Path, make_raw, monkeypatch) -> None:
    """`vipdrain.drain.warm_start: false`: `drain-server` says why and exits; drains then run
    in-process (no socket to find)."""
    import json

    from vipdrain.cli import main

    monkeypatch.delenv("VIPDRAIN_ROOT", raising=False)
    config = tmp_path / "vipdrain.yml"
    config.write_text(json.dumps(make_raw({"vipdrain.drain.warm_start": False})))
    assert main(["drain-server", "--root", str(tmp_path), "--config", str(config)]) == 0
    assert not Layout(root=tmp_path).drain_socket.exists()
    assert "warm_start: false" in Layout(root=tmp_path).vipdrain_log.read_text()


def test_the_client_loads_nothing_heavy() -> None:
    """Every `vipdrain` call enters through the client: a warm drain must not pay for imports the
    server already did (dataclasses, logging, pathlib, the rest of vipdrain)."""
    code = ("import sys\nbefore = set(sys.modules)\nimport vipdrain.warm.client\n"
            "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = set(subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                                check=True, env={**os.environ, "PYTHONPATH": str(Path(client.__file__).parents[2])}
                                ).stdout.split())
    assert {m for m in loaded if m.startswith("vipdrain")} == {"vipdrain", "vipdrain.warm", "vipdrain.warm.client"}
    assert not loaded & {"dataclasses", "logging", "pathlib", "typing", "socket", "enum", "re"}, loaded


def test_status_notes_a_drain_server_that_does_not_answer(server: Server, tmp_path: Path) -> None:
    from vipdrain.warm.server import server_note

    assert server_note(True, server.path) is None
    assert server_note(False, str(tmp_path / "nothing")) is None  # off: nothing to say
    assert "does not answer" in (server_note(True, str(tmp_path / "nothing")) or "")
    server.proc.send_signal(signal.SIGSTOP)
    assert "does not answer" in (server_note(True, server.path) or "")
