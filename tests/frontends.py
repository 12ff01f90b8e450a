"""Stand-in haproxy frontends for probe tests: they read the request and answer (or not) like haproxy."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _serve(server: socket.socket, reply: bytes | None) -> None:
    """Answer every connection on `server` as haproxy would: read the request, send `reply`
    (None: close without a word, as a TLS frontend does with a plain-text request)."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return  # the test closed the server
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(4096)
                if reply is not None:
                    conn.sendall(reply)
            except OSError:
                pass


@contextlib.contextmanager
def answering(reply: bytes | None, host: str = "127.0.0.1") -> Iterator[str]:
    """A local frontend on `host` that answers every request with `reply`; yields HOST:PORT
    ([HOST]:PORT for IPv6)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.create_server((host, 0), family=family) as server:
        worker = threading.Thread(target=_serve, args=(server, reply), daemon=True)
        worker.start()
        port = server.getsockname()[1]
        yield f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        server.shutdown(socket.SHUT_RDWR)
    worker.join(5)
