"""The warm drain: a resident process that has already imported the drain, so a BOSH drain starts
its work in milliseconds instead of paying the interpreter's imports (docs/BENCHMARKS.md).

    client (vipdrain drain job_changed ..., import-light)  --unix socket, fds-->  server
    server (vipdrain drain-server, started with keepalived) --fork--> child: cli.main(argv)

The child is the drain exactly as it runs in-process (same `cli.main`), with the client's stdin,
stderr, environment and working directory; its stdout is a pipe the client copies to its own. The
client falls back to the in-process drain when no server answers (none running, stale socket,
a stopped or busy server), and the child dies with its client, as an in-process drain would.
"""
