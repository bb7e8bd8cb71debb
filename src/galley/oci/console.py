"""The container's terminal: a pty whose master goes to --console-socket by SCM_RIGHTS.

P opens the pty (so nothing in the init stage needs the socket module), chowns the slave to the
container user, applies consoleSize and clears ONLCR as runc does; the init stage makes the slave
its stdio and controlling terminal, and the rootfs step bind-mounts it onto /dev/console.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from galley.oci.spec import ConsoleSize


def open_pty(size: ConsoleSize | None, owner_uid: int) -> tuple[int, int]:
    """A new pty pair (master, slave), the slave owned by owner_uid (a host uid)."""
    import termios  # noqa: PLC0415 - only containers with a terminal pay for it

    master, slave = os.openpty()
    os.set_inheritable(master, False)
    os.set_inheritable(slave, False)
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    if size:
        set_size(master, size.get("height", 0), size.get("width", 0))
    os.fchown(slave, owner_uid, -1)
    return master, slave


def set_size(fd: int, height: int, width: int) -> None:
    """TIOCSWINSZ: the terminal's rows and columns."""
    import fcntl  # noqa: PLC0415
    import struct  # noqa: PLC0415
    import termios  # noqa: PLC0415

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
    import fcntl  # noqa: PLC0415
    import termios  # noqa: PLC0415

    for target in (0, 1, 2):
        os.dup2(slave, target)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if slave > 2:
        os.close(slave)
