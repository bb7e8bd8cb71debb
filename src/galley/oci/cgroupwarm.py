"""Start the kernel's wait for a cgroup migration early, in a thread, while create goes on.

Writing a pid to cgroup.procs takes the cgroup threadgroup rwsem for writing, and the first
writer waits for an RCU grace period (rcu_sync_enter; 10-20 ms on the machines we measured),
while writers that follow within about one grace period of the last one do not. runc pays that
wait on its critical path; galley-runc starts it before it imports anything else: a thread
writes the runtime's own pid into the cgroup it is already in (a no-op migration), and by the
time P moves the container's process the rwsem is usually ready. The wait is long (a grace
period took 15-20 ms on this 2-core VM while galley-runc kept both cores busy) and bounds
`exec`: every millisecond it starts earlier is one off exec. So bin/galley-runc starts it
first thing for create, run and exec, from a guess at the command (moves_a_process): a wrong
guess costs a no-op migration.

Best effort: any failure (an unusual mount layout, a read-only cgroupfs) just leaves the later
write to wait as before. Only `_thread` and os: this runs before anything else is imported.
The thread imports nothing and takes no lock another thread could need: create and exec fork
their stage while it may still be in its write, and the child has only the forking thread.
"""

from __future__ import annotations

import _thread
import os

ROOT = "/sys/fs/cgroup"


def own_procs_file() -> str | None:
    """cgroup.procs of the cgroup this process is in, on one mounted hierarchy."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:  # the unified hierarchy
            candidates = [f"{ROOT}{path}", f"{ROOT}/unified{path}"]
        else:
            name = controllers.removeprefix("name=")
            candidates = [f"{ROOT}/{name}{path}"]
        for directory in candidates:
            procs = os.path.join(directory, "cgroup.procs")
            if os.path.exists(procs):
                return procs
    return None


# runc's global options that take a value (the command is the first other word)
_GLOBAL_VALUES = frozenset({"--root", "--log", "--log-format", "--criu", "--rootless"})


def moves_a_process(argv: list[str]) -> bool:
    """Whether the command line is (very likely) a create, run or exec."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        name, eq, _ = argv[i].partition("=")
        i += 2 if name in _GLOBAL_VALUES and not eq else 1
    return i < len(argv) and argv[i] in {"create", "run", "exec"}


def _migrate_to_same_cgroup() -> None:
    try:
        procs = own_procs_file()
        if procs is None:
            return
        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def start() -> None:
    """Begin the wait in a daemon thread (it ends with its write; nothing waits for it)."""
    _thread.start_new_thread(_migrate_to_same_cgroup, ())
