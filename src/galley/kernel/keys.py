"""Session keyrings: keyctl(2), which glibc does not wrap (libkeyutils does)."""

from __future__ import annotations

from galley.kernel import ffi
from galley.kernel.libc import MACHINE, check, function

KEYCTL_GET_KEYRING_ID = 0
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_SETPERM = 5
KEYCTL_DESCRIBE = 6
KEY_SPEC_SESSION_KEYRING = -3
KEY_USR_SEARCH = 0x00080000
KEY_OTH_SEARCH = 0x00000008

_NR = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 271, "s390x": 280}


def _keyctl(what: str, operation: int, *args: tuple[object, object]) -> int:
    """keyctl(operation, ...), each further argument a (C type, value) pair."""
    if MACHINE not in _NR:
        raise OSError(38, f"keyctl: unsupported machine {MACHINE}")  # ENOSYS
    fn = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, *(kind for kind, _ in args))
    return check(fn(_NR[MACHINE], operation, *(value for _, value in args)), what)


def join_session_keyring(name: str) -> int:
    """Make the named keyring this process's session keyring (a new one, unless the caller
    may search one of that name); its serial number."""
    return _keyctl("keyctl join", KEYCTL_JOIN_SESSION_KEYRING, (ffi.c_char_p, name.encode()))


def session_keyring() -> int:
    """The serial number of this process's session keyring."""
    target = (ffi.c_int, KEY_SPEC_SESSION_KEYRING)
    return _keyctl("keyctl get", KEYCTL_GET_KEYRING_ID, target, (ffi.c_int, 0))


def describe(key: int) -> str:
    """ "type;uid;gid;perm;description" of key (perm in hex)."""
    buf = ffi.create_string_buffer(4096)
    args = ((ffi.c_int32, key), (ffi.c_char_p, buf), (ffi.c_ulong, len(buf)))
    size = _keyctl("keyctl describe", KEYCTL_DESCRIBE, *args)
    return buf.raw[: max(size - 1, 0)].decode(errors="replace")


def set_permissions(key: int, perm: int) -> None:
    """keyctl setperm."""
    _keyctl("keyctl setperm", KEYCTL_SETPERM, (ffi.c_int32, key), (ffi.c_uint32, perm))
