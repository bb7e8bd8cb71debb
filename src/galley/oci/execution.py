"""`exec`: run another process inside a running container's namespaces and cgroup.

The same path as create (galley.oci.stage.spawn_stage): P forks the stage C and moves it into
the container's cgroup while C joins every namespace of the container's init through
/proc/<pid>/ns/* (user first); once in the cgroup, C forks when the pid namespace needs it,
and the process applies its rlimits, user, capabilities and seccomp, checks cwd, and execs
through galley.oci.trampoline (no_new_privs and the late filter). P reads the pipe until it
closes on a successful execve (or an error arrives), then waits for the process unless
detached.
"""

from __future__ import annotations

import posix

from galley.oci import cgroupwarm, trampoline
from galley.oci.hostmounts import inherits_mount_namespace
from galley.oci.launch import check_console, warn_capabilities, write_pid_file
from galley.oci.stage import (
    Rollback,
    Stage,
    brings_tracer,
    note_tracer,
    request_interpreter,
    send_quietly,
    serve,
    tracers_in,
)
from galley.oci.state import EXECS_LOCK_FILE, Lock, seccomp_cache_dir

TYPE_CHECKING = False  # not `from typing`: it costs milliseconds per command

if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.resctrl import Group
    from galley.oci.spec import Process, Spec, State
    from galley.oci.state import ContainerState


