"""lifecycle/healthcheck, keepalived's default health check (the job's bin/healthcheck), run for
real against local frontends this test controls, and held to vipdrain.probe's verdicts and
messages case by case (the drain and post-start run `probe.check` in-process; the two must agree)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from frontends import answering
from vipdrain import probe

SCRIPT = Path(__file__).resolve().parents[2] / "lifecycle" / "healthcheck"
PREFIX = "vipdrain.probe: "
TIMEOUT = 0.3


def run(pid_file: Path, endpoint: str, timeout: float = TIMEOUT, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "--pid-file", str(pid_file), "--tcp", endpoint, "--timeout", f"{timeout:g}",
                           *extra], capture_output=True, text=True, timeout=30, check=False)


def problem_of(done: subprocess.CompletedProcess[str]) -> str | None:
    """The script's verdict in probe.check's terms: None when healthy, else the reason."""
    if done.returncode == 0:
        assert done.stderr == "", done.stderr
        return None
    assert done.returncode == 1 and done.stderr.startswith(PREFIX), (done.returncode, done.stderr)
    return done.stderr.removeprefix(PREFIX).rstrip("\n")


@contextlib.contextmanager
def serving(handle) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A one-off frontend: `handle(conn)` serves each connection; yields HOST:PORT."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        def loop() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn, contextlib.suppress(OSError):
                    handle(conn)

        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        yield f"127.0.0.1:{server.getsockname()[1]}"
        server.shutdown(socket.SHUT_RDWR)
    worker.join(5)


def _reset(conn: socket.socket) -> None:
    """haproxy refusing a request outright: read it, then close with a RST (SO_LINGER 0)."""
    conn.recv(4096)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _status_then_hang(conn: socket.socket) -> None:
    """A frontend that starts a status line and then stops (no newline): not an answer yet."""
    conn.recv(4096)
    conn.sendall(b"HTTP/1.0 200 OK")
    time.sleep(TIMEOUT * 4)


# --- the hung frontend (the reason the check sends a request) ------------------------------


def test_fails_within_the_timeout_when_the_frontend_accepts_but_never_answers(own_pid_file, hung, tmp_path):
    """Issue 18 item 1 for the bash check: a stopped haproxy's kernel still completes the handshake.
    The check itself reports it, within its own timeout (keepalived's is longer)."""
    log = tmp_path / "keepalived.log"
    started = time.monotonic()
    done = run(own_pid_file, hung, 1, "--log", str(log))
    took = time.monotonic() - started
    assert problem_of(done) == probe.check(own_pid_file, hung, 1)
    assert f"{hung} accepted the connection but did not answer within 1 s" in done.stderr
    assert 1 <= took < 1.8, f"took {took:.2f} s for a timeout of 1 s"
    # keepalived sends a script's output to /dev/null: the reason must reach its log.
    (line,) = log.read_text().splitlines()
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}: vipdrain_healthcheck: " + re.escape(
        f"{hung} accepted the connection but did not answer within 1 s (haproxy stopped or hung?)"), line), line


def test_http_form_on_a_hung_frontend(own_pid_file, hung):
    assert "did not answer within 0.3 s" in problem_of(run(own_pid_file, f"http://{hung}/health"))


def test_a_status_line_that_never_ends_is_no_answer(own_pid_file):
    with serving(_status_then_hang) as where:
        expected = probe.check(own_pid_file, f"http://{where}/health", TIMEOUT)
        found = problem_of(run(own_pid_file, f"http://{where}/health"))
    assert found == expected and "did not answer within" in found


def test_killed_by_keepalived_while_connecting_says_why(own_pid_file, tmp_path):
    """connect() has no timeout in bash: it blocks when a hung haproxy's accept queue is full.
    keepalived's vrrp_script timeout then ends the check with SIGTERM; the log says why."""
    log = tmp_path / "keepalived.log"
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)  # nobody accepts: the queue holds one connection, then SYNs are dropped
        where = f"127.0.0.1:{server.getsockname()[1]}"
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(server.getsockname())
        try:
            proc = subprocess.Popen([str(SCRIPT), "--pid-file", str(own_pid_file), "--tcp", where, "--timeout",
                                     f"{TIMEOUT:g}", "--log", str(log)], stderr=subprocess.PIPE, text=True)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(TIMEOUT + 1)  # still connecting: the read timeout never started
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for sock in queued:
                sock.close()
    assert f"vipdrain_healthcheck: {where}: no answer before keepalived's timeout ended the check" in log.read_text()


# --- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "form"), [
    (b"HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\nvm0\n", "tcp"),
    (b"\x15\x03\x01\x00\x02\x02\x46", "tcp"),  # a TLS frontend's alert to a plain-text request
    (None, "tcp"),  # closed without a word: a live haproxy all the same
    (b"HTTP/1.0 200 OK\r\n\r\n", "http"),
    (b"HTTP/1.1 404 Not Found\r\n\r\n", "http"),
    (b"HTTP/1.0 503 Service Unavailable\r\n\r\n", "http"),
    (b"HTTP/1.1 500 Internal Server Error\r\n\r\n", "http"),
    (b"SSH-2.0-x\r\n", "http"),
    (None, "http"),
], ids=["tcp-200", "tcp-tls-alert", "tcp-closed", "http-200", "http-404", "http-503", "http-500", "http-ssh",
        "http-closed"])
def test_same_verdict_and_message_as_probe(own_pid_file, reply, form):
    with answering(reply) as where:
        endpoint = where if form == "tcp" else f"http://{where}/health"
        expected = probe.check(own_pid_file, endpoint, TIMEOUT)
        found = problem_of(run(own_pid_file, endpoint))
    if expected is not None and "HTTP status line" in expected:
        # probe shows the first bytes as a Python bytes literal, the script with bash's %q.
        assert found is not None
        assert found.startswith(f"http://{where}/health did not answer with an HTTP status line (")
    else:
        assert found == expected


