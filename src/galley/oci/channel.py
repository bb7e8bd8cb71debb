"""The init stage's pipes: messages between P and the stage, and the stage's error.

Messages are marshal-encoded dicts with a 4-byte length, over two pipes: json would cost ~7 ms
of imports in a stage that must start in ~10 ms. Both sides import this module; only the
stage runs galley.oci.init and galley.oci.starter (P imports them just before it forks one).

An fd the stage hands P (a pty master, a seccomp listener) goes by number in the message, and
P copies it out of the stage with pidfd_getfd: that takes ptrace rights over the stage, which
root has. A P that is not root (rootless) has none over a stage that is not dumpable, and a
stage made dumpable for the copy would be open to the container's processes during an exec:
for such a P the two sides also share a unix socket pair (`fds`), and the stage sends the fd
there (SCM_RIGHTS) just before its message.
"""

from __future__ import annotations

import marshal
import posix

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from typing import Any


class StageError(Exception):
    """The init stage reported a failure, or stopped talking."""


class Channel:
    """Length-prefixed marshal messages over a pair of pipe fds (and fds over a socket)."""

    __slots__ = ("fds", "rfd", "wfd")

    def __init__(self, rfd: int, wfd: int, fds: int = -1) -> None:
        self.rfd = rfd
        self.wfd = wfd
        self.fds = fds  # this side's end of the socket pair for fds, or -1: none

    def lend(self, fd: int) -> None:
        """The stage: send fd over the fd socket, before the message that names it (without
        one, P copies it out by number)."""
        if self.fds < 0:
            return
        from galley.kernel import unixsock  # noqa: PLC0415 - rootless only

        sock = unixsock.Socket(fileno=self.fds)
        try:
            unixsock.send_fds(sock, b"\0", [fd])
        finally:
            sock.detach()

    def take(self, pid: int, number: int) -> int:
        """P: the fd the stage named by number in its message: from the fd socket where there
        is one, else copied out of process pid (pidfd_getfd)."""
        if self.fds < 0:
            from galley.kernel.seccomp import take_fd  # noqa: PLC0415

            return take_fd(pid, number)
        from galley.kernel import unixsock  # noqa: PLC0415 - rootless only

        sock = unixsock.Socket(fileno=self.fds)
        try:
            _, fds = unixsock.recv_fds(sock, 1, 1)
        finally:
            sock.detach()
        if len(fds) != 1:
            raise StageError(f"init protocol: fd {number} did not come over the fd socket")
        return fds[0]

    def send(self, kind: str, **fields: object) -> None:
        fields["type"] = kind
        data = marshal.dumps(fields)
        buf = len(data).to_bytes(4, "little") + data
        while buf:
            buf = buf[posix.write(self.wfd, buf) :]

    def recv(self) -> dict[str, Any]:
        size = int.from_bytes(self._read(4), "little")
        msg: dict[str, Any] = marshal.loads(self._read(size))
        return msg

    def expect(self, kind: str) -> dict[str, Any]:
        msg = self.recv()
        if msg["type"] == "error":
            raise StageError(msg["message"])
        if msg["type"] != kind:
            raise StageError(f"init protocol: expected {kind!r}, got {msg['type']!r}")
        return msg

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = posix.read(self.rfd, size)
            if not chunk:
                raise StageError("the other side of the init pipe exited")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def next_error(self, timeout: float) -> str | None:
        """The "error" the other side sends next, waiting up to timeout seconds (0: only what
        it has already written) for its next message: None when that is anything else, or
        nothing came. P asks this when a step of its own failed while the stage went on:
        the stage's failure, if it failed too, is the cause (say a caller without
        CAP_SYS_ADMIN, who can neither unshare nor write devices.deny: the unshare comes
        first in the container's making, whichever of the two finished first)."""
        import select  # noqa: PLC0415 - failures only

        poll = select.poll()
        poll.register(self.rfd, select.POLLIN)
        if not poll.poll(int(timeout * 1000)):
            return None
        try:
            msg = self.recv()
        except (OSError, StageError, ValueError, EOFError):
            return None
        return str(msg.get("message")) if msg.get("type") == "error" else None

    def close(self) -> None:
        """Close both ends (once: a second call does nothing)."""
        for fd in (self.rfd, self.wfd, self.fds):
            if fd >= 0:
                posix.close(fd)
        self.rfd = self.wfd = self.fds = -1


def describe(err: BaseException) -> str:
    """The error for P, in its own words, without Python's [Errno N] prefix. A newline in
    it stays (a failing hook's output, as runc quotes it): the log line quotes the
    message whole."""
    if isinstance(err, OSError) and err.strerror:
        names = [str(n) for n in (err.filename, err.filename2) if n]
        where = "".join(f": {n}" for n in names if n not in err.strerror)
        return f"{err.strerror}{where}"
    return str(err) or type(err).__name__
