"""`run` in the foreground with process.terminal: receive the pty master and relay it to our stdio.

runc does this itself when no --console-socket is given: the container gets a pty, and the
runtime copies between its own stdin/stdout and the pty master until the container exits (with
our terminal in raw mode when stdin is one, so keys go through untouched). galley's launch hands
the master to a console socket, so `run` listens on a private socket of its own, passes that as
--console-socket, takes the master (SCM_RIGHTS) and relays:

    stdin ──► master ──► container's /dev/console (the pty slave) ──► master ──► stdout

The terminal modes are runc's: the container's pty without ONLCR (its "\n" reaches us as it
is), our own terminal raw but for its output processing (OPOST, so its ONLCR turns that "\n"
into "\r\n" on the user's screen), set at once, so keys typed ahead reach the container.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # `signal` costs ~4 ms (enum)
import posix
import select

from galley.kernel import pathnames, unixsock

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable

CHUNK = 65536


class ConsoleReceiver:
    """A listening unix socket in a private directory that takes one pty master."""

    def __init__(self) -> None:
        self._dir = pathnames.private_directory("galley-console-")
        self.path = pathnames.join(self._dir, "console.sock")
        self._sock = unixsock.listening(self.path)

    def receive(self) -> int:
        """The master fd sent by launch (already queued on the socket)."""
        conn = unixsock.accept(self._sock)
        try:
            _, fds = unixsock.recv_fds(conn, 1024, 1)
        finally:
            conn.close()
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


def _host_terminal() -> int | None:
    """Our own terminal, as runc finds it: stderr, stdout or stdin, the first that is one, or
    else /dev/tty (opened: a number above 2, which the caller closes); None without one
    (runc refuses to relay then, galley-runc relays to plain pipes)."""
    for fd in (2, 1, 0):
        if posix.isatty(fd):
            return fd
    try:
        return posix.open("/dev/tty", posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    except OSError:  # no controlling terminal
        return None


def _copy_window_size(host: int, master: int) -> None:
    import fcntl  # noqa: PLC0415
    import termios  # noqa: PLC0415

    try:
        size = fcntl.ioctl(host, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def prepare_master(master: int) -> None:
    """Before the process runs: the pty as runc's relay leaves it, ONLCR off (our own terminal
    turns "\n" into "\r\n", see _make_raw) and our terminal's size (over consoleSize)."""
    import termios  # noqa: PLC0415

    attrs = termios.tcgetattr(master)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(master, termios.TCSANOW, attrs)
    host = _host_terminal()
    if host is not None:
        _copy_window_size(host, master)
        if host > 2:
            posix.close(host)


def _make_raw(fd: int) -> None:
    """cfmakeraw(3) on the terminal at fd, but with output processing kept (as runc's relay);
    at once (TCSANOW), not after discarding what was typed ahead (tty.setraw's TCSAFLUSH)."""
    import termios  # noqa: PLC0415

    t = termios
    attrs = t.tcgetattr(fd)
    attrs[0] &= ~(t.IGNBRK | t.BRKINT | t.PARMRK | t.ISTRIP | t.INLCR | t.IGNCR | t.ICRNL | t.IXON)
    attrs[1] |= t.OPOST
    attrs[2] = (attrs[2] & ~(t.CSIZE | t.PARENB)) | t.CS8
    attrs[3] &= ~(t.ECHO | t.ECHONL | t.ICANON | t.ISIG | t.IEXTEN)
    attrs[6][t.VMIN] = 1
    attrs[6][t.VTIME] = 0
    t.tcsetattr(fd, t.TCSANOW, attrs)


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

    saved = None
    host = _host_terminal()
    if host is not None:
        saved = termios.tcgetattr(host)
        _uninterrupted(lambda: _make_raw(host))
        _copy_window_size(host, master)
        signal.signal(signal.SIGWINCH, lambda _n, _f: _copy_window_size(host, master))
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
        if host is not None and saved is not None:
            attrs, fd = saved, host
            _uninterrupted(lambda: termios.tcsetattr(fd, termios.TCSADRAIN, attrs))
        if host is not None and host > 2:
            posix.close(host)
        posix.close(master)


class Relay:
    """The relay child of `exec -t` (fork_relay), and how it is ended."""

    __slots__ = ("_done", "pid")

    def __init__(self, pid: int, done: int) -> None:
        self.pid = pid
        self._done = done  # closed: the process has exited

    def end(self, *, ran: bool) -> None:
        """Once the process has exited (ran), the relay copies what the pty still holds and
        ends, whoever else holds the pty open (a background process it left, as runc's
        console closes with the process; galley's waited for every holder). Before a master
        came, SIGTERM ends its wait for one."""
        try:
            if not ran:
                posix.kill(self.pid, signal.SIGTERM)
            posix.close(self._done)
            posix.waitpid(self.pid, 0)
        except (ChildProcessError, ProcessLookupError):  # exec_process reaps orphans too
            pass


def fork_relay(receiver: ConsoleReceiver) -> Relay:
    """A child process that takes the master from receiver and relays it until the exec'd
    process has exited (for `exec -t`, whose exec_process blocks until then)."""
    done, told = posix.pipe2(posix.O_CLOEXEC)
    pid = posix.fork()
    if pid:
        posix.close(done)
        return Relay(pid, told)
    posix.close(told)
    code = 0
    signal.signal(signal.SIGTERM, _exit_on_term)  # so that relay's finally restores the tty
    try:
        master = receiver.receive()
        _leave_signals_to_the_exec()
        relay(master, lambda: 0 if _closed(done) else None)
    except BaseException:  # the exec failed before sending a master, or we were interrupted
        code = 1
    finally:
        posix._exit(code)


def _leave_signals_to_the_exec() -> None:
    """The exec passes our process group's signals on to its process (a shell's `kill %1`,
    `timeout`): the relay ignores them, but a window's resize. One that ended it hung the
    process up and left the caller's terminal raw."""
    from galley.oci.forwarding import forwarded_signals  # noqa: PLC0415

    for sig in [*forwarded_signals(), signal.SIGTERM]:
        if sig != signal.SIGWINCH:
            signal.signal(sig, signal.SIG_IGN)


def _closed(fd: int) -> bool:
    """Whether the other end of a pipe nobody writes to is closed."""
    return bool(select.select([fd], [], [], 0)[0])


def _exit_on_term(_signum: int, _frame: object) -> None:
    raise SystemExit(1)
