"""galley-runc's commands in one warm interpreter: what galley.oci costs as a library.

    /usr/bin/python3 -IS bench/library_worker.py REQUEST_FD REPLY_FD

bench_runtime starts this worker once and sends it one command line per request on
REQUEST_FD (a JSON list: galley-runc's arguments); the worker runs it with
galley.oci.cli.main, in this process, and answers its exit status as a line on REPLY_FD.
Its stdio is /dev/null (a `state` prints JSON; a created container inherits them). This is
the cost the daemon's shim will pay per container: no interpreter start, no imports, no
teardown.
"""

from __future__ import annotations

import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve(request_fd: int, reply_fd: int) -> None:
    """Run each command line read from request_fd; answer each exit status on reply_fd."""
    sys.path.insert(0, os.path.join(REPO, "src"))
    from galley import codecache  # noqa: PLC0415 - after the path is set

    codecache.install()
    from galley.oci.cli import main  # noqa: PLC0415

    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for line in os.fdopen(request_fd, "r"):
        try:
            status = main(json.loads(line))
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
        os.write(reply_fd, f"{status}\n".encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
