"""Process attributes: prctl(2) flags, host and domain names, close_range(2), prlimit(2)."""

from __future__ import annotations

import posix

from galley.kernel import ffi, pathnames
from galley.kernel.libc import check, encode, function

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

CLOSE_RANGE_CLOEXEC = 1 << 2
_SYS_CLOSE_RANGE = 436  # same number on every architecture (new syscall table)


def prctl(option: int, arg: int = 0) -> None:
    """prctl(2) with one integer argument."""
    fn = function(
        "prctl",
        ffi.c_int,
        ffi.c_int,
        ffi.c_ulong,
        ffi.c_ulong,
        ffi.c_ulong,
        ffi.c_ulong,
    )
    check(fn(option, arg, 0, 0, 0), f"prctl {option}")


def set_child_subreaper(on: bool = True) -> None:
    """Become the reaper of orphaned descendants (runc run, shims)."""
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


def set_pdeathsig(signal: int) -> None:
    """Get signal when the parent thread exits."""
    prctl(PR_SET_PDEATHSIG, signal)


def set_dumpable(on: bool) -> None:
    """A non-dumpable process's /proc/<pid> files are owned by root and ptrace is refused."""
    prctl(PR_SET_DUMPABLE, int(on))


def set_title(title: bytes) -> None:
    """What /proc/<pid>/cmdline (ps, and any process that sees this pid) shows: title, written
    over the argv the kernel reads it from (this process's own stack, as setproctitle does),
    the rest of that area zeroed; cut to fit. A forked stage's argv is galley-runc's whole
    command line, --env values included."""
    fields = pathnames.read_bytes("/proc/self/stat").rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end: fields 48 and 49
    if end - start < 2:
        return
    text = title[: end - start - 1]
    area = (ffi.c_char * (end - start)).from_address(start)
    area.raw = text + b"\0" * (end - start - len(text))


def set_keepcaps(on: bool) -> None:
    """Keep permitted capabilities across a switch away from uid 0."""
    prctl(PR_SET_KEEPCAPS, int(on))


def set_no_new_privs() -> None:
    """execve can never again grant privileges (setuid bits, file capabilities)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def sethostname(name: str) -> None:
    """sethostname(2) in the caller's UTS namespace."""
    raw = encode(name) or b""
    fn = function("sethostname", ffi.c_int, ffi.c_char_p, ffi.c_size_t)
    check(fn(raw, len(raw)), f"sethostname {name!r}")


def setdomainname(name: str) -> None:
    """setdomainname(2) in the caller's UTS namespace."""
    raw = encode(name) or b""
    fn = function("setdomainname", ffi.c_int, ffi.c_char_p, ffi.c_size_t)
    check(fn(raw, len(raw)), f"setdomainname {name!r}")


def cloexec_from(first: int) -> None:
    """Mark every fd >= first close-on-exec (close_range(first, ~0, CLOSE_RANGE_CLOEXEC))."""
    _close_range(first, CLOSE_RANGE_CLOEXEC)


def close_from(first: int) -> None:
    """Close every fd >= first (close_range(first, ~0, 0)), or raise OSError: unlike
    posix.closerange, never a close() per number where the syscall is missing or denied."""
    _close_range(first, 0)


def _close_range(first: int, flags: int) -> None:
    fn = function("syscall", ffi.c_long, ffi.c_long, ffi.c_uint, ffi.c_uint, ffi.c_uint)
    check(fn(_SYS_CLOSE_RANGE, first, 0xFFFFFFFF, flags), "close_range")


RLIM_INFINITY = (1 << 64) - 1
RLIMIT_NOFILE = 7


class _Rlimit(ffi.Structure):
    _fields_ = (("soft", ffi.c_uint64), ("hard", ffi.c_uint64))


def prlimit(pid: int, resource: int, new: tuple[int, int] | None = None) -> tuple[int, int]:
    """prlimit(2): process pid's (0: the caller's) limit resource, set to new (soft, hard)
    when given; the (soft, hard) it had. Values are rlim_t (RLIM_INFINITY: unlimited)."""
    fn = function("prlimit", ffi.c_int, ffi.c_int, ffi.c_int, ffi.c_void_p, ffi.c_void_p)
    old = _Rlimit()
    wanted = ffi.byref(_Rlimit(*new)) if new is not None else None
    check(fn(pid, resource, wanted, ffi.byref(old)), "prlimit")
    return old.soft, old.hard


def descendants(pid: int) -> list[int]:
    """pid and every living descendant, from each thread's /proc/<pid>/task/<tid>/children
    (a process gone meanwhile is skipped)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            threads = posix.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        found.append(current)
        for tid in threads:
            try:
                text = pathnames.read_text(f"/proc/{current}/task/{tid}/children")
            except OSError:
                continue
            todo.extend(int(child) for child in text.split())
    return sorted(found)
