"""Whether this process runs in a user namespace other than the host's: read from
/proc/self/uid_map, with nothing but posix (galley-runc asks it before most commands'
imports, for runc's choice of a state directory)."""

from __future__ import annotations

from galley.kernel import pathnames

_WHOLE = [b"0", b"0", b"4294967295"]  # the initial user namespace maps every id to itself


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace other than the initial one."""
    return pathnames.read_bytes("/proc/self/uid_map").split() != _WHOLE


def overflow_ids() -> tuple[int, int]:
    """The uid and gid stat() reports for an owner the caller's user namespace does not map
    (/proc/sys/kernel/overflowuid and overflowgid; 65534 where they cannot be read)."""
    ids = []
    for name in ("overflowuid", "overflowgid"):
        try:
            ids.append(int(pathnames.read_bytes(f"/proc/sys/kernel/{name}")))
        except (OSError, ValueError):
            ids.append(65534)
    return ids[0], ids[1]
