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

from galley.errors import FailedPrecondition

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from typing import ClassVar

    from galley.oci.spec import Status as StatusValue


class _Constant:
    """A named constant of a closed set (an Enum, written out: importing enum would cost every
    galley-runc command ~2 ms). Members are singletons: compare them with `is`."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: StatusValue | str) -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class Status(_Constant):
    """A container's status as `runc state` prints it."""

    value: StatusValue
    CREATING: ClassVar[Status]
    CREATED: ClassVar[Status]
    RUNNING: ClassVar[Status]
    PAUSED: ClassVar[Status]
    STOPPED: ClassVar[Status]


class Operation(_Constant):
    """The lifecycle operations whose legality depends on the status."""

    START: ClassVar[Operation]
    KILL: ClassVar[Operation]
    PAUSE: ClassVar[Operation]
    RESUME: ClassVar[Operation]
    DELETE: ClassVar[Operation]
    EXEC: ClassVar[Operation]
    UPDATE: ClassVar[Operation]


Status.CREATING = Status("CREATING", "creating")
Status.CREATED = Status("CREATED", "created")
Status.RUNNING = Status("RUNNING", "running")
Status.PAUSED = Status("PAUSED", "paused")
Status.STOPPED = Status("STOPPED", "stopped")
STATUSES = (Status.CREATING, Status.CREATED, Status.RUNNING, Status.PAUSED, Status.STOPPED)

Operation.START = Operation("START", "start")
Operation.KILL = Operation("KILL", "kill")
Operation.PAUSE = Operation("PAUSE", "pause")
Operation.RESUME = Operation("RESUME", "resume")
Operation.DELETE = Operation("DELETE", "delete")
Operation.EXEC = Operation("EXEC", "exec")
Operation.UPDATE = Operation("UPDATE", "update")
OPERATIONS = (
    Operation.START,
    Operation.KILL,
    Operation.PAUSE,
    Operation.RESUME,
    Operation.DELETE,
    Operation.EXEC,
    Operation.UPDATE,
)


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
