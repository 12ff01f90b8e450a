"""The load client: the instrument for "zero failed requests".

Runs as a subprocess inside a client namespace (`python -m vipdrain.lab.client --target VIP ...`):
worker threads open one new TCP connection per HTTP request, paced evenly at a total rate
(a slow or stuck request never delays the others' schedule beyond the free workers), with short
timeouts, and append EVERY request to a JSON-lines file: start time (epoch s), latency (s),
outcome (ok / refused / reset / timeout / wrong_answer / other) and the VM that answered.
Optional long-lived streams (slow HTTP download, HTTP keep-alive, raw TCP) record whether they
finished; each is opened again when it ends, and with a stagger the i-th starts i x stagger later
(streams that started together would otherwise end together, forever in step). `ClientRun` is
the test side: start/stop, read the records, summarise.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from vipdrain.errors import RuntimeFailure
from vipdrain.lab.records import Records, Request, Stream, Summary, read_records, summarize

if TYPE_CHECKING:
    from vipdrain.lab.cluster import Lab
    from vipdrain.lab.proc import Proc

OUTCOMES = ("ok", "refused", "reset", "timeout", "wrong_answer", "other")
STREAM_MODES = ("http", "keepalive", "tcp")
DEFAULT_RATE = 200.0
#: Workers stuck in a connect timeout send nothing: with 64 workers and a 1 s connect timeout the
#: client still sends 64 requests/s into a black hole (see LoadClient._next_due for the rest).
DEFAULT_WORKERS = 64
CONNECT_TIMEOUT = 1.0
TOTAL_TIMEOUT = 2.0
#: A stream whose server says nothing for this long is counted as broken.
STREAM_IDLE_TIMEOUT = 2.0
STREAM_TCP_PORT = 81
#: Seconds a request slot may be overdue before it is skipped (see LoadClient._next_due).
SKIP_AFTER = 0.1
_ANSWER = re.compile(rb"^(vm\d+)\n?$")
CONTENT_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


# --------------------------------------------------------------------------------------------
# The client process
# --------------------------------------------------------------------------------------------


def classify(exc: BaseException) -> tuple[str, str]:
    """(outcome, error text) for an exception raised by a request."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset", type(exc).__name__
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return "timeout", str(exc) or "timed out"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "other", "unreachable"
    return "other", f"{type(exc).__name__}: {exc}"


