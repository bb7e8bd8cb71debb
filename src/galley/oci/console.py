"""The container's terminal: a pty whose master goes to --console-socket by SCM_RIGHTS.

create: P opens the pty (so nothing in the init stage needs the socket module), chowns the
slave to the container user, applies consoleSize and clears ONLCR as runc does; the init stage
makes the slave its stdio and controlling terminal, and the rootfs step bind-mounts it onto
/dev/console. exec: the stage opens the pty from the container's /dev/ptmx after joining its
mount namespace and reports the master's fd number; P copies it out with pidfd_getfd.
"""

from __future__ import annotations

import fcntl
import os
import termios

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from galley.oci.spec import ConsoleSize

TIOCSPTLCK = 0x40045431  # lock/unlock the slave (unlockpt)
TIOCGPTPEER = 0x5441  # open the slave from the master, without a path lookup


def open_pty(size: ConsoleSize | None, owner_uid: int) -> tuple[int, int]:
    """A new pty pair (master, slave) from the host's devpts, the slave owned by owner_uid."""
    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    _configure(master, slave, size, owner_uid)
    return master, slave


def open_pty_here(size: ConsoleSize | None, owner_uid: int) -> tuple[int, int]:
    """A new pty pair from /dev/ptmx of the current mount namespace (exec: the container's
    devpts, so `tty` names a /dev/pts entry the container can see)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, b"\0\0\0\0")  # unlockpt
    slave: int = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    _configure(master, slave, size, owner_uid)
    return master, slave


def _configure(master: int, slave: int, size: ConsoleSize | None, owner_uid: int) -> None:
    """runc's settings: no ONLCR (\n stays \n), consoleSize, the slave owned by the user."""
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    if size:
        set_size(master, size.get("height", 0), size.get("width", 0))
    os.fchown(slave, owner_uid, -1)


def set_size(fd: int, height: int, width: int) -> None:
    """TIOCSWINSZ: the terminal's rows and columns."""
    import struct  # noqa: PLC0415

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def send_master(console_socket: str, master: int) -> None:
    """Send the pty master over the unix socket at console_socket (SCM_RIGHTS), as runc does."""
    import socket  # noqa: PLC0415 - costs ~7 ms; only --console-socket users pay

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(console_socket)
            socket.send_fds(sock, [b"/dev/ptmx"], [master])
        except OSError as err:
            raise OSError(err.errno, f"console socket {console_socket}: {err.strerror}") from err


def take_console(slave: int) -> None:
    """Init stage: the slave becomes stdin/stdout/stderr and the controlling terminal."""
    for target in (0, 1, 2):
        os.dup2(slave, target)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)
