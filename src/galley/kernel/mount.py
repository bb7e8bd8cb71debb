"""Mount syscalls: mount, umount2, pivot_root (and, as they are added, the new mount API).

Mount descriptions stay data (see galley.snapshots and galley.oci.rootfs) until one of these
functions performs them.
"""

from __future__ import annotations

import ctypes
import os

from galley.kernel.libc import check, encode, function

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

_mount = None
_umount2 = None


def mount(
    source: str | bytes | None,
    target: str | bytes,
    fstype: str | bytes | None,
    flags: int = 0,
    data: str | bytes | None = None,
) -> None:
    """mount(2); raises OSError naming the source, target and type."""
    global _mount  # noqa: PLW0603 - bound lazily, once
    if _mount is None:
        _mount = function(
            "mount",
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        )
    result = _mount(encode(source), encode(target), encode(fstype), flags, encode(data))
    what = f"mount {_text(fstype)} {_text(source)} on {_text(target)}"
    check(result, what, target)


def _text(value: str | bytes | None) -> str:
    return "" if value is None else os.fsdecode(value)


def umount(target: str | bytes, flags: int = 0) -> None:
    """umount2(2)."""
    global _umount2  # noqa: PLW0603 - bound lazily, once
    if _umount2 is None:
        _umount2 = function("umount2", ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
    check(_umount2(encode(target), flags), "umount", target)


def pivot_root(new_root: str | bytes, put_old: str | bytes) -> None:
    """pivot_root(2), through syscall(2) since glibc has no wrapper."""
    syscall = function("syscall", ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p)
    sys_pivot_root = 155  # x86-64
    check(syscall(sys_pivot_root, encode(new_root), encode(put_old)), "pivot_root", new_root)
