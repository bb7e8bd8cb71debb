"""Loading libc once and calling it with errno checks."""

from __future__ import annotations

import posix

from galley.kernel import ffi, pathnames

TYPE_CHECKING = False  # not `from typing`: the container's init stage imports this (~10 ms)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The machine, read once at import: uname(2) says "i686" once the container's init stage has
# set linux.personality's PER_LINUX32, and syscall numbers are chosen after that (a seccomp
# filter loaded without noNewPrivileges, set_mempolicy).
MACHINE = posix.uname().machine

_libc: ffi.CDLL | None = None


def libc() -> ffi.CDLL:
    """The process's libc, loaded once with errno support."""
    global _libc  # noqa: PLW0603 - one handle per process, loaded lazily for start-up speed
    if _libc is None:
        try:
            _libc = ffi.CDLL("libc.so.6", use_errno=True)
        except OSError:  # not glibc: ask the slower ctypes.util (~20 ms of imports)
            from ctypes.util import find_library  # noqa: PLC0415

            _libc = ffi.CDLL(find_library("c"), use_errno=True)
    return _libc


def function(name: str, restype: Any, *argtypes: Any) -> Callable[..., Any]:
    """A libc function with its C signature declared."""
    fn = getattr(libc(), name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn  # type: ignore[no-any-return]


def check(result: int, what: str, *paths: str | bytes | None) -> int:
    """Raise OSError(errno, 'what: strerror', path) when a libc call returned -1."""
    if result == -1:
        err = ffi.get_errno()
        named = [pathnames.fsdecode(p) for p in paths if p is not None]
        raise OSError(err, f"{what}: {posix.strerror(err)}", *named[:2])
    return result


def encode(path: str | bytes | None) -> bytes | None:
    """A path as the bytes C expects (None stays NULL)."""
    if path is None:
        return None
    return pathnames.fsencode(path)