def exec_process(
    state: ContainerState,
    process: Process,
    stage: Stage,
    *,
    console_socket: str | None,
    pid_file: str | None,
    detach: bool,
    sub_cgroups: dict[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
    prepare_console: Callable[[int], None] | None = None,
) -> int:
    """Run process in the container (through stage); its exit status, or 0 when detached.
    sub_cgroups (exec --cgroup) puts it in sub-cgroups of the container's; warn takes runc's
    warning about capability names this kernel does not know; prepare_console(master) sets
    up the pty before the process runs (the CLI's own relay: galley.oci.commands.terminal).

    The pty master goes to the console socket before the process runs, as runc sends it: a
    caller that sizes the pty once it has the master (conmon, for `podman exec -t`) does so
    before the process can look."""

    def hand_over(master: int) -> None:
        from galley.oci.console import READER_SETTLES, send_master  # noqa: PLC0415

        if prepare_console is not None:
            prepare_console(master)
        settle = 0.0 if prepare_console is not None else READER_SETTLES  # our relay needs none
        send_master(console_socket or "", master, settle=settle)

    rollback = Rollback()
    rollback.add(stage.abandon)
    masters: list[int] = []
    forwarder = None if detach else Forwarder()  # from before the process runs
    if forwarder is not None:
        rollback.add(forwarder.restore)
    with rollback:  # galley-runc begins its error with "exec failed: ", as runc does
        check_console(process, console_socket)
        pid = _start(
            state,
            process,
            stage,
            rollback,
            masters,
            foreground=not detach,
            sub=sub_cgroups,
            warn=warn,
            prepare_console=hand_over,
        )
        if pid_file:  # a pid file that cannot be written kills the process, as runc's
            write_pid_file(pid_file, pid)
    try:
        _close_all(masters)
        if forwarder is None:
            return 0
        forwarder.to(pid)
        return wait_for(pid)
    finally:
        if forwarder is not None:
            forwarder.restore()


def _start(
    state: ContainerState,
    process: Process,
    stage: Stage,
    rollback: Rollback,
    masters: list[int],
    *,
    foreground: bool,
    sub: dict[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
    prepare_console: Callable[[int], None] | None = None,
) -> int:
    """Serve the stage until its execve, moving the process it reports into the cgroup (or
    its sub-cgroups); the new pid."""
    channel, stage_pid, preserve_fds = stage.channel, stage.pid, stage.preserve_fds
    # An SELinux label execs the process without the trampoline (galley.oci.lsm): from a
    # forked stage that would be the host's interpreter file a `#!/proc/self/exe` could reach.
    labelled = bool(process.get("selinuxLabel"))
    # Every exec holds execs.lock shared until its stage has exec'd (it may be seen in the
    # container until then); one that brings a tracer holds it exclusively, so that it waits
    # for the stages in flight, records the tracer before its process runs, and every stage
    # after it reads the record.
    brings = brings_tracer(state.spec, process)
    with Lock(state.dir, name=EXECS_LOCK_FILE, shared=not brings):
        if brings:
            note_tracer(state.dir)
        if tracers_in(state.dir, state.spec) or labelled:
            request_interpreter(channel)
        if foreground:  # before "exec": the stage forks the process in a pid namespace
            from galley.kernel.proc import set_child_subreaper  # noqa: PLC0415

            set_child_subreaper()  # the process is our grandchild when a pid namespace forks
        spec = joining_spec(state.spec, state.pid)
        spec["process"] = process
        send_quietly(
            channel,
            "exec",
            spec=spec,
            process=process,
            init=(state.pid, state.start_time),
            chroot=inherits_mount_namespace(spec),
            preserve_fds=preserve_fds,
            seccomp_cache=seccomp_cache_dir(state.root),
            trampoline=trampoline.supported(),
            keyring=state.keyring or None,
        )
        warn_capabilities(process, warn)  # while the stage joins

        # The stage joins the namespaces meanwhile (and forks, for a pid namespace) and reports
        # the process's pid; P moves that process into the cgroup, as runc does: a move is not
        # bound by pids.max, so an exec works in a container at its pids limit (a fork inside the
        # cgroup would fail there). The process runs nothing before "cgroup". The manager's code
        # is loaded now, while P would only wait for the pid (~1.5 ms off an exec's path).
        manager = state.cgroup_manager() if state.cgroup else None
        group = _resctrl_group(state)

        def join(pid: int) -> None:
            if manager is not None:
                manager.join(pid, sub)
            if group is not None:
                group.join(pid)
            cgroupwarm.stop()  # no other migration comes (none at all without a cgroup)
            send_quietly(channel, "cgroup")

        oci_state: State = {"id": state.id, "status": "running", "bundle": state.bundle}
        rollback.add(lambda: _close_all(masters))
        pid = serve(
            channel,
            spec,
            stage_pid,
            oci_state,
            rollback,
            consoles=masters,
            prepare_console=prepare_console,
            after_pid=join,
        )
        channel.close()
        return pid


def _resctrl_group(state: ContainerState) -> Group | None:
    """The container's resctrl group, which an exec'd process joins as the init did."""
    rdt = state.spec.get("linux", {}).get("intelRdt")
    if rdt is None:
        return None
    from galley.oci.resctrl import locate  # noqa: PLC0415 - intelRdt only

    return locate(rdt, state.id)


def joining_spec(config: Spec, init_pid: int) -> Spec:
    """The container's config with every namespace replaced by a path into its init's."""
    from galley.kernel.ns import NAMESPACES  # noqa: PLC0415 - after the stage is forked

    spec: Spec = dict(config)  # type: ignore[assignment]
    linux = dict(config.get("linux", {}))
    linux["namespaces"] = [
        {"type": n["type"], "path": f"/proc/{init_pid}/ns/{NAMESPACES[n['type']][1]}"}
        for n in config.get("linux", {}).get("namespaces", [])
    ]
    spec["linux"] = linux  # type: ignore[typeddict-item]
    return spec


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        posix.close(fd)


class Forwarder:
    """Our signals, forwarded to the exec'd process: installed before it runs, so a signal the
    moment it starts reaches it (signals before its pid is known wait for to())."""

    def __init__(self) -> None:
        import _signal as signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` costs ~4 ms

        from galley.oci.forwarding import forwarded_signals  # noqa: PLC0415

        self.pid = 0
        self.pending: list[int] = []
        self.previous = {
            sig: signal.signal(sig, lambda n, _frame: self._on(n)) for sig in forwarded_signals()
        }

    def _on(self, sig: int) -> None:
        if self.pid:
            _forward(self.pid, sig)
        else:
            self.pending.append(sig)

    def to(self, pid: int) -> None:
        """From now on signals go to pid; those that came before go now."""
        self.pid = pid
        while self.pending:
            _forward(pid, self.pending.pop(0))

    def restore(self) -> None:
        """Put the previous handlers back (once)."""
        import _signal as signal  # noqa: PLC0415

        while self.previous:
            sig, handler = self.previous.popitem()
            signal.signal(sig, handler)


def wait_for(pid: int) -> int:
    """Wait for pid (reaping other orphans); its exit as a shell reports."""
    from galley.oci.cli import collect_garbage  # noqa: PLC0415

    collect_garbage()  # this may wait for days
    while True:
        try:
            done, status = posix.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if done == pid:
            code = posix.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def _forward(pid: int, sig: int) -> None:
    try:
        posix.kill(pid, sig)
    except ProcessLookupError:
        pass
