"""A container's lifecycle as a typed state machine, with runc's refusals for illegal operations.

    create ──► CREATING ──► CREATED ──start──► RUNNING ◄──resume── PAUSED
                  │            │                 │  └──pause──────►  │
                  │            └──kill/exit──►  STOPPED ◄──kill/exit─┘
                  └──failure (nothing is left behind)

`status` is never stored: `galley.oci.state.ContainerState.status()` derives it from the exec
fifo (present while init waits for `start`), the init process (alive, same start time) and the
cgroup freezer. The operations below check the derived status before they act and raise
`FailedPrecondition` with runc's wording, so scripts that match runc's messages keep working.
"""

from __future__ import annotations

import enum

from galley.errors import FailedPrecondition


class Status(enum.Enum):
    """A container's status as `runc state` prints it."""

    CREATING = "creating"
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class Operation(enum.Enum):
    """The lifecycle operations whose legality depends on the status."""

    START = "start"
    KILL = "kill"
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"
    EXEC = "exec"
    UPDATE = "update"


ALLOWED: dict[Operation, frozenset[Status]] = {
    Operation.START: frozenset({Status.CREATED}),
    Operation.KILL: frozenset({Status.CREATED, Status.RUNNING, Status.PAUSED}),
    Operation.PAUSE: frozenset({Status.RUNNING, Status.CREATED}),
    Operation.RESUME: frozenset({Status.PAUSED}),
    Operation.DELETE: frozenset({Status.STOPPED, Status.CREATED}),  # created: killed, as runc
    Operation.EXEC: frozenset({Status.CREATED, Status.RUNNING}),
    Operation.UPDATE: frozenset({Status.CREATED, Status.RUNNING, Status.PAUSED}),
}


def _refusal(op: Operation, status: Status, container_id: str) -> str:
    """runc's message for op refused in status (runc 1.1 wording)."""
    if op is Operation.START:
        if status is Status.STOPPED:
            return "cannot start a container that has stopped"
        if status is Status.RUNNING:
            return "cannot start an already running container"
        return f"cannot start a container in the {status.value} state"
    if op is Operation.RESUME:
        return "container not paused"
    if op is Operation.DELETE:
        return f"cannot delete container {container_id} that is not stopped: {status.value}"
    if op is Operation.EXEC and status is Status.PAUSED:
        return "cannot exec in a paused container (use --ignore-paused to override)"
    if op is Operation.EXEC:
        return "cannot exec in a stopped container"
    return "container not running"


def can(op: Operation, status: Status) -> bool:
    """Whether op is legal for a container in status."""
    return status in ALLOWED[op]


def require(op: Operation, status: Status, container_id: str) -> None:
    """Raise FailedPrecondition with runc's message unless op is legal in status."""
    if not can(op, status):
        raise FailedPrecondition(_refusal(op, status, container_id))
