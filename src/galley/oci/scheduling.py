"""process.scheduler, process.ioPriority, process.execCPUAffinity and linux.personality
(runtime-spec 1.1-1.2).

The init stage applies them just before the security steps (runc 1.2 order: scheduler and I/O
priority on the container process; execCPUAffinity "initial" before the process joins the
container's cgroup and "final" after). Bad values fail with an error naming the field.
"""

from __future__ import annotations

import os

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel import sched

POLICIES = {
    "SCHED_OTHER": sched.SCHED_OTHER,
    "SCHED_FIFO": sched.SCHED_FIFO,
    "SCHED_RR": sched.SCHED_RR,
    "SCHED_BATCH": sched.SCHED_BATCH,
    "SCHED_ISO": sched.SCHED_ISO,
    "SCHED_IDLE": sched.SCHED_IDLE,
    "SCHED_DEADLINE": sched.SCHED_DEADLINE,
}
FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": sched.SCHED_FLAG_RESET_ON_FORK,
    "SCHED_FLAG_RECLAIM": sched.SCHED_FLAG_RECLAIM,
    "SCHED_FLAG_DL_OVERRUN": sched.SCHED_FLAG_DL_OVERRUN,
    "SCHED_FLAG_KEEP_POLICY": sched.SCHED_FLAG_KEEP_POLICY,
    "SCHED_FLAG_KEEP_PARAMS": sched.SCHED_FLAG_KEEP_PARAMS,
    "SCHED_FLAG_UTIL_CLAMP_MIN": sched.SCHED_FLAG_UTIL_CLAMP_MIN,
    "SCHED_FLAG_UTIL_CLAMP_MAX": sched.SCHED_FLAG_UTIL_CLAMP_MAX,
}
IO_CLASSES = {
    "IOPRIO_CLASS_RT": sched.IOPRIO_CLASS_RT,
    "IOPRIO_CLASS_BE": sched.IOPRIO_CLASS_BE,
    "IOPRIO_CLASS_IDLE": sched.IOPRIO_CLASS_IDLE,
}
_FIELD = "process.scheduler"


def _int(value: object, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgument(f"{field}: {value!r} is not an integer in [{low}, {high}]")
    return value


def scheduler_args(scheduler: dict[str, object]) -> tuple[int, dict[str, int]]:
    """(policy, keyword arguments of sched_setattr), checked as runc 1.2 checks them."""
    name = scheduler.get("policy")
    if name not in POLICIES:
        raise InvalidArgument(f"{_FIELD}.policy: unknown scheduling policy {name!r}")
    policy = POLICIES[str(name)]
    flags = 0
    raw_flags = scheduler.get("flags") or []
    if not isinstance(raw_flags, list):
        raise InvalidArgument(f"{_FIELD}.flags: must be a list of scheduler flags")
    for i, flag in enumerate(raw_flags):
        if flag not in FLAGS:
            raise InvalidArgument(f"{_FIELD}.flags[{i}]: unknown scheduler flag {flag!r}")
        flags |= FLAGS[flag]
    nice = _int(scheduler.get("nice", 0), f"{_FIELD}.nice", -20, 19)
    priority = _int(scheduler.get("priority", 0), f"{_FIELD}.priority", 0, 99)
    if priority and policy not in (sched.SCHED_FIFO, sched.SCHED_RR):
        raise InvalidArgument(f"{_FIELD}.priority: only SCHED_FIFO and SCHED_RR take a priority")
    if policy in (sched.SCHED_FIFO, sched.SCHED_RR) and not priority:
        raise InvalidArgument(f"{_FIELD}.priority: {name} needs a priority in [1, 99]")
    times = {}
    for key in ("runtime", "deadline", "period"):
        times[key] = _int(scheduler.get(key, 0), f"{_FIELD}.{key}", 0, (1 << 64) - 1)
        if times[key] and policy != sched.SCHED_DEADLINE:
            raise InvalidArgument(f"{_FIELD}.{key}: only SCHED_DEADLINE takes {key}")
    return policy, {"flags": flags, "nice": nice, "priority": priority, **times}


def apply_scheduler(scheduler: dict[str, object]) -> None:
    """Set the calling process's scheduling policy and parameters."""
    policy, kwargs = scheduler_args(scheduler)
    try:
        sched.sched_setattr(policy, **kwargs)
    except OSError as e:
        raise FailedPrecondition(f"{_FIELD}: {e}") from None


def apply_io_priority(io_priority: dict[str, object]) -> None:
    """Set the calling process's I/O scheduling class and level."""
    name = io_priority.get("class")
    if name not in IO_CLASSES:
        raise InvalidArgument(f"process.ioPriority.class: unknown I/O priority class {name!r}")
    level = _int(io_priority.get("priority", 0), "process.ioPriority.priority", 0, 7)
    try:
        sched.ioprio_set(IO_CLASSES[str(name)], level)
    except OSError as e:
        raise FailedPrecondition(f"process.ioPriority: {e}") from None


def parse_cpus(text: str, field: str) -> set[int]:
    """A cpuset list ("0-3,7") as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise InvalidArgument(f"{field}: {text!r} is not a CPU list like 0-3,7") from None
        if first < 0 or last < first:
            raise InvalidArgument(f"{field}: bad CPU range {part.strip()!r}")
        cpus.update(range(first, last + 1))
    return cpus


def apply_cpu_affinity(affinity: dict[str, str], stage: str) -> None:
    """Apply execCPUAffinity's "initial" (before the cgroup join) or "final" (after) list."""
    text = affinity.get(stage)
    if not text:
        return
    field = f"process.execCPUAffinity.{stage}"
    try:
        os.sched_setaffinity(0, parse_cpus(text, field))
    except OSError as e:
        raise FailedPrecondition(f"{field}: {text}: {e.strerror}") from None


DOMAINS = {"LINUX": sched.PER_LINUX, "LINUX32": sched.PER_LINUX32}


def apply_personality(personality: dict[str, object]) -> None:
    """Set linux.personality's execution domain (the spec defines no flags yet)."""
    domain = personality.get("domain")
    if domain not in DOMAINS:
        raise InvalidArgument(f"linux.personality.domain: unknown domain {domain!r}")
    if personality.get("flags"):
        raise InvalidArgument("linux.personality.flags: no personality flags are supported")
    try:
        sched.set_personality(DOMAINS[str(domain)])
    except OSError as e:
        raise FailedPrecondition(f"linux.personality: {e}") from None
