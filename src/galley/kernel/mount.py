"""Mount syscalls: mount, umount2, pivot_root, openat2, open_tree, move_mount, mount_setattr,
fsmount, and statx for a mount's id.

Mount descriptions stay data (see galley.snapshots and galley.oci.rootfs) until one of these
functions performs them.
"""

from __future__ import annotations

import errno
import posix
import sys

from galley.kernel import ffi, pathnames
from galley.kernel.libc import MACHINE, check, encode, function, libc

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from typing import Any

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
            ffi.c_int,
            ffi.c_char_p,
            ffi.c_char_p,
            ffi.c_char_p,
            ffi.c_ulong,
            ffi.c_char_p,
        )
    result = _mount(encode(source), encode(target), encode(fstype), flags, encode(data))
    kind = f"{_text(fstype)} " if fstype else ""  # none for a bind or a flags change
    what = f"mount {kind}{_text(source)} on {_text(target)}"
    check(result, what, target)


def _text(value: str | bytes | None) -> str:
    return "" if value is None else pathnames.fsdecode(value)


def umount(target: str | bytes, flags: int = 0) -> None:
    """umount2(2)."""
    global _umount2  # noqa: PLW0603 - bound lazily, once
    if _umount2 is None:
        _umount2 = function("umount2", ffi.c_int, ffi.c_char_p, ffi.c_int)
    check(_umount2(encode(target), flags), "umount", target)


def pivot_root(new_root: str | bytes, put_old: str | bytes) -> None:
    """pivot_root(2), through syscall(2) since glibc has no wrapper."""
    number = _SYS_PIVOT_ROOT[MACHINE]
    fn = _syscall(ffi.c_char_p, ffi.c_char_p)
    check(fn(number, encode(new_root), encode(put_old)), "pivot_root", new_root)


# --- fd-based mount API (Linux 5.2+) and openat2 (5.6+) ------------------------------------
#
# These calls take paths relative to directory fds, which is what lets the OCI runtime resolve
# a mount destination strictly inside the container's root (openat2 RESOLVE_IN_ROOT) and then
# act on exactly the inode it resolved, immune to a symlink swapped in between (CVE-2021-30465).
# The syscall numbers below are the generic ones, identical on x86-64 and arm64.

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
AT_FDCWD = -100

OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = posix.O_CLOEXEC

MOVE_MOUNT_F_EMPTY_PATH = 0x04
MOVE_MOUNT_T_EMPTY_PATH = 0x40

MOUNT_ATTR_RDONLY = 0x01
MOUNT_ATTR_NOSUID = 0x02
MOUNT_ATTR_NODEV = 0x04
MOUNT_ATTR_NOEXEC = 0x08
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x00
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_OPENAT2 = 437
_SYS_MOUNT_SETATTR = 442
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}


class _OpenHow(ffi.Structure):
    _fields_ = (
        ("flags", ffi.c_uint64),
        ("mode", ffi.c_uint64),
        ("resolve", ffi.c_uint64),
    )


class _MountAttr(ffi.Structure):
    _fields_ = (
        ("attr_set", ffi.c_uint64),
        ("attr_clr", ffi.c_uint64),
        ("propagation", ffi.c_uint64),
        ("userns_fd", ffi.c_uint64),
    )


_syscalls: dict[tuple[Any, ...], Any] = {}


def _syscall(*argtypes: Any) -> Any:
    """syscall(2) declared with these argument types (one function object per signature)."""
    fn = _syscalls.get(argtypes)
    if fn is None:
        fn = libc()["syscall"]
        fn.restype = ffi.c_long
        fn.argtypes = [ffi.c_long, *argtypes]
        _syscalls[argtypes] = fn
    return fn


# With RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel answers EAGAIN when a rename or a mount
# anywhere on the host raced a ".." of the path, as it cannot then vouch that the walk stayed
# inside; openat2(2) leaves the retry to the caller. On a busy node (a rename loop on another
# core) one walk through a symlink like /etc/localtime -> ../usr/... in 16 failed so (crun's
# test_mounts, session 36); a retry costs microseconds, and a bound keeps a host that renames
# without pause from holding us forever.
OPENAT2_TRIES = 64


