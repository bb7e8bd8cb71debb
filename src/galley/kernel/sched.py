"""Scheduling and execution attributes of a process: sched_setattr(2) (every policy, flags,
deadline parameters), ioprio_set(2) and set_mempolicy(2), which glibc does not wrap, and
personality(2)."""

from __future__ import annotations

from galley.kernel import ffi
from galley.kernel.libc import MACHINE, check, function

SCHED_OTHER = 0
SCHED_FIFO = 1
SCHED_RR = 2
SCHED_BATCH = 3
SCHED_ISO = 4
SCHED_IDLE = 5
SCHED_DEADLINE = 6

SCHED_FLAG_RESET_ON_FORK = 0x01
SCHED_FLAG_RECLAIM = 0x02
SCHED_FLAG_DL_OVERRUN = 0x04
SCHED_FLAG_KEEP_POLICY = 0x08
SCHED_FLAG_KEEP_PARAMS = 0x10
SCHED_FLAG_UTIL_CLAMP_MIN = 0x20
SCHED_FLAG_UTIL_CLAMP_MAX = 0x40

IOPRIO_CLASS_RT = 1
IOPRIO_CLASS_BE = 2
IOPRIO_CLASS_IDLE = 3
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13

MPOL_DEFAULT = 0
MPOL_PREFERRED = 1
MPOL_BIND = 2
MPOL_INTERLEAVE = 3
MPOL_LOCAL = 4
MPOL_PREFERRED_MANY = 5
MPOL_WEIGHTED_INTERLEAVE = 6
MPOL_F_NUMA_BALANCING = 1 << 13
MPOL_F_RELATIVE_NODES = 1 << 14
MPOL_F_STATIC_NODES = 1 << 15

# (sched_setattr, ioprio_set, ioprio_get, set_mempolicy) by machine.
_NR = {
    "x86_64": (314, 251, 252, 238),
    "aarch64": (274, 30, 31, 237),
    "riscv64": (274, 30, 31, 237),
    "ppc64le": (355, 273, 274, 261),
    "s390x": (345, 282, 283, 270),
}


class SchedAttr(ffi.Structure):
    """struct sched_attr (SCHED_ATTR_SIZE_VER1, with utilisation clamps)."""

    _fields_ = (
        ("size", ffi.c_uint32),
        ("sched_policy", ffi.c_uint32),
        ("sched_flags", ffi.c_uint64),
        ("sched_nice", ffi.c_int32),
        ("sched_priority", ffi.c_uint32),
        ("sched_runtime", ffi.c_uint64),
        ("sched_deadline", ffi.c_uint64),
        ("sched_period", ffi.c_uint64),
        ("sched_util_min", ffi.c_uint32),
        ("sched_util_max", ffi.c_uint32),
    )


def _numbers() -> tuple[int, int, int, int]:
    if MACHINE not in _NR:
        raise OSError(38, f"sched_setattr/ioprio_set/set_mempolicy: unsupported machine {MACHINE}")
    return _NR[MACHINE]


def sched_setattr(
    policy: int,
    *,
    flags: int = 0,
    nice: int = 0,
    priority: int = 0,
    runtime: int = 0,
    deadline: int = 0,
    period: int = 0,
) -> None:
    """sched_setattr(2) on the calling thread."""
    attr = SchedAttr(ffi.sizeof(SchedAttr), policy, flags, nice, priority, runtime, deadline)
    attr.sched_period = period
    syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, ffi.c_void_p, ffi.c_uint)
    what = f"sched_setattr policy={policy} flags={flags:#x} nice={nice} priority={priority}"
    check(syscall(_numbers()[0], 0, ffi.byref(attr), 0), what)


def ioprio_set(io_class: int, level: int) -> None:
    """ioprio_set(2) for the calling process."""
    syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, ffi.c_int, ffi.c_int)
    value = io_class << IOPRIO_CLASS_SHIFT | level
    what = f"ioprio_set class={io_class} level={level}"
    check(syscall(_numbers()[1], IOPRIO_WHO_PROCESS, 0, value), what)


def ioprio_get() -> tuple[int, int]:
    """(class, level) of the calling process's I/O priority."""
    syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, ffi.c_int)
    value = check(syscall(_numbers()[2], IOPRIO_WHO_PROCESS, 0), "ioprio_get")
    return value >> IOPRIO_CLASS_SHIFT, value & ((1 << IOPRIO_CLASS_SHIFT) - 1)


def set_mempolicy(mode: int, nodes: set[int]) -> None:
    """set_mempolicy(2) on the calling thread: mode with its flags, over the nodes' mask."""
    words = max(nodes, default=-1) // 64 + 1
    mask = (ffi.c_ulong * max(words, 1))()
    for node in nodes:
        mask[node // 64] |= 1 << (node % 64)
    syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, ffi.c_void_p, ffi.c_ulong)
    maxnode = words * 64 + 1 if nodes else 0  # the kernel reads maxnode - 1 bits
    what = f"set_mempolicy mode={mode:#x} nodes={sorted(nodes)}"
    check(syscall(_numbers()[3], mode, mask if nodes else None, maxnode), what)


PER_LINUX = 0x0000
PER_LINUX32 = 0x0008
_QUERY_PERSONALITY = 0xFFFFFFFF


def set_personality(persona: int) -> None:
    """personality(2): the execution domain (PER_LINUX32 makes `uname -m` say i686)."""
    fn = function("personality", ffi.c_int, ffi.c_ulong)
    check(fn(persona), f"personality {persona:#x}")


def get_personality() -> int:
    """The calling process's current personality."""
    fn = function("personality", ffi.c_int, ffi.c_ulong)
    return check(fn(_QUERY_PERSONALITY), "personality query")
