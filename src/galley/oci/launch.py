"""The parent (P) side of `create` and `run`: start the init stage, serve it, report its pid.

P makes the exec fifo, forks the init stage (galley.oci.stage), makes the cgroup and sets its
limits while the stage makes namespaces, moves the container's process into it once the stage
reports its pid, answers the stage until it is ready (copying out the pty master the stage
opened from the container's /dev/ptmx, with --console-socket), then sends the pty master,
writes the pid file and reports the container's pid, start time, cgroup and namespaces (a
seccomp notify fd goes to its agent from galley.oci.stage, through
galley.oci.seccomp_notify). On failure it kills what it started and removes what it made. See
galley.oci.init for the whole conversation; `start` is one byte into the exec fifo
(galley.oci.state.signal_start).
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition
from galley.kernel import pathnames
from galley.oci import cgroupwarm, trampoline
from galley.oci.channel import Channel, StageError
from galley.oci.stage import (
    Rollback,
    Stage,
    needs_interpreter,
    request_interpreter,
    seen_by_tracers,
    send_quietly,
    serve,
)
from galley.oci.state import fifo_path, note_incomplete, seccomp_cache_dir

TYPE_CHECKING = False  # not `from typing`: every `galley-runc start` imports this module

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.cgroups import CgroupManager
    from galley.oci.resctrl import Group
    from galley.oci.spec import Process, Resources, Spec, State
    from galley.oci.spec import Status as StatusName

# How long P waits, after a cgroup step of its own failed, for the stage's next message (in
# seconds): the stage sends one ("idmap", "pid" or "error") once its namespaces are made,
# milliseconds after "boot" on a quiet machine.
STAGE_REPORTS_WITHIN = 2.0


class LaunchResult:
    """What `create` leaves running: the container process and where its pieces live.

    A read-only value with __slots__ rather than a frozen dataclass: importing dataclasses costs
    ~7 ms, and every `galley-runc start` imports this module.
    """

    __slots__ = ("cgroup", "namespaces", "pid", "start_time")

    def __init__(
        self,
        pid: int,
        start_time: int,
        cgroup: CgroupManager | None,
        namespaces: dict[str, str] | None = None,
    ) -> None:
        object.__setattr__(self, "pid", pid)
        object.__setattr__(self, "start_time", start_time)
        object.__setattr__(self, "cgroup", cgroup)
        object.__setattr__(self, "namespaces", dict(namespaces or {}))

    pid: int
    start_time: int
    cgroup: CgroupManager | None
    namespaces: dict[str, str]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"LaunchResult is read-only: cannot set {name}")

    def __repr__(self) -> str:
        return f"LaunchResult(pid={self.pid}, start_time={self.start_time})"


def fork_stage(preserve_fds: int, config: Any) -> Stage:
    """The create stage, forked as soon as config.json is read (before it is validated): it
    imports what it needs while P validates the config and makes the container's state
    directory. Where it can, it is forked into the container's new pid namespace
    (galley.oci.namespaces.pid_namespace_at_fork). systemd's LISTEN_FDS come before the
    --preserve-fds ones, as runc passes them."""
    from galley.oci.namespaces import pid_namespace_at_fork  # noqa: PLC0415

    pid_namespace = pid_namespace_at_fork(config)
    return Stage(preserve_fds + _listen_fds(), creates=True, pid_namespace=pid_namespace)


def create(
    container_id: str,
    bundle: str,
    spec: Spec,
    state_dir: str,
    stage: Stage,
    *,
    pid_file: str | None,
    console_socket: str | None,
    no_pivot: bool,
    foreground: bool,
    report: Callable[[str], None],
    keyring: str | None = None,
    on_ready: Callable[[LaunchResult], None] | None = None,
    warn: Callable[[str], None] | None = None,
    systemd_cgroup: bool = False,
    rootless_cgroup: bool = False,
) -> LaunchResult:
    """Start the container's init (in stage), stopped at the exec fifo until `start`;
    report: where poststop hooks that fail after a failed create say so (the command's
    log); keyring: the session keyring it joins (None: it keeps the caller's); on_ready:
    called with the result once the init is ready and its terminal handed over, while it
    execs the trampoline (an error there, or a failed execve, fails the create and undoes
    it); the pid file is written last. warn takes runc's warning about capability names
    this kernel does not know, given while the stage builds the rootfs. systemd_cgroup:
    linux.cgroupsPath as runc's systemd driver reads it (--systemd-cgroup); rootless_cgroup:
    a cgroup that may not be made is done without (galley.oci.cgroups.rootless)."""
    rollback = Rollback()
    rollback.add(stage.abandon)
    with rollback:  # galley-runc begins its error with "galley-runc create failed: ", as runc
        _boot(
            stage,
            container_id,
            bundle,
            spec,
            state_dir,
            rollback=rollback,
            console_socket=console_socket,
            no_pivot=no_pivot,
            foreground=foreground,
            keyring=keyring,
        )
        # The stage makes its namespaces meanwhile, and waits for "cgroup" only before its
        # first cgroup mount, hook, fork or exec (galley.oci.init): the cgroup is made and its
        # limits set now, so that once the stage reports the container's pid only the move is
        # left.
        cgroup = _cgroup_manager(spec, container_id, rollback, systemd=systemd_cgroup)
        rollback.add_final(lambda: _poststop_after_failure(container_id, bundle, spec, report))
        note_incomplete(state_dir, cgroup=cgroup.save())  # before there is anything to undo
        cgroup = _set_up(cgroup, spec, stage.channel, rootless=rootless_cgroup)
        rdt = _resctrl_group(spec, container_id, state_dir, cgroup, rollback)
        channel = stage.channel

        launched: list[LaunchResult] = []

        net_devices = spec.get("linux", {}).get("netDevices")
        releases: list[Callable[[], None]] = []

        def join_cgroup(pid: int) -> None:
            cgroup.join(pid)
            if rdt is not None:
                rdt.join(pid)
            cgroupwarm.stop()
            if net_devices:  # in its network namespace now; it runs nothing before "cgroup"
                from galley.oci.netdevices import move_in  # noqa: PLC0415

                releases.append(move_in(net_devices, pid, rollback))
            send_quietly(channel, "cgroup", unified="" in cgroup.paths)
            launched.append(_describe(pid, cgroup))  # while the stage builds the rootfs
            warn_capabilities(spec.get("process", {}), warn)

        state = hook_state(container_id, bundle, spec, "creating")
        masters: list[int] = []
        rollback.add(lambda: _close_all(masters))

        def record_clone(path: str, mount_id: int) -> None:
            from galley.oci import hostmounts  # noqa: PLC0415 - only without a mount namespace

            hostmounts.record(state_dir, path, mount_id)
            rollback.add_final(lambda: hostmounts.release(state_dir))  # once the stage is dead

        def ready() -> None:  # the init execs the trampoline meanwhile
            _hand_over_console(masters, console_socket)
            if on_ready is not None:
                on_ready(launched[0])

        try:
            serve(
                channel,
                spec,
                stage.pid,
                state,
                rollback,
                consoles=masters,
                after_pid=join_cgroup,
                on_clone=record_clone,
                on_ready=ready,
            )
        except StageError as err:
            raise StageError(_explain(err, cgroup, spec)) from None
        channel.close()
        if _oom_killer_disabled(spec):  # the init waits for start in its trampoline now
            cgroup.set({"memory": {"disableOOMKiller": True}})
        if pid_file:
            write_pid_file(pid_file, launched[0].pid)
        for release in releases:  # created: the moved interfaces stay where they are
            release()
        return launched[0]


def _resctrl_group(
    spec: Spec, container_id: str, state_dir: str, cgroup: CgroupManager, rollback: Rollback
) -> Group | None:
    """linux.intelRdt's group, made and noted for a delete of a killed create to remove
    (galley.oci.resctrl); None without intelRdt."""
    rdt = spec.get("linux", {}).get("intelRdt")
    if rdt is None:
        return None
    from galley.oci import resctrl  # noqa: PLC0415 - intelRdt only

    planned = resctrl.locate(rdt, container_id)
    note_incomplete(state_dir, cgroup=cgroup.save(), resctrl=planned.made_for_container())
    group = resctrl.set_up(rdt, container_id, planned.fs)
    rollback.add(group.remove)
    return group


def _boot(
    stage: Stage,
    container_id: str,
    bundle: str,
    spec: Spec,
    state_dir: str,
    *,
    rollback: Rollback,
    console_socket: str | None,
    no_pivot: bool,
    foreground: bool,
    keyring: str | None,
) -> None:
    """Send the stage what it builds the container from ("boot"), once the exec fifo is made
    (the stage imports meanwhile)."""
    terminal = check_console(spec.get("process", {}), console_socket)
    listen_fds = _listen_fds()
    if listen_fds:
        env = spec.setdefault("process", {}).setdefault("env", [])
        env += [f"LISTEN_FDS={listen_fds}", "LISTEN_PID=1"]
    if needs_interpreter(spec) or seen_by_tracers(spec, execs=False):
        request_interpreter(stage.channel)
    fifo = _prepare(state_dir, rollback, foreground)
    send_quietly(
        stage.channel,
        "boot",
        spec=spec,
        bundle=bundle,
        id=container_id,
        fifo=fifo,
        no_pivot=no_pivot,
        terminal=terminal,
        preserve_fds=stage.preserve_fds,
        seccomp_cache=seccomp_cache_dir(pathnames.dirname(state_dir)),
        trampoline=trampoline.supported(),
        pid_namespace=stage.pid_namespace,
        host_root=_host_root(spec, state_dir),
        keyring=keyring,
    )


def _set_up(
    cgroup: CgroupManager, spec: Spec, channel: Channel, *, rootless: bool
) -> CgroupManager:
    """The cgroup made and its first limits set (a rootless one that may not be made is done
    without). Where that fails and the stage reports an error meanwhile, the stage's error is
    the cause."""
    try:
        if rootless:
            return _rootless_cgroup(cgroup, spec)
        cgroup.create()
        cgroup.set(initial_resources(spec))
        return cgroup
    except Exception as err:
        reported = channel.next_error(timeout=STAGE_REPORTS_WITHIN)
        if reported is not None:
            raise StageError(reported) from err
        raise


def warn_capabilities(process: Process, warn: Callable[[str], None] | None) -> None:
    """runc's warning about the capability names process asks for that cannot be granted
    (the stage drops them), to warn; P gives it while the stage is busy (it imports the
    capability code, which P's own path does not need)."""
    if warn is not None and process.get("capabilities"):
        from galley.oci.capabilities import warn_unknown  # noqa: PLC0415

        warn_unknown(process["capabilities"], warn)


def _poststop_after_failure(
    container_id: str, bundle: str, spec: Spec, report: Callable[[str], None]
) -> None:
    """A create that failed once the container was being made (its cgroup on the way; a
    failing prestart, createRuntime or createContainer hook among the causes) goes on to
    the poststop hooks, as the runtime-spec says and runc does; they only warn. A rollback
    step, after the cgroup's removal."""
    hooks = spec.get("hooks", {}).get("poststop")
    if not hooks:
        return
    from galley.oci.hooks import run_hooks_warn  # noqa: PLC0415 - only with poststop hooks

    run_hooks_warn(hooks, hook_state(container_id, bundle, spec, "stopped"), report, cwd=bundle)


def hook_state(container_id: str, bundle: str, spec: Spec, status: StatusName) -> State:
    """The runtime-spec state hooks read on stdin (the pid is added once there is one)."""
    return {
        "ociVersion": spec.get("ociVersion", ""),
        "id": container_id,
        "status": status,
        "bundle": bundle,
        "annotations": spec.get("annotations", {}),
    }


def _explain(err: StageError, cgroup: CgroupManager, spec: Spec) -> str:
    """The stage's error, or what killed it: a memory limit too low to start the container
    ends the stage with SIGKILL, which it cannot report."""
    limit = (spec.get("linux", {}).get("resources") or {}).get("memory", {}).get("limit")
    if limit and limit > 0:
        from galley.oci.cgroups.stats import oom_kills  # noqa: PLC0415 - failures only

        if oom_kills(cgroup.paths):
            why = "too low to start the container: the kernel OOM-killed its init"
            return f"linux.resources.memory.limit {limit}: {why}"
    return str(err)


def _host_root(spec: Spec, state_dir: str) -> str | None:
    """Without a mount namespace: the directory the stage attaches the rootfs clone on."""
    from galley.oci import hostmounts  # noqa: PLC0415 - cheap, from the code cache

    if not hostmounts.inherits_mount_namespace(spec):
        return None
    return hostmounts.make_mount_point(state_dir)


def _prepare(state_dir: str, rollback: Rollback, foreground: bool) -> str:
    """The exec fifo; `run` in the foreground: subreaper (before "boot": the stage forks the
    container's init only after it)."""
    fifo = fifo_path(state_dir)
    posix.mkfifo(fifo, 0o622)
    rollback.add(lambda: posix.unlink(fifo))
    if foreground:
        from galley.kernel.proc import set_child_subreaper  # noqa: PLC0415

        set_child_subreaper()  # init is reparented to us when the stage exits
    return fifo


def _describe(pid: int, cgroup: CgroupManager) -> LaunchResult:
    """What state.json records of the container's process: its start time and namespaces."""
    from galley.oci.namespaces import paths  # noqa: PLC0415

    start_time = process_start_time(pid)
    return LaunchResult(pid=pid, start_time=start_time, cgroup=cgroup, namespaces=paths(pid))


def _hand_over_console(masters: list[int], console_socket: str | None) -> None:
    """At "ready", before state.json: the pty master to the console socket."""
    if masters and console_socket is not None:
        from galley.oci.console import send_master  # noqa: PLC0415

        send_master(console_socket, masters[0])
        _close_all(masters)


def _cgroup_manager(
    spec: Spec, container_id: str, rollback: Rollback, *, systemd: bool
) -> CgroupManager:
    """The container's cgroup, removed on failure (create() makes it)."""
    from galley.oci.cgroups import manager_for  # noqa: PLC0415

    manager = manager_for(spec, container_id, systemd=systemd)
    rollback.add_final(manager.destroy)
    return manager


def _rootless_cgroup(manager: CgroupManager, spec: Spec) -> CgroupManager:
    """The cgroup of a caller that is not root: what it may make of it, given its limits."""
    from galley.oci.cgroups import rootless  # noqa: PLC0415 - not root's path

    path_given = bool(spec.get("linux", {}).get("cgroupsPath"))
    manager = rootless.create(manager, path_given=path_given)
    rootless.set_resources(manager, initial_resources(spec))
    return manager


def initial_resources(spec: Spec) -> Resources:
    """What a new container's cgroup is given: linux.resources, with the device rules always
    (an absent `devices` is an empty list): the default allowlist and linux.devices then
    apply over "deny all", as runc's do. Left out, the cgroup would allow every device."""
    resources: Resources = dict(spec.get("linux", {}).get("resources") or {})  # type: ignore[assignment]
    resources.setdefault("devices", [])
    memory = resources.get("memory")
    if memory and memory.get("disableOOMKiller"):  # not while the stage runs: see below
        resources["memory"] = {**memory, "disableOOMKiller": False}
    return resources


def _oom_killer_disabled(spec: Spec) -> bool:
    """memory.disableOOMKiller, set once the stage has exec'd, not with the other limits: a
    stage over a memory limit too low for it would wait for memory for ever (what a cgroup
    without an OOM killer does), and create with it, where the OOM killer ends it and create
    says why (_explain). runc sets it after the init joins, when a limit below the init's
    usage fails to be written."""
    resources = spec.get("linux", {}).get("resources") or {}
    return bool((resources.get("memory") or {}).get("disableOOMKiller"))


def check_console(process: Process, console_socket: str | None) -> bool:
    """Whether the process gets a pty; refuses runc's refused combinations of the two."""
    if not process.get("terminal"):
        if console_socket:
            raise FailedPrecondition("use --console-socket only with process.terminal true")
        return False
    if not console_socket:
        raise FailedPrecondition(
            "cannot allocate tty if galley-runc will detach without setting console socket"
        )
    return True


def _listen_fds() -> int:
    """systemd socket activation: LISTEN_FDS passes through as runc does (they come first)."""
    count = pathnames.environ("LISTEN_FDS") or ""
    ours = pathnames.environ("LISTEN_PID") == str(posix.getpid())
    if not (ours and count.isascii() and count.isdigit()):  # "²" is a digit to isdigit()
        return 0
    return int(count)


def _close_all(fds: list[int]) -> None:
    while fds:
        posix.close(fds.pop())


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): tells a recycled pid apart."""
    stat = pathnames.read_bytes(f"/proc/{pid}/stat")
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def write_pid_file(path: str, pid: int) -> None:
    """Write the pid atomically (tmp + rename), as runc does. The temporary file is made
    anew (O_EXCL, O_NOFOLLOW): a symlink or hard link planted at its name is removed, never
    written through."""
    tmp = pathnames.join(pathnames.dirname(path) or ".", f".{pathnames.basename(path)}.tmp")
    flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
    try:
        fd = posix.open(tmp, flags, 0o644)
    except FileExistsError:  # left by a create killed here, or planted: never followed
        posix.unlink(tmp)
        fd = posix.open(tmp, flags, 0o644)
    with open(fd, "w", encoding="utf-8") as f:
        f.write(str(pid))
    posix.rename(tmp, path)