def test_http_503_names_the_status(own_pid_file):
    with answering(b"HTTP/1.0 503 Service Unavailable\r\n\r\n") as where:
        found = problem_of(run(own_pid_file, f"http://{where}/health"))
    assert found == f"http://{where}/health answered HTTP/1.0 503 Service Unavailable"


@pytest.mark.parametrize(("form", "healthy"), [("tcp", True), ("http", False)])
def test_a_reset_is_an_answer_only_for_host_port(own_pid_file, form, healthy):
    with serving(_reset) as where:
        endpoint = where if form == "tcp" else f"http://{where}/health"
        assert (probe.check(own_pid_file, endpoint, TIMEOUT) is None) is healthy
        assert (run(own_pid_file, endpoint).returncode == 0) is healthy


def test_sends_the_probes_request(own_pid_file):
    """Byte for byte the request vipdrain.probe sends (haproxy logs and routes the same)."""
    got: list[bytes] = []

    def record(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        got.append(data)
        conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")

    with serving(record) as where:
        assert run(own_pid_file, f"http://{where}/health?full=1").returncode == 0
        assert probe.check(own_pid_file, f"http://{where}/health?full=1", TIMEOUT) is None
    assert got[0] == got[1] == probe._request(probe.parse_probe(f"http://{where}/health?full=1"))


def test_ipv6_endpoint(own_pid_file):
    try:
        frontend = answering(b"HTTP/1.0 200 OK\r\n\r\n", host="::1")
        where = frontend.__enter__()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert where.startswith("[::1]:")
        assert run(own_pid_file, where).returncode == 0
        assert run(own_pid_file, f"http://{where}/health").returncode == 0
    finally:
        frontend.__exit__(None, None, None)


def test_connection_refused(own_pid_file, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as server:
        where = f"127.0.0.1:{server.getsockname()[1]}"
    log = tmp_path / "keepalived.log"
    found = problem_of(run(own_pid_file, where, TIMEOUT, "--log", str(log)))
    # probe adds the OS's reason (bash cannot tell it); the rest is the same.
    assert probe.check(own_pid_file, where, TIMEOUT).startswith(f"{found}: ")
    assert found == f"TCP connect to {where} failed"
    assert f"vipdrain_healthcheck: TCP connect to {where} failed\n" in log.read_text()


def test_a_healthy_check_writes_nothing(own_pid_file, tmp_path):
    log = tmp_path / "keepalived.log"
    with answering(b"HTTP/1.0 200 OK\r\n\r\n") as where:
        done = run(own_pid_file, where, TIMEOUT, "--log", str(log))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not log.exists()


# --- the pid file ---------------------------------------------------------------------------


@pytest.fixture
def zombie() -> Iterator[int]:
    """The pid of an exited child nobody has reaped yet (state Z)."""
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    yield child.pid
    child.wait()


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read pid file {f}: No such file or directory"),
    ("", "pid file {f} holds no pid"),
    ("haproxy\n", "pid file {f} holds no pid"),
    ("0 -5 12a\n", "pid file {f} holds no pid"),
    ("999999999\n", "no process of pid file {f} is alive (999999999)"),
    ("0999999998 999999999\n", "no process of pid file {f} is alive (999999998, 999999999)"),
    ("99999999999999999999999\n", "no process of pid file {f} is alive (99999999999999999999999)"),
    ("{zombie}\n", "no process of pid file {f} is alive ({zombie})"),
    ("999999999\n{own}\n", None),  # any live pid of several (haproxy's master and workers)
    ("  {own}", None),
], ids=["missing", "empty", "garbage", "not-positive", "dead", "dead-leading-zero", "huge", "zombie",
        "one-alive-of-two", "no-newline"])
def test_pid_file_like_probe(tmp_path, zombie, content, expected):
    path = tmp_path / "haproxy.pid"
    if content is not None:
        path.write_text(content.format(zombie=zombie, own=os.getpid()))
    want = None if expected is None else expected.format(f=path, zombie=zombie)
    with answering(b"HTTP/1.0 200 OK\r\n\r\n") as where:
        assert probe.check(path, where, TIMEOUT) == want
        assert problem_of(run(path, where)) == want


def test_pid_file_is_a_directory(tmp_path):
    with answering(b"HTTP/1.0 200 OK\r\n\r\n") as where:
        assert problem_of(run(tmp_path, where)) == probe.check(tmp_path, where, TIMEOUT)


def test_a_dead_pid_fails_before_any_connection(tmp_path, hung):
    """The pid file is checked first: no request is sent for a haproxy that is gone."""
    path = tmp_path / "haproxy.pid"
    path.write_text("999999999\n")
    started = time.monotonic()
    assert "no process of pid file" in problem_of(run(path, hung, 5))
    assert time.monotonic() - started < 2


# --- usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    [],
    ["--pid-file"],
    ["--pid-file", "/x", "--tcp", "localhost"],
    ["--pid-file", "/x", "--tcp", "127.0.0.1:0"],
    ["--pid-file", "/x", "--tcp", "127.0.0.1:65536"],
    ["--pid-file", "/x", "--tcp", "http://127.0.0.1:80"],
    ["--pid-file", "/x", "--tcp", "127.0.0.1:80", "--timeout", "soon"],
    ["--pid-file", "/x", "--tcp", "127.0.0.1:80", "--verbose"],
])
def test_bad_usage_exits_2(argv):
    done = subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 2 and done.stderr.startswith("healthcheck: "), (done.returncode, done.stderr)
