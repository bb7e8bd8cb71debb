"""`exec`: run another process inside a running container's namespaces and cgroup."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from galley.oci.spec import Process
    from galley.oci.state import ContainerState


def exec_process(
    state: ContainerState,
    process: Process,
    *,
    console_socket: str | None,
    pid_file: str | None,
    detach: bool,
    preserve_fds: int,
) -> int:
    """Run process in the container; its exit status, or 0 when detached."""
    raise NotImplementedError("execution.exec_process")
