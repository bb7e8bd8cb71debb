"""sd_notify through the container, as runc does when NOTIFY_SOCKET is set.

A service manager (systemd, for a unit of Type=notify that runs a container; podman's
--sdnotify=container) gives the runtime NOTIFY_SOCKET, the datagram socket where it waits for
"READY=1". With it in galley-runc's environment:

- `create` and `run` make <state dir>/notify, bind it read-only at /run/notify in the
  container and give the process NOTIFY_SOCKET=/run/notify/notify.sock;
- `run` (before it starts the container) and `start` bind notify.sock there (mode 0777: the
  container's user may not be root), then wait until the container sends a datagram that
  begins "READY=", and pass its first line on to the host's socket with "MAINPID=<pid>":
  the container's init, or, for `run` in the foreground, galley-runc itself (the process the
  manager then watches). A detached `run` and `start` return once that is done, or once the
  init has gone without a word (runc 1.1.5 waits on for ever there: it checks for the
  init's /proc entry, which a zombie keeps, and in the foreground for its own).

Not runc 1.1.5's, nor here: BARRIER=1 (newer runc waits for the manager's acknowledgement).
"""

from __future__ import annotations

import posix

from galley.kernel import pathnames, unixsock
from galley.oci.state import NOTIFY_DIR, NOTIFY_SOCKET

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

IN_CONTAINER = "/run/notify/notify.sock"
POLL_SECONDS = 0.1  # how often the init's life is looked at while no datagram comes


def add_to_spec(spec: Any, state_dir: str) -> None:
    """create: the notify directory, and its bind mount and variable in the container (after
    validation: what is added here is well formed)."""
    directory = pathnames.join(state_dir, NOTIFY_DIR)
    posix.mkdir(directory, 0o755)
    spec.setdefault("mounts", []).append(
        {
            "destination": pathnames.dirname(IN_CONTAINER),
            "type": "bind",
            "source": directory,
            "options": ["bind", "nosuid", "noexec", "nodev", "ro"],
        }
    )
    process = spec.get("process")
    if process is not None:
        process["env"] = [*process.get("env", []), f"NOTIFY_SOCKET={IN_CONTAINER}"]


class NotifySocket:
    """The socket the container sends to, bound in the state directory."""

    def __init__(self, state_dir: str, host: str) -> None:
        self.host = host  # NOTIFY_SOCKET's value
        path = pathnames.join(state_dir, NOTIFY_DIR, NOTIFY_SOCKET)
        self.sock = unixsock.unix(unixsock.SOCK_DGRAM)
        directory = posix.open(pathnames.dirname(path), posix.O_PATH | posix.O_CLOEXEC)
        try:
            if pathnames.exists(path):  # left by a start that failed
                posix.unlink(path)
            # through the directory's fd: a socket's path has room for 107 bytes only, and a
            # --root deep in a file system (a test's temporary directory) goes past that
            self.sock.bind(f"/proc/self/fd/{directory}/{NOTIFY_SOCKET}")
            posix.chmod(path, 0o777)
        except OSError as err:
            self.sock.close()
            raise OSError(err.errno, f"notify socket {path}: {err.strerror or err}") from None
        finally:
            posix.close(directory)

    def relay(self, alive: Callable[[], bool], main_pid: int) -> None:
        """Wait for the container's "READY=" and pass it on with MAINPID=main_pid; return
        without a word when alive() says the container has gone first."""
        try:
            ready = self._wait_ready(alive)
            if ready is not None:
                client = unixsock.unix(unixsock.SOCK_DGRAM)
                try:
                    _connect(client, self.host)
                    client.send(ready + b"\n")
                    client.send(b"MAINPID=%d\n" % main_pid)
                finally:
                    client.close()
        finally:
            self.sock.close()

    def relay_in_background(self, alive: Callable[[], bool], main_pid: int) -> None:
        """relay in a thread of its own (a foreground `run` waits for the container meanwhile);
        a manager that cannot be reached is not the container's failure there, as in runc."""
        import threading  # noqa: PLC0415

        def relay() -> None:
            try:
                self.relay(alive, main_pid)
            except OSError:
                pass

        threading.Thread(target=relay, daemon=True).start()

    def _wait_ready(self, alive: Callable[[], bool]) -> bytes | None:
        import select  # noqa: PLC0415

        while True:
            readable, _, _ = select.select([self.sock], [], [], POLL_SECONDS)
            if readable:
                datagram = self.sock.recv(4096)
                if datagram.startswith(b"READY="):  # its first line, as runc passes it on
                    return datagram.split(b"\n", 1)[0]
            elif not alive():
                return None


def _connect(client: unixsock.Socket, host: str) -> None:
    """Connect to the manager's socket: "@name" is in the abstract namespace (systemd's
    notation, as Go reads it); a path through its directory's fd, for room (107 bytes)."""
    if host.startswith("@"):
        client.connect("\0" + host[1:])
        return
    directory = posix.open(pathnames.dirname(host) or ".", posix.O_PATH | posix.O_CLOEXEC)
    try:
        client.connect(f"/proc/self/fd/{directory}/{pathnames.basename(host)}")
    finally:
        posix.close(directory)