def openat2(dirfd: int, path: str | bytes, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): open path relative to dirfd under the RESOLVE_* restrictions; returns the fd.
    A walk that a host-wide rename or mount raced (EAGAIN) is tried again, OPENAT2_TRIES times
    at the most."""
    how = _OpenHow(flags | posix.O_CLOEXEC, mode, resolve)
    fn = _syscall(ffi.c_int, ffi.c_char_p, ffi.c_void_p, ffi.c_size_t)
    encoded = encode(path)
    for _ in range(OPENAT2_TRIES):
        result = fn(_SYS_OPENAT2, dirfd, encoded, ffi.byref(how), ffi.sizeof(how))
        if result != -1 or ffi.get_errno() != errno.EAGAIN:
            break
    return check(result, "openat2", path)


def open_tree(dirfd: int, path: str | bytes, flags: int) -> int:
    """open_tree(2): an fd for the mount at path, or a detached copy of it with OPEN_TREE_CLONE."""
    fn = _syscall(ffi.c_int, ffi.c_char_p, ffi.c_uint)
    return check(fn(_SYS_OPEN_TREE, dirfd, encode(path), flags), "open_tree", path)


def move_mount(
    from_fd: int, from_path: str | bytes, to_fd: int, to_path: str | bytes, flags: int
) -> None:
    """move_mount(2): attach or move the mount from (from_fd, from_path) onto (to_fd, to_path)."""
    fn = _syscall(ffi.c_int, ffi.c_char_p, ffi.c_int, ffi.c_char_p, ffi.c_uint)
    result = fn(_SYS_MOVE_MOUNT, from_fd, encode(from_path), to_fd, encode(to_path), flags)
    check(result, "move_mount", to_path or from_path)


def mount_setattr(
    dirfd: int,
    path: str | bytes,
    flags: int,
    *,
    attr_set: int = 0,
    attr_clr: int = 0,
    propagation: int = 0,
    userns_fd: int = 0,
) -> None:
    """mount_setattr(2): change mount attributes (AT_RECURSIVE for a whole tree)."""
    attr = _MountAttr(attr_set, attr_clr, propagation, userns_fd)
    fn = _syscall(ffi.c_int, ffi.c_char_p, ffi.c_uint, ffi.c_void_p, ffi.c_size_t)
    result = fn(_SYS_MOUNT_SETATTR, dirfd, encode(path), flags, ffi.byref(attr), ffi.sizeof(attr))
    check(result, "mount_setattr", path or f"fd {dirfd}")


AT_EMPTY_PATH = 0x1000
STATX_MNT_ID = 0x1000
_STATX_SIZE = 256  # struct statx
_STX_MNT_ID = 0x90  # offset of its __u64 stx_mnt_id
_statx = None


def mount_id(dirfd: int, path: str | bytes = "") -> int:
    """The id of the mount that path (relative to dirfd; "" for dirfd itself) is on, from
    statx(2), with no /proc: the ids /proc/self/mountinfo and fdinfo show. OSError where the
    kernel does not say (before 5.8) or statx is denied."""
    global _statx  # noqa: PLW0603 - bound lazily, once
    if _statx is None:
        _statx = function(
            "statx", ffi.c_int, ffi.c_int, ffi.c_char_p, ffi.c_int, ffi.c_uint, ffi.c_void_p
        )
    buffer = ffi.create_string_buffer(_STATX_SIZE)
    flags = 0 if path else AT_EMPTY_PATH
    check(_statx(dirfd, encode(path), flags, STATX_MNT_ID, buffer), "statx", path or None)
    raw = buffer.raw
    if not int.from_bytes(raw[:4], sys.byteorder) & STATX_MNT_ID:  # stx_mask
        raise OSError(f"statx: this kernel gives no mount id (fd {dirfd})")
    return int.from_bytes(raw[_STX_MNT_ID : _STX_MNT_ID + 8], sys.byteorder)


def fd_path(fd: int) -> str:
    """The /proc/self/fd path naming fd: mount(2) on it acts on exactly that inode."""
    return f"/proc/self/fd/{fd}"


FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1

_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432


def fsmount(fstype: str, config: dict[str, str | None], attr_flags: int = 0) -> int:
    """fsopen + fsconfig (None sets a flag) + fsmount: a detached new mount's fd."""
    open_fs = _syscall(ffi.c_char_p, ffi.c_uint)
    fs_fd = check(open_fs(_SYS_FSOPEN, encode(fstype), FSOPEN_CLOEXEC), "fsopen", fstype)
    try:
        configure = _syscall(ffi.c_int, ffi.c_uint, ffi.c_char_p, ffi.c_char_p, ffi.c_int)
        for key, value in config.items():
            cmd = FSCONFIG_SET_FLAG if value is None else FSCONFIG_SET_STRING
            result = configure(_SYS_FSCONFIG, fs_fd, cmd, encode(key), encode(value), 0)
            check(result, f"fsconfig {fstype} {key}", fstype)
        created = configure(_SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0)
        check(created, "fsconfig create", fstype)
        make = _syscall(ffi.c_int, ffi.c_uint, ffi.c_uint)
        return check(make(_SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, attr_flags), "fsmount", fstype)
    finally:
        posix.close(fs_fd)
