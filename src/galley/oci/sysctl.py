"""linux.sysctl: kernel parameters written under /proc/sys, inside the container's namespaces.

Keys name files under /proc/sys with dots ("net.ipv4.ip_forward") or slashes. setup_rootfs
writes them after pivot_root and before readonlyPaths makes /proc/sys read-only; a value that
is already in place is not written again, so a second call (the init stage's) is harmless.
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, os_error_text

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import Spec


def apply_sysctl(spec: Spec) -> None:
    """Write linux.sysctl into /proc/sys; values already in place are left alone (idempotent)."""
    for key, value in spec.get("linux", {}).get("sysctl", {}).items():
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
        try:
            with open(path, "rb") as current:
                if current.read().split() == value.encode().split():
                    continue
            fd = posix.open(path, posix.O_WRONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC)
            try:
                posix.write(fd, value.encode())
            finally:
                posix.close(fd)
        except OSError as err:
            raise FailedPrecondition(f"linux.sysctl {key!r}: {os_error_text(err)}") from err
