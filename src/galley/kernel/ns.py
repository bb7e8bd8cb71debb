"""Namespaces: unshare(2), setns(2) and the CLONE_NEW* flags, by OCI namespace type.

unshare(CLONE_NEWPID) and unshare(CLONE_NEWTIME) move only the caller's *children* into the new
namespace, so the caller forks afterwards; every other type moves the caller itself. setns(2) on a
user namespace must come first when joining several: it decides which namespaces the caller may
join next.
"""

from __future__ import annotations

import posix

from galley.kernel import ffi

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# OCI namespace type -> (clone flag, name under /proc/<pid>/ns/)
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (CLONE_NEWUSER, "user"),
    "mount": (CLONE_NEWNS, "mnt"),
    "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "time": (CLONE_NEWTIME, "time"),
}


def unshare(flags: int) -> None:
    """unshare(2) with CLONE_NEW* flags."""
    from galley.kernel.libc import check, function  # noqa: PLC0415

    fn = function("unshare", ffi.c_int, ffi.c_int)
    check(fn(flags), f"unshare {describe(flags)}")


def describe(flags: int) -> str:
    """CLONE_NEW* flags as a person reads them: "mount, pid namespaces"."""
    names = [kind for kind, (flag, _) in NAMESPACES.items() if flags & flag]
    rest = flags & ~sum(flag for flag, _ in NAMESPACES.values())
    if rest:
        names.append(f"{rest:#x}")
    return ", ".join(names) + (" namespace" if len(names) == 1 else " namespaces")


def setns(fd: int, nstype: int = 0, path: str | None = None) -> None:
    """setns(2): join the namespace fd refers to (nstype 0 accepts any type)."""
    from galley.kernel.libc import check, function  # noqa: PLC0415

    fn = function("setns", ffi.c_int, ffi.c_int, ffi.c_int)
    check(fn(fd, nstype), "setns", path)


def join(path: str, nstype: int = 0) -> None:
    """Join the namespace at path (a /proc/<pid>/ns/* file or a bind mount of one)."""
    fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        setns(fd, nstype, path)
    finally:
        posix.close(fd)
