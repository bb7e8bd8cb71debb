"""Whether this process runs in a user namespace other than the host's: read from
/proc/self/uid_map, with nothing but posix (galley-runc asks it before most commands'
imports, for runc's choice of a state directory)."""

from __future__ import annotations

from galley.kernel import pathnames

_WHOLE = [b"0", b"0", b"4294967295"]  # the initial user namespace maps every id to itself


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the initial one."""
    return pathnames.read_bytes("/proc/self/uid_map").split() != _WHOLE
