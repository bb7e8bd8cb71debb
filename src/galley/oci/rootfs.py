"""The container's root filesystem: mounts, /dev, pivot_root, masked and read-only paths."""

from __future__ import annotations

from collections.abc import Callable

from galley.oci.spec import Spec


def setup_rootfs(
    spec: Spec,
    bundle: str,
    *,
    no_pivot: bool,
    console_path: str | None,
    before_pivot: Callable[[], None],
) -> None:
    """Build the container's root inside the current (new) mount namespace and enter it."""
    raise NotImplementedError("setup_rootfs")


def apply_sysctl(spec: Spec) -> None:
    """Write linux.sysctl into /proc/sys (inside the container's namespaces)."""
    raise NotImplementedError("apply_sysctl")
