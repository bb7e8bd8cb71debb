"""Network interfaces: what a runtime does to one without netlink (bring it up)."""

from __future__ import annotations

import fcntl
import posix

from galley.kernel import ffi
from galley.kernel.libc import check, function

AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFNAMSIZ = 16
_IFREQ = 40  # struct ifreq on 64-bit Linux: the name, then a 24-byte union (flags: a short)


def set_up(name: str) -> None:
    """Set IFF_UP on the interface name of this network namespace (ip link set NAME up)."""
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r}: 1 to {IFNAMSIZ - 1} bytes")
    socket = function("socket", ffi.c_int, ffi.c_int, ffi.c_int, ffi.c_int)
    sock = check(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")
    try:
        request = bytearray(raw.ljust(_IFREQ, b"\0"))
        fcntl.ioctl(sock, SIOCGIFFLAGS, request)
        flags = int.from_bytes(request[IFNAMSIZ : IFNAMSIZ + 2], "little") | IFF_UP
        request[IFNAMSIZ : IFNAMSIZ + 2] = flags.to_bytes(2, "little")
        fcntl.ioctl(sock, SIOCSIFFLAGS, request)
    finally:
        posix.close(sock)
