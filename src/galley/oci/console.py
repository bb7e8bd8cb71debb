"""The container's terminal: a pty whose master goes to --console-socket by SCM_RIGHTS.

Both create and exec open the pty from the container's own /dev/ptmx, as runc does, so `tty`
in the container names a /dev/pts entry it can see: create just before pivot_root (the
container's devpts is mounted by then; the slave is bound onto /dev/console), exec after
joining the container's mount namespace. The stage applies consoleSize (and leaves the
terminal's modes as the kernel makes them: ONLCR on, as runc 1.1 does, so "\n" reaches the
reader as "\r\n"), makes the slave its stdio and controlling terminal, and reports the
master's fd number; P copies it out with pidfd_getfd and sends it to --console-socket (so
nothing in the init stage needs the socket module). A foreground `run` or `exec -t` relays
the master itself and, before the process runs, clears ONLCR and sizes it after its own
terminal, as runc's relay does (galley.oci.commands.terminal).
"""

from __future__ import annotations

import errno
import fcntl
import posix
import stat
import struct  # here, not in set_size: exec's stage sizes the pty inside the container
import termios

from galley.oci.paths import open_in_root

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from galley.oci.spec import ConsoleSize

TIOCSPTLCK = 0x40045431  # lock/unlock the slave (unlockpt)
TIOCGPTPEER = 0x5441  # open the slave from the master, without a path lookup


def open_pty_here(size: ConsoleSize | None, root: str | None = None) -> tuple[int, int]:
    """A new pty pair (master, slave) from /dev/ptmx of the current mount namespace, or of the
    container root at `root` (resolved inside it: create, before pivot_root), sized as runc
    sizes it: consoleSize when it has both sides. Its modes stay the kernel's defaults: a
    reader in raw mode (containerd's shim, `kubectl exec -t`) gets "\r\n" line ends, as from
    runc; without ONLCR, lines would stair-step there. The slave goes to the container user
    with the rest of its stdio (galley.oci.identity.fix_stdio_ownership)."""
    master = _open_ptmx(root)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt
    slave: int = fcntl.ioctl(master, TIOCGPTPEER, posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC)
    if size and size.get("height") and size.get("width"):
        set_size(master, size["height"], size["width"])
    return master, slave


PTMX = posix.makedev(5, 2)  # /dev/ptmx, and devpts' own ptmx


def _open_ptmx(root: str | None) -> int:
    """The root's /dev/ptmx (root None: this mount namespace's, as exec sees the container),
    resolved inside it without magic links, and refused unless it is the ptmx device: the
    container owns that path."""
    flags = posix.O_RDWR | posix.O_NOCTTY | posix.O_CLOEXEC
    root_fd = posix.open(root or "/", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        master = open_in_root(root_fd, "/dev/ptmx", flags)
    except OSError as err:
        raise OSError(err.errno, f"process.terminal: open /dev/ptmx: {err.strerror}") from None
    finally:
        posix.close(root_fd)
    st = posix.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX:
        posix.close(master)
        raise OSError(errno.ENOTTY, "process.terminal: /dev/ptmx is not the ptmx device")
    return master


def bind_console(root: str, slave: int) -> None:
    """Bind the pty slave onto the root's /dev/console (a 0666 file made for it), as runc."""
    from galley.kernel.mount import fd_path  # noqa: PLC0415
    from galley.oci.devices import bind_console as bind  # noqa: PLC0415

    root_fd = posix.open(root, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        bind(root_fd, fd_path(slave))
    except OSError as err:
        raise OSError(err.errno, f"process.terminal: /dev/console: {err.strerror}") from None
    finally:
        posix.close(root_fd)


def set_size(fd: int, height: int, width: int) -> None:
    """TIOCSWINSZ: the terminal's rows and columns."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


# How long an exec waits for the console socket's reader to close its end once it has the
# master. conmon closes it only after it has set the pty up to take its resize messages, which
# `podman exec -t` has sent already: a process that ran sooner saw a 0x0 terminal (runc's own
# slowness hid the race). The containerd shim closes at once; runc's recvtty keeps the
# connection for the whole session, and so costs an exec this long.
READER_SETTLES = 0.05


def send_master(console_socket: str, master: int, *, settle: float = 0.0) -> None:
    """Send the pty master over the unix socket at console_socket (SCM_RIGHTS), as runc does;
    then wait up to settle seconds for the reader to close its end (READER_SETTLES)."""
    import select  # noqa: PLC0415

    from galley.kernel import unixsock  # noqa: PLC0415

    sock = unixsock.unix()
    try:
        sock.connect(console_socket)
        unixsock.send_fds(sock, b"/dev/ptmx", [master])
        if settle:
            select.select([sock], [], [], settle)  # readable: the reader's end of file
    except OSError as err:
        raise OSError(err.errno, f"console socket {console_socket}: {err.strerror}") from err
    finally:
        sock.close()


def take_console(slave: int) -> None:
    """Init stage: the slave becomes stdin/stdout/stderr and the controlling terminal."""
    for target in (0, 1, 2):
        posix.dup2(slave, target)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        posix.close(slave)
