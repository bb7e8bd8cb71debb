"""process.rlimits → setrlimit for the container process, with errors naming the limit.

Limits are set with prlimit(2) on the calling process, through galley.kernel (Python's
setrlimit hides EPERM behind a ValueError, and its resource module is one more shared library
for every stage to load). Raising a hard limit above the current one needs CAP_SYS_RESOURCE,
which this host's root lacks: that fails with an error naming the limit and the current
values.
"""

from __future__ import annotations

import errno

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel.proc import RLIM_INFINITY, prlimit

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import Rlimit

# linux/resource.h numbers (Python's resource module lacks RLIMIT_LOCKS).
RLIMIT_TYPES: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}


def _value(value: int, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= RLIM_INFINITY:
        raise InvalidArgument(f"{field}: {value!r} is not a 64-bit unsigned integer")
    return value


def parse(rlimits: list[Rlimit]) -> list[tuple[str, int, int, int]]:
    """(type, number, soft, hard) for each entry; InvalidArgument names the bad field."""
    parsed = []
    for i, rlimit in enumerate(rlimits):
        field = f"process.rlimits[{i}]"
        name = rlimit.get("type", "")
        number = RLIMIT_TYPES.get(name)
        if number is None:
            raise InvalidArgument(f"{field}.type: unknown rlimit type {name!r}")
        soft = _value(rlimit.get("soft", 0), f"{field}.soft")
        hard = _value(rlimit.get("hard", 0), f"{field}.hard")
        if soft > hard:
            raise InvalidArgument(f"{field}: {name} soft limit {soft} exceeds hard limit {hard}")
        parsed.append((name, number, soft, hard))
    return parsed


def _show(value: int) -> str:
    return "unlimited" if value == RLIM_INFINITY else str(value)


def raise_hard_limits(rlimits: list[Rlimit], pid: int = 0) -> None:
    """The first half of applying rlimits, while the caller still holds CAP_SYS_RESOURCE: the
    hard limits that go up, with the soft ones left as they are. The rest (apply_rlimits) comes
    just before execve: a small RLIMIT_DATA, AS or FSIZE in force while the stage still runs
    Python would fail the stage itself (runc applies them from outside, to its Go init)."""
    for name, number, _soft, hard in parse(rlimits):
        current_soft, current_hard = prlimit(pid, number)
        if hard > current_hard:
            _set(pid, name, number, min(current_soft, hard), hard)


def apply_rlimits(rlimits: list[Rlimit], pid: int = 0) -> None:
    """Set every rlimit in order on process pid (0: the caller). After raise_hard_limits,
    this only lowers hard limits, which needs no privilege."""
    for name, number, soft, hard in parse(rlimits):
        _set(pid, name, number, soft, hard)


def _set(pid: int, name: str, number: int, soft: int, hard: int) -> None:
    try:
        prlimit(pid, number, (soft, hard))
    except OSError as e:
        cur_hard = prlimit(pid, number)[1]
        detail = f"soft={_show(soft)} hard={_show(hard)}, now hard={_show(cur_hard)}"
        if e.errno == errno.EPERM:
            raise FailedPrecondition(
                f"process.rlimits: {name}: cannot raise the hard limit ({detail}):"
                " operation not permitted (CAP_SYS_RESOURCE is missing)"
            ) from None
        raise FailedPrecondition(f"process.rlimits: {name}: {detail}: {e.strerror}") from None