class LoadClient:
    """Paced requests plus optional streams against one target; results go to `emit`."""

    def __init__(self, target: str, port: int = 80, *, rate: float = DEFAULT_RATE, workers: int = DEFAULT_WORKERS,
                 connect_timeout: float = CONNECT_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT,
                 streams: int = 0, stream_mode: str = "http", stream_seconds: float = 10.0,
                 stream_stagger: float = 0.0, emit: Callable[[dict[str, Any]], None]):
        self.target, self.port, self.rate = target, port, rate
        self.workers, self.streams = workers, streams
        self.stream_mode, self.stream_seconds, self.stream_stagger = stream_mode, stream_seconds, stream_stagger
        self.connect_timeout, self.total_timeout = connect_timeout, total_timeout
        self.emit = emit
        self.family = socket.AF_INET6 if ":" in target else socket.AF_INET
        host = f"[{target}]" if ":" in target else target
        self._request = f"GET / HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vipdrain-lab\r\n\r\n".encode()
        self._host = host
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._slot = 0
        self._t0 = 0.0
        #: Request slots not sent because every worker was busy.
        self.skipped = 0
        self._open_streams: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._t0 = time.monotonic()
        if self.rate > 0:
            self._threads += [threading.Thread(target=self._worker, daemon=True) for _ in range(self.workers)]
        self._threads += [threading.Thread(target=self._stream_loop, args=(i * self.stream_stagger,), daemon=True)
                          for i in range(self.streams)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float) -> None:
        """Stop scheduling, cancel open streams, wait for in-flight requests (up to `timeout`)."""
        self.stopping.set()
        with self._lock:
            for sock in list(self._open_streams):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # requests -------------------------------------------------------------------------------

    def _next_due(self) -> float:
        """Start time of the next request slot.

        A slot a little late (a busy CPU) is sent at once; slots more than SKIP_AFTER overdue (every
        worker was stuck in a timeout) are skipped and counted, not sent later in a burst: the rate
        drops during a black hole, and `skipped` says by how much.
        """
        with self._lock:
            now_slot = int((time.monotonic() - self._t0 - SKIP_AFTER) * self.rate)
            if self._slot < now_slot:
                self.skipped += now_slot - self._slot
                self._slot = now_slot
            k = self._slot
            self._slot += 1
        return self._t0 + k / self.rate

    def _worker(self) -> None:
        while not self.stopping.is_set():
            delay = self._next_due() - time.monotonic()
            if delay > 0 and self.stopping.wait(delay):
                return
            self.emit(self.request())

    def request(self) -> dict[str, Any]:
        """One GET on a new connection; the record to write."""
        wall = time.time()
        t = time.monotonic()
        vm = None
        try:
            body, status = self._get()
            match = _ANSWER.match(body)
            if status == 200 and match:
                outcome, error, vm = "ok", "", match.group(1).decode()
            elif not body and status == 0:
                outcome, error = "other", "empty response"
            else:
                outcome, error = "wrong_answer", f"status {status}: {body[:40]!r}"
        except Exception as exc:
            outcome, error = classify(exc)
        return {"kind": "request", "time": wall, "latency": round(time.monotonic() - t, 6),
                "outcome": outcome, "vm": vm, "error": error}

    def _get(self) -> tuple[bytes, int]:
        deadline = time.monotonic() + self.total_timeout
        with socket.socket(self.family, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.connect_timeout)
            sock.connect((self.target, self.port))
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(self._request)
            data = bytearray()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no complete answer within the total timeout")
                sock.settimeout(remaining)
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        return body, status

    # streams --------------------------------------------------------------------------------

    def _stream_loop(self, delay: float) -> None:
        phase = time.monotonic() + delay
        self.stopping.wait(delay)
        while not self.stopping.is_set():
            record = self.stream()
            self.emit(record)
            if record["outcome"] == "finished":
                continue
            # A refused or broken stream is retried after a pause, not in a tight loop. Staggered
            # loops wait for their own next slot: loops broken by the same event would otherwise
            # reopen together and stay in step from then on.
            pause = 0.1
            if self.stream_stagger > 0:
                now = time.monotonic()
                pause = phase + math.ceil((now + pause - phase) / self.stream_seconds) * self.stream_seconds - now
            self.stopping.wait(pause)

    def stream(self) -> dict[str, Any]:
        """One long-lived connection of `stream_mode`; the record to write."""
        wall = time.time()
        state: dict[str, Any] = {"vm": None, "lines": 0}
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        with self._lock:
            self._open_streams.add(sock)
        try:
            sock.settimeout(self.connect_timeout)
            sock.connect((self.target, STREAM_TCP_PORT if self.stream_mode == "tcp" else self.port))
            sock.settimeout(STREAM_IDLE_TIMEOUT)
            finished = (self._keepalive if self.stream_mode == "keepalive" else self._download)(sock, state)
            outcome = "finished" if finished else ("cancelled" if self.stopping.is_set() else "broken")
            error = "" if finished else "closed before the end"
        except Exception as exc:
            outcome = "cancelled" if self.stopping.is_set() else "broken"
            error = classify(exc)[1]
        finally:
            with self._lock:
                self._open_streams.discard(sock)
            sock.close()
        return {"kind": "stream", "mode": self.stream_mode, "time": wall, "end": time.time(),
                "outcome": outcome, "vm": state["vm"], "lines": state["lines"], "error": error}

    def _download(self, sock: socket.socket, state: dict[str, Any]) -> bool:
        """Slow HTTP download (`/stream`) or raw TCP stream: lines `vmN i` then `end`."""
        if self.stream_mode == "tcp":
            sock.sendall(f"{self.stream_seconds}\n".encode())
        else:
            sock.sendall(
                f"GET /stream?seconds={self.stream_seconds} HTTP/1.0\r\nHost: {self._host}\r\n\r\n".encode()
            )
        buf = b""
        in_body = self.stream_mode == "tcp"
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            buf += chunk
            if not in_body:
                if b"\r\n\r\n" not in buf:
                    continue
                buf = buf.split(b"\r\n\r\n", 1)[1]
                in_body = True
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line == b"end":
                    return True
                state["lines"] += 1
                state["vm"] = state["vm"] or line.split(b" ", 1)[0].decode(errors="replace")

    def _keepalive(self, sock: socket.socket, state: dict[str, Any]) -> bool:
        """HTTP/1.1 keep-alive: one GET every 0.1 s on the same connection for `stream_seconds`."""
        request = f"GET / HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode()
        start = time.monotonic()
        buf = b""
        while time.monotonic() - start < self.stream_seconds:
            if self.stopping.is_set():
                return False
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            head, buf = buf.split(b"\r\n\r\n", 1)
            found = CONTENT_LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            while len(buf) < length:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            body, buf = buf[:length], buf[length:]
            state["lines"] += 1
            state["vm"] = state["vm"] or body.strip().decode(errors="replace")
            # Paced: a keep-alive connection that sends at 10 Hz, like a chatty long-lived client.
            if self.stopping.wait(0.1):
                return False
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run a load client until --duration passes or SIGTERM/SIGINT; records go to --out."""
    p = argparse.ArgumentParser(prog="python -m vipdrain.lab.client", description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="address to send to (a VIP)")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="requests per second in total (0: none)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    p.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT)
    p.add_argument("--total-timeout", type=float, default=TOTAL_TIMEOUT)
    p.add_argument("--streams", type=int, default=0, help="concurrent long-lived streams, each renewed when done")
    p.add_argument("--stream-mode", choices=STREAM_MODES, default="http")
    p.add_argument("--stream-seconds", type=float, default=10.0)
    p.add_argument("--stream-stagger", type=float, default=0.0, help="seconds between the streams' first starts")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until signalled)")
    p.add_argument("--out", required=True, help="JSON-lines file to append records to")
    args = p.parse_args(argv)

    records: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    with open(args.out, "a") as out:
        writer = threading.Thread(target=_write, args=(records, out), daemon=True)
        writer.start()
        client = LoadClient(
            args.target, args.port, rate=args.rate, workers=args.workers, connect_timeout=args.connect_timeout,
            total_timeout=args.total_timeout, streams=args.streams, stream_mode=args.stream_mode,
            stream_seconds=args.stream_seconds, stream_stagger=args.stream_stagger, emit=records.put,
        )
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        records.put({"kind": "start", "time": time.time(), "target": args.target, "rate": args.rate})
        client.start()
        done.wait(args.duration or None)
        client.stop(timeout=args.total_timeout + 1.0)
        records.put({"kind": "stop", "time": time.time(), "skipped": client.skipped})
        records.put(None)
        writer.join()
    return 0


def _write(records: queue.SimpleQueue[dict[str, Any] | None], out: IO[str]) -> None:
    """Single writer: lines never interleave; flushed whenever the queue runs empty."""
    while (item := records.get()) is not None:
        out.write(json.dumps(item, separators=(",", ":")) + "\n")
        if records.empty():
            out.flush()
    out.flush()


# --------------------------------------------------------------------------------------------
# The test side
# --------------------------------------------------------------------------------------------


class ClientRun:
    """A load client process in a lab client namespace. Context manager: starts on enter (once
    the client is sending), stops on exit and keeps the records in memory."""

    _count = 0

    def __init__(self, lab: Lab, *, target: str, namespace: str, rate: float = DEFAULT_RATE, port: int = 80,
                 workers: int = DEFAULT_WORKERS, streams: int = 0, stream_mode: str = "http",
                 stream_seconds: float = 10.0, stream_stagger: float = 0.0, duration: float = 0.0,
                 connect_timeout: float = CONNECT_TIMEOUT,
                 total_timeout: float = TOTAL_TIMEOUT, out: str | os.PathLike[str] | None = None):
        ClientRun._count += 1
        self.lab = lab
        self.name = f"client{ClientRun._count}-{os.getpid()}"
        self.namespace = namespace
        self.target = target
        self.path = Path(out) if out else lab.dir / "clients" / f"{self.name}.jsonl"
        self.argv = [
            sys.executable, "-m", "vipdrain.lab.client", "--target", target, "--port", str(port), "--rate", str(rate),
            "--workers", str(workers), "--connect-timeout", str(connect_timeout),
            "--total-timeout", str(total_timeout), "--streams", str(streams), "--stream-mode", stream_mode,
            "--stream-seconds", str(stream_seconds), "--stream-stagger", str(stream_stagger),
            "--duration", str(duration), "--out", str(self.path),
        ]
        self.stop_timeout = total_timeout + 5.0
        self.proc: Proc | None = None
        self._cache: Records | None = None

    def start(self, timeout: float = 10.0) -> ClientRun:
        """Start the client and wait until it has written its start line."""
        from vipdrain.lab.proc import spawn
        from vipdrain.lab.wait import until

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lab.state_lock:
            self.lab.check_open()
            self.proc = spawn(self.name, self.argv, namespace=self.namespace, env=dict(os.environ),
                              log=self.path.with_suffix(".log"))
            self.lab.procs[self.name] = self.proc
            self.lab.save()
        proc = self.proc

        def started() -> bool:
            return (self.path.exists() and self.path.stat().st_size > 0) or not proc.alive()

        until(started, timeout, interval=0.02, what=f"load client {self.name} to start")
        if not proc.alive() and not self.path.exists():
            raise RuntimeFailure(f"load client {self.name} exited at once; see {self.path.with_suffix('.log')}")
        return self

    def stop(self) -> None:
        """Stop the client (SIGTERM; it finishes in-flight requests) and load its records."""
        if self.proc is None:
            return
        self.proc.stop(timeout=self.stop_timeout)
        with self.lab.state_lock:
            self.lab.procs.pop(self.name, None)
            self.lab.save()
        self.proc = None
        self._cache = read_records(self.path)

    close = stop

    def wait(self, timeout: float) -> None:
        """Wait for a client started with `duration` to finish by itself, then load its records."""
        if self.proc is not None:
            self.proc.wait(timeout)
        self.stop()

    def __enter__(self) -> ClientRun:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _records(self) -> Records:
        return self._cache if self._cache is not None else read_records(self.path)

    def records(self) -> list[Request]:
        """Every request so far (read from the file while running)."""
        return self._records().requests

    def streams(self) -> list[Stream]:
        """Every long-lived stream that ended so far."""
        return self._records().streams

    @property
    def skipped(self) -> int:
        """Request slots not sent because every worker was stuck (known after stop)."""
        return self._records().skipped

    def summary(self, start: float | None = None, end: float | None = None) -> Summary:
        """Summary of the requests started within [start, end] (default: all)."""
        recs = self._records()
        return summarize(recs.requests, recs.streams, start, end)


if __name__ == "__main__":
    raise SystemExit(main())
