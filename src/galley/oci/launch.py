"""The parent (P) side of `create` and `run`: fork the init stage, sync with it, report its pid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from galley.oci.cgroups import CgroupManager
    from galley.oci.spec import Spec


@dataclass(frozen=True)
class LaunchResult:
    """What `create` leaves running: the container process and where its pieces live."""

    pid: int
    start_time: int
    cgroup: CgroupManager | None
    namespaces: dict[str, str] = field(default_factory=dict)


def create(
    container_id: str,
    bundle: str,
    spec: Spec,
    state_dir: str,
    *,
    pid_file: str | None,
    console_socket: str | None,
    no_pivot: bool,
    preserve_fds: int,
    foreground: bool,
) -> LaunchResult:
    """Start the container's init, stopped at the exec fifo until `start`."""
    raise NotImplementedError("launch.create")


def start(state_dir: str) -> None:
    """Let a created container's init run its process (opens the exec fifo)."""
    raise NotImplementedError("launch.start")
