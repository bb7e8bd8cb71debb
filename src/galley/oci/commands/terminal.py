"""`run` in the foreground with process.terminal: receive the pty master and relay it to our stdio.

runc does this itself when no --console-socket is given: the container gets a pty, and the
runtime copies between its own stdin/stdout and the pty master until the container exits (with
our terminal in raw mode when stdin is one, so keys go through untouched). galley's launch hands
the master to a console socket, so `run` listens on a private socket of its own, passes that as
--console-socket, takes the master (SCM_RIGHTS) and relays:

    stdin ──► master ──► container's /dev/console (the pty slave) ──► master ──► stdout
"""

from __future__ import annotations

import posix
import select
import signal

from galley.kernel import pathnames

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable

CHUNK = 65536


class ConsoleReceiver:
    """A listening unix socket in a private directory that takes one pty master."""

    def __init__(self) -> None:
        import socket  # noqa: PLC0415 - lazy: only terminal containers pay for it
        import tempfile  # noqa: PLC0415

        self._dir = tempfile.mkdtemp(prefix="galley-console-")
        self.path = pathnames.join(self._dir, "console.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(1)

    def receive(self) -> int:
        """The master fd sent by launch (already queued on the socket)."""
        import socket  # noqa: PLC0415

        conn, _ = self._sock.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        if not fds:
            raise OSError("console socket: no pty master received")
        return fds[0]

    def close(self) -> None:
        """Remove the socket and its directory."""
        self._sock.close()
        try:
            posix.unlink(self.path)
        except FileNotFoundError:
            pass
        posix.rmdir(self._dir)


def _copy(src: int, dst: int) -> bool:
    """Copy what is readable now from src to dst; False at end of input (EOF or EIO)."""
    try:
        data = posix.read(src, CHUNK)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:  # EIO: the pty slave has no more users
        return False
    if not data:
        return False
    while data:
        try:
            data = data[posix.write(dst, data) :]
        except BlockingIOError:
            select.select([], [dst], [])
    return True


def _copy_window_size(master: int) -> None:
    import fcntl  # noqa: PLC0415
    import termios  # noqa: PLC0415

    try:
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def _uninterrupted(call: Callable[[], object]) -> None:
    """A terminal attribute call, made again when a signal interrupted it. Python's handlers
    do not restart system calls and termios does not retry (PEP 475 covers os, not termios):
    a `run` in a background job stops on SIGTTOU in tcsetattr, and the SIGCONT that wakes it
    (one of the signals forwarded to the container) made it EINTR and a traceback."""
    import errno  # noqa: PLC0415
    import termios  # noqa: PLC0415

    while True:
        try:
            call()
            return
        except termios.error as err:
            if err.args[0] != errno.EINTR:
                raise


def relay(master: int, reap: Callable[[], int | None] | None) -> int:
    """Relay stdio and the master until reap() returns the container's exit status; with no
    reap, until the pty has no more users (the master reads EIO), then 0."""
    import termios  # noqa: PLC0415
    import tty  # noqa: PLC0415

    saved = None
    if posix.isatty(0):
        saved = termios.tcgetattr(0)
        _uninterrupted(lambda: tty.setraw(0))
        _copy_window_size(master)
        signal.signal(signal.SIGWINCH, lambda _n, _f: _copy_window_size(master))
    posix.set_blocking(master, False)
    inputs = [master, 0]
    try:
        while True:
            readable, _, _ = select.select(inputs, [], [], 0.05)
            if master in readable and not _copy(master, 1):
                inputs.remove(master)
            if 0 in readable and not _copy(0, master):
                inputs.remove(0)
            if reap is None:
                if master not in inputs:
                    return 0
                continue
            status = reap()
            if status is not None:
                while master in inputs and _copy(master, 1):
                    if not select.select([master], [], [], 0.05)[0]:
                        break
                return status
    finally:
        if saved is not None:
            attrs = saved
            _uninterrupted(lambda: termios.tcsetattr(0, termios.TCSADRAIN, attrs))
        posix.close(master)


def fork_relay(receiver: ConsoleReceiver) -> int:
    """A child process that takes the master from receiver and relays it until the pty closes
    (for `exec -t`, whose exec_process blocks until the process exits); the child's pid."""
    pid = posix.fork()
    if pid:
        return pid
    code = 0
    signal.signal(signal.SIGTERM, _exit_on_term)  # so that relay's finally restores the tty
    try:
        relay(receiver.receive(), None)
    except BaseException:  # the exec failed before sending a master, or we were interrupted
        code = 1
    finally:
        posix._exit(code)


def _exit_on_term(_signum: int, _frame: object) -> None:
    raise SystemExit(1)
