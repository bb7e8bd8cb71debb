"""Stopping and removing a container: signal, wait for the init to go, destroy, poststop hooks.

    clear_incomplete(dir): what a create killed before state.json left (its creating.json)
    destroy(state):  the rootfs clone in the host's mount namespace (galley.oci.hostmounts)
                     → cgroup destroy (killing what is left in it) → poststop hooks (warn)
                     → remove the state directory

The init process is usually not our child (its creator exited), so "wait" means polling
/proc/<pid>/stat until the pid is gone, a zombie, or belongs to a newer process.
"""

from __future__ import annotations

import posix
import time

from galley.kernel import pathnames
from galley.oci.cgroups.record import remove_idle
from galley.oci.state import ContainerState, process_start_time, read_incomplete, remove
from galley.oci.status import Status

TYPE_CHECKING = False  # typing costs milliseconds per command; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.cgroups import CgroupManager

# The first wait between polls, doubled each time up to 0.1 s: a SIGKILLed init is gone
# within a millisecond or two (a first wait of 5 ms made every delete --force 5 ms longer).
WAIT_STEP = 0.0005
SIGKILL = 9  # the same on every Linux architecture; the signal module costs ~2 ms (enum)


def wait_gone(pid: int, start_time: int, timeout: float = 10.0) -> bool:
    """Poll until pid (with that start time) has exited; True if it did within timeout."""
    deadline = time.monotonic() + timeout
    step = WAIT_STEP
    while process_start_time(pid) == start_time:
        if time.monotonic() > deadline:
            return False
        _reap(pid)
        time.sleep(step)
        step = min(step * 2, 0.1)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect pid if it happens to be our child (run, or a subreaper)."""
    try:
        posix.waitpid(pid, posix.WNOHANG)
    except ChildProcessError:
        pass


def signal_init(state: ContainerState, sig: int) -> None:
    """Send sig to the container's init, if it is still the same process."""
    if state.alive():
        try:
            posix.kill(state.pid, sig)
        except ProcessLookupError:
            pass


def signal_all(state: ContainerState, sig: int) -> list[OSError]:
    """Send sig to every process in the container's cgroup (`kill --all`): the manager freezes
    the cgroup while it signals (or uses cgroup.kill), so no process forks away in between.
    A container without a cgroup (rootless) has its init and the init's descendants
    signalled. kill(2)'s refusals, one per process."""
    manager = state.cgroup_manager() if state.cgroup else None
    if manager is not None and manager.paths:
        return manager.kill(sig)
    from galley.oci.cgroups.manager import signal_each  # noqa: PLC0415 - with the managers

    return signal_each(state.processes(), sig)


def _manager(
    state: ContainerState, report: Callable[[str], None] | None = None
) -> CgroupManager | None:
    """The container's cgroup manager; None without a cgroup, or when state.json's record of
    it is damaged (said to report, if given): delete goes on without it, as runc's would
    with the zero values such a record reads as."""
    if not state.cgroup:
        return None
    from galley.oci.cgroups.factory import DamagedRecord  # noqa: PLC0415 - with the managers

    try:
        return state.cgroup_manager()
    except DamagedRecord as e:
        if report is not None:
            report(f"{e}: its cgroup directories are left where they are")
        return None


def kill_and_wait(state: ContainerState) -> None:
    """SIGKILL every process of the container's cgroup and wait for init. The manager thaws
    what is frozen so that the kill lands: the container paused, and (v1) sub-cgroups the
    container froze itself, whose processes would hold its init's exit for good. The init is
    signalled itself too, as runc signals it: one moved out of the cgroup behind our back
    would outlive the delete (which waited 10 s for it, then removed its state)."""
    manager = _manager(state)
    if manager is not None:
        manager.kill(SIGKILL)
    signal_init(state, SIGKILL)
    wait_gone(state.pid, state.start_time)


def destroy(
    state: ContainerState, report: Callable[[str], None], *, hooks_cwd: str | None = None
) -> None:
    """Remove a stopped container: its mounts in the host's namespace when it had no mount
    namespace of its own, cgroup (the manager kills what is left in it first: possible
    without a pid namespace), poststop hooks (in hooks_cwd, None: ours; their failures go
    to report), state directory."""
    from galley.oci import hostmounts  # noqa: PLC0415

    if hostmounts.inherits_mount_namespace(state.spec):
        hostmounts.release(state.dir)
    if state.cgroup and not remove_idle(state.cgroup):
        manager = _manager(state, report)
        if manager is not None:
            manager.destroy()
    rdt = state.spec.get("linux", {}).get("intelRdt")
    if rdt is not None:
        _remove_resctrl_group(rdt, state.id)
    hooks = state.spec.get("hooks", {}).get("poststop")
    if hooks:
        from galley.oci.hooks import run_hooks_warn  # noqa: PLC0415 - lazy: ~1.5 ms

        run_hooks_warn(hooks, state.oci_state(Status.STOPPED), report, cwd=hooks_cwd)
    remove(state.dir)


def _remove_resctrl_group(rdt: dict[str, Any], container_id: str) -> None:
    """The container's own resctrl group (galley.oci.resctrl), where resctrl is still
    mounted: an unmount took every group with it."""
    from galley.oci import resctrl  # noqa: PLC0415 - intelRdt only

    fs = resctrl.find()
    if fs is not None:
        resctrl.locate(rdt, container_id, fs).remove()


def clear_incomplete(state_dir: str) -> None:
    """What a create killed before it wrote state.json left: its cgroup, killing what runs
    there (the stage, or the container's init waiting for start), its rootfs clone in the
    host's mount namespace (galley.oci.hostmounts), and the state directory."""
    made = read_incomplete(state_dir)
    if made.get("cgroup"):
        from galley.oci import cgroups  # noqa: PLC0415

        cgroups.load(made["cgroup"]).destroy()
    if isinstance(made.get("resctrl"), list):
        from galley.oci.resctrl import remove_noted  # noqa: PLC0415 - intelRdt only

        remove_noted(made["resctrl"], pathnames.basename(state_dir))
    from galley.oci import hostmounts  # noqa: PLC0415

    hostmounts.release(state_dir)
    remove(state_dir)
