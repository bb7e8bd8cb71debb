"""process.scheduler, process.ioPriority, process.execCPUAffinity, linux.personality
(runtime-spec 1.1-1.2) and linux.memoryPolicy (1.3).

The init stage applies them just before the security steps (runc 1.2 order: scheduler and I/O
priority on the container process; execCPUAffinity "initial" before the process joins the
container's cgroup and "final" after). Bad values fail with an error naming the field.
"""

from __future__ import annotations

import errno
import posix

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import sched
from galley.oci.validate_fields import MAX_CPUS, MAX_NODES, number_list

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
        hint = ""
        if e.errno == errno.EPERM and policy in (sched.SCHED_FIFO, sched.SCHED_RR):
            # RT group scheduling (a v1 cpu hierarchy; v2's cpu controller): a new cgroup
            # has no realtime runtime until it is given some
            hint = " (a realtime policy needs a realtime budget in the container's cpu cgroup:"
            hint += " linux.resources.cpu.realtimeRuntime)"
        raise FailedPrecondition(f"{_FIELD}: {os_error_text(e)}{hint}") from None


def apply_io_priority(io_priority: dict[str, object]) -> None:
    """Set the calling process's I/O scheduling class and level."""
    name = io_priority.get("class")
    if name not in IO_CLASSES:
        raise InvalidArgument(f"process.ioPriority.class: unknown I/O priority class {name!r}")
    level = _int(io_priority.get("priority", 0), "process.ioPriority.priority", 0, 7)
    try:
        sched.ioprio_set(IO_CLASSES[str(name)], level)
    except OSError as e:
        raise FailedPrecondition(f"process.ioPriority: {os_error_text(e)}") from None


def parse_cpus(text: str, field: str) -> set[int]:
    """A cpuset list ("0-3,7") as a set of CPU numbers."""
    return number_list(field, text, MAX_CPUS, "CPU")


def apply_cpu_affinity(affinity: dict[str, str], stage: str) -> None:
    """Apply execCPUAffinity's "initial" (before the cgroup join) or "final" (after) list."""
    text = affinity.get(stage)
    if not text:
        return
    field = f"process.execCPUAffinity.{stage}"
    try:
        posix.sched_setaffinity(0, parse_cpus(text, field))
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
        raise FailedPrecondition(f"linux.personality: {os_error_text(e)}") from None


MEMORY_POLICY_MODES = {
    "MPOL_DEFAULT": sched.MPOL_DEFAULT,
    "MPOL_PREFERRED": sched.MPOL_PREFERRED,
    "MPOL_BIND": sched.MPOL_BIND,
    "MPOL_INTERLEAVE": sched.MPOL_INTERLEAVE,
    "MPOL_LOCAL": sched.MPOL_LOCAL,
    "MPOL_PREFERRED_MANY": sched.MPOL_PREFERRED_MANY,
    "MPOL_WEIGHTED_INTERLEAVE": sched.MPOL_WEIGHTED_INTERLEAVE,
}
MEMORY_POLICY_FLAGS = {
    "MPOL_F_NUMA_BALANCING": sched.MPOL_F_NUMA_BALANCING,
    "MPOL_F_RELATIVE_NODES": sched.MPOL_F_RELATIVE_NODES,
    "MPOL_F_STATIC_NODES": sched.MPOL_F_STATIC_NODES,
}
_NO_NODES = frozenset({"MPOL_DEFAULT", "MPOL_LOCAL"})  # the kernel refuses a nodemask with these
_SOME_NODES = frozenset(
    {"MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY"}
)
_MPOL = "linux.memoryPolicy"


def memory_policy_args(policy: dict[str, object]) -> tuple[int, set[int]]:
    """(mode | flags, nodes) of set_mempolicy(2) for linux.memoryPolicy, checked as far as the
    kernel's rules do not depend on the host (runc's messages: "invalid memory policy ...")."""
    name = policy.get("mode")
    if not isinstance(name, str) or name not in MEMORY_POLICY_MODES:
        what = "missing" if name is None else f'"{name}"' if isinstance(name, str) else repr(name)
        raise InvalidArgument(f"{_MPOL}.mode: invalid memory policy mode: {what}")
    mode = MEMORY_POLICY_MODES[str(name)]
    flags = policy.get("flags") or []
    if not isinstance(flags, list):
        raise InvalidArgument(f"{_MPOL}.flags: must be an array of memory policy flags")
    for i, flag in enumerate(flags):
        if not isinstance(flag, str) or flag not in MEMORY_POLICY_FLAGS:
            raise InvalidArgument(f'{_MPOL}.flags[{i}]: invalid memory policy flag "{flag}"')
        mode |= MEMORY_POLICY_FLAGS[flag]
    if {"MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"} <= set(flags):
        raise InvalidArgument(
            f"{_MPOL}.flags: MPOL_F_RELATIVE_NODES and MPOL_F_STATIC_NODES exclude each other"
        )
    text = policy.get("nodes")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InvalidArgument(f'{_MPOL}.nodes: must be a string such as "0-3,7"')
    field = f"{_MPOL}.nodes"
    nodes = number_list(field, text, MAX_NODES, "memory policy node") if text.strip() else set()
    if name in _NO_NODES and nodes:
        raise InvalidArgument(f"{field}: {name} mode requires 0 nodes but got {len(nodes)}")
    if name in _SOME_NODES and not nodes:
        raise InvalidArgument(f"{field}: {name} mode requires at least one node")
    placed = sorted({"MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"} & set(flags))
    if placed and not nodes and name in ("MPOL_LOCAL", "MPOL_PREFERRED"):  # the kernel's EINVAL
        raise InvalidArgument(f"{_MPOL}.flags: {placed[0]} needs nodes, which {name} has none of")
    return mode, nodes


def apply_memory_policy(policy: dict[str, object]) -> None:
    """Set the calling thread's NUMA memory policy, which its children and execve keep."""
    mode, nodes = memory_policy_args(policy)
    try:
        sched.set_mempolicy(mode, nodes)
    except OSError as e:
        hint = ""
        if e.errno == errno.EINVAL:
            hint = " (nodes must be online and in the container's cpuset.mems;"
            hint += " not every mode takes every flag)"
        raise FailedPrecondition(f"{_MPOL}: {e.strerror}{hint}") from None
