"""The app server behind a lab VM's haproxy: slow streams for long-lived connection tests.

Run inside a VM namespace as `python -m vipdrain.lab.backend --name vm0`. Standard library only.

- HTTP `GET /stream?seconds=N[&interval=S]`: a response without Content-Length that writes
  `<name> <i>` lines every `interval` s for N s, then `end`, then closes.
- raw TCP: the client sends `N\\n` (seconds), the server writes the same lines and closes.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socketserver
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from vipdrain.lab.haproxy import APP_HTTP_PORT, APP_TCP_PORT

MAX_SECONDS = 600.0
DEFAULT_INTERVAL = 0.1


def stream_lines(name: str, seconds: float, interval: float, write: Callable[[bytes], None]) -> None:
    """Write `<name> <i>` every `interval` s for `seconds` s, then `end` (raises if the peer left)."""
    seconds = max(0.0, min(seconds, MAX_SECONDS))
    interval = max(0.01, interval)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        write(f"{name} {i}\n".encode())
        i += 1
        # Paced streaming is the point of this endpoint; the sleep paces output, it does not synchronise.
        time.sleep(interval)
    write(b"end\n")


def _number(query: dict[str, list[str]], key: str, default: float) -> float:
    try:
        return float(query[key][0])
    except (KeyError, IndexError, ValueError):
        return default


def make_http_handler(name: str) -> type[BaseHTTPRequestHandler]:
    """Request handler class answering /stream for VM `name`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/stream":
                self.send_error(404)
                return
            query = parse_qs(url.query)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            seconds, interval = _number(query, "seconds", 10.0), _number(query, "interval", DEFAULT_INTERVAL)
            # The client (or haproxy) going away is what the tests look at, not an error here.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stream_lines(name, seconds, interval, write)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: one line per request would dominate the lab's disk writes."""

    return Handler


def make_tcp_handler(name: str) -> type[socketserver.StreamRequestHandler]:
    """Raw TCP handler: read the number of seconds, stream lines."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                seconds = float(self.rfile.readline(64).strip() or b"10")
            except ValueError:
                seconds = 10.0

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                stream_lines(name, seconds, DEFAULT_INTERVAL, write)

    return Handler


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m vipdrain.lab.backend", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="VM name written in every line")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--http-port", type=int, default=APP_HTTP_PORT)
    parser.add_argument("--tcp-port", type=int, default=APP_TCP_PORT)
    args = parser.parse_args(argv)

    http = _HTTPServer((args.host, args.http_port), make_http_handler(args.name))
    tcp = _TCPServer((args.host, args.tcp_port), make_tcp_handler(args.name))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (http, tcp)]
    for t in threads:
        t.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    # No server.shutdown(): it polls every 0.5 s; the serving threads are daemons and end with us.
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
