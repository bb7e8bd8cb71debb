"""create, start, run, delete and kill: the container lifecycle as runc's commands drive it.

create: load + validate config.json → reserve <root>/<id> → launch.create → state.json
        (any failure removes the state directory; launch removes what it made)
start:  status must be created → state.signal_start (writes the exec fifo) → poststart hooks
        (the first that fails stops and destroys the container, poststop hooks included,
        and fails start: runtime-spec 1.2's lifecycle step 9, as runc)
run:    create + start; in the foreground wait for init, forward signals, relay its pty
        (process.terminal without --console-socket), return its status (128+signal when
        killed) and delete the container
delete: stopped → destroy; created → kill, then destroy (runc 1.1; containerd's shim relies
        on it); running/paused → only with --force (kill, then destroy)
kill:   signal init (or, with --all, every process of the cgroup)
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, InvalidArgument, NotFound, reason_text
from galley.kernel import pathnames
from galley.oci.commands.args import (
    check_bundle,
    check_console_socket,
    container_id,
    is_signal,
    parse_signal,
    preserved_fds,
)
from galley.oci.commands.options import INT, STR, Args, Option, Syntax
from galley.oci.commands.teardown import (
    SIGKILL,
    clear_incomplete,
    destroy,
    kill_and_wait,
    signal_all,
    signal_init,
    wait_gone,
)
from galley.oci.jsonfast import load_file
from galley.oci.state import (
    INCOMPLETE_FILE,
    ContainerGone,
    ContainerState,
    Lock,
    Locked,
    container_dir,
    is_incomplete,
    now_rfc3339,
    process_start_time,
    remove,
    reserve,
    signal_start,
)
from galley.oci.status import Operation, Status, require

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.cli import Context
    from galley.oci.commands.notify import NotifySocket
    from galley.oci.launch import LaunchResult
    from galley.oci.spec import Spec


_CREATE = [
    Option("-b,--bundle", "path to the bundle directory", STR, "."),
    Option("--console-socket", "unix socket to receive the pty master", STR),
    Option("--pid-file", "file to write the container's init pid to", STR),
    Option("--no-pivot", "use MS_MOVE + chroot instead of pivot_root"),
    Option("--no-new-keyring", "keep the caller's session keyring (not a new one)"),
    Option("--preserve-fds", "extra fds to pass, from 3 on", INT, 0),
]
SYNTAX = {
    "create": Syntax(_CREATE, ("container_id",)),
    "run": Syntax(
        [
            *_CREATE,
            Option("-d,--detach", "detach from the container"),
            Option("--keep", "keep the container after it exits"),
            Option("--no-subreaper", "(accepted, unused)"),
        ],
        ("container_id",),
    ),
    "start": Syntax([], ("container_id",)),
    "delete": Syntax([Option("-f,--force", "kill it first if it runs")], ("container_id",)),
    "kill": Syntax(
        [Option("-a,--all", "signal every process")], ("container_id", "signal"), required=1
    ),
}


def syntax(command: str) -> Syntax:
    """The options and arguments of one lifecycle command."""
    return SYNTAX[command]


def read_config(bundle: str) -> Any:
    """<bundle>/config.json's JSON, not validated yet (create forks its stage from it first:
    galley.oci.launch.fork_stage)."""
    path = pathnames.join(bundle, "config.json")
    try:
        return load_file(path, "config.json")
    except (FileNotFoundError, NotADirectoryError):
        check_bundle(bundle)
        raise NotFound("JSON specification file config.json not found") from None
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def rootfs_path(bundle: str, spec: Spec) -> str:
    """root.path made absolute against the bundle, as runc records it for `state`: an
    absolute one as it is given, a relative one joined and cleaned. It must be a directory."""
    given = spec["root"]["path"]
    path = pathnames.join(bundle, given)
    if not pathnames.isdir(path):
        raise InvalidArgument(f'root.path: rootfs "{path}" does not exist or is not a directory')
    return given if given.startswith("/") else pathnames.normpath(path)


class Stopped(BaseException):
    """A signal asked create to stop: it undoes what it made, then dies of that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def create(
    ctx: Context, args: Args, cid: str, *, foreground: bool, config: Any = None
) -> ContainerState:
    """Create the container: everything or nothing, even when SIGTERM, SIGINT or SIGHUP comes
    midway (the first one is remembered and the others ignored while create cleans up; then
    galley-runc dies of it, as it would have at once). config: config.json's JSON, if the
    caller has read it (read_config) already."""
    import _signal as signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` costs ~4 ms

    stopping = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def stop(signum: int, _frame: object) -> None:
        for s in stopping:  # a handler, not SIG_IGN: hooks run meanwhile must not inherit it
            signal.signal(s, _ignore)
        raise Stopped(signum)

    previous = {s: signal.signal(s, stop) for s in stopping}
    try:
        return _create(ctx, args, cid, foreground=foreground, config=config)
    except Stopped as stopped:
        signal.signal(stopped.signum, signal.SIG_DFL)
        posix.kill(posix.getpid(), stopped.signum)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _ignore(_signum: int, _frame: object) -> None:
    """A signal that comes while create undoes its work after the first one."""


def _create(ctx: Context, args: Args, cid: str, *, foreground: bool, config: Any) -> ContainerState:
    from galley.oci import launch  # noqa: PLC0415 - lazy: the heavy part of galley-runc

    keyring = None if args.no_new_keyring else f"_ses.{cid}"  # runc's name
    if config is None:
        args.bundle = pathnames.resolved_directory(args.bundle)
        config = read_config(args.bundle)
    bundle = args.bundle  # resolved once, with the config read from it (run below)
    stage = launch.fork_stage(preserved_fds(args), config)  # it imports while we validate
    try:
        from galley.oci.validate import validate  # noqa: PLC0415 - lazy: only create/run validate

        spec = validate(config)
        rootless_cgroup = ctx.rootless_cgroup  # a bad --rootless fails here, as a bad config
        rootfs = rootfs_path(bundle, spec)
        state_dir = reserve(ctx.root, cid)
    except BaseException:
        stage.abandon()
        raise
    recorded: list[ContainerState] = []

    def record(result: LaunchResult) -> None:  # while the init execs the trampoline
        recorded.append(
            _record(
                ctx.root,
                cid,
                bundle=bundle,
                rootfs=rootfs,
                spec=spec,
                result=result,
                keyring=keyring,
            )
        )

    try:  # nothing between the state directory's mkdir and here that a signal could stop
        with Lock(state_dir):
            if pathnames.environ("NOTIFY_SOCKET"):
                from galley.oci.commands import notify  # noqa: PLC0415

                notify.add_to_spec(spec, state_dir)
            result = launch.create(
                cid,
                bundle,
                spec,
                state_dir,
                stage,
                pid_file=args.pid_file and pathnames.abspath(args.pid_file),
                console_socket=args.console_socket,
                no_pivot=args.no_pivot,
                foreground=foreground,
                report=ctx.log.error,
                keyring=keyring,
                on_ready=record,
                warn=ctx.log.warning,
                systemd_cgroup=ctx.systemd_cgroup,
                rootless_cgroup=rootless_cgroup,
            )
            try:  # a signal may come at any point from here on, too
                state = recorded[0]
                posix.unlink(pathnames.join(state_dir, INCOMPLETE_FILE))
            except BaseException:
                _abandon(result)
                raise
    except BaseException:
        _undo_create(state_dir)
        raise
    ctx.log.debug(f"created container_id={cid} pid={state.pid}")
    return state


def _undo_create(state_dir: str) -> None:
    """After a failed create: its rootfs clone if one is left, then its state directory.
    Best effort: the create's own error is the one to report (what cannot go stays for a
    delete --force)."""
    from galley.errors import GalleyError  # noqa: PLC0415
    from galley.oci import hostmounts  # noqa: PLC0415

    try:
        hostmounts.release(state_dir)
        remove(state_dir)
    except (OSError, GalleyError):
        pass


def _record(
    root: str,
    cid: str,
    *,
    bundle: str,
    rootfs: str,
    spec: Spec,
    result: LaunchResult,
    keyring: str | None,
) -> ContainerState:
    """Write state.json for a launched container."""
    state = ContainerState(
        root=root,
        id=cid,
        bundle=bundle,
        rootfs=rootfs,
        pid=result.pid,
        start_time=result.start_time,
        created=now_rfc3339(),
        annotations=dict(spec.get("annotations") or {}),
        config=dict(spec),
        cgroup=result.cgroup.save() if result.cgroup is not None else {},
        namespaces=dict(result.namespaces),
        keyring=keyring or "",
    )
    state.save()
    return state


def _abandon(result: LaunchResult) -> None:
    """Undo a launch whose state.json was not completed (it failed, or a signal came): its
    init, if still the same process, and its cgroup with whatever is left in it. Without
    this, the state directory would go and the container live on, beyond delete's reach."""
    from galley.oci.stage import kill_started  # noqa: PLC0415

    if process_start_time(result.pid) == result.start_time:
        kill_started(result.pid)
    if result.cgroup is not None:
        result.cgroup.destroy()


def start(ctx: Context, state: ContainerState) -> None:
    """Let a created container run its process, then run the poststart hooks. A failing one
    stops the container and destroys it before start fails: the runtime-spec's lifecycle
    (step 9, since 1.2; it once said "warn") and runc, which kills and removes it too."""
    with Locked(state) as current:  # a frozen one is "paused", and refused as runc refuses it
        require(Operation.START, current.status(), current.id)
        signal_start(current.dir)
    hooks = current.spec.get("hooks", {}).get("poststart")
    if hooks:
        from galley.oci.hooks import run_hooks  # noqa: PLC0415 - lazy: ~1.5 ms

        try:
            run_hooks(hooks, current.oci_state(Status.RUNNING), cwd=current.bundle)
        except FailedPrecondition:
            delete_loaded(current, force=True, report=ctx.log.error, in_bundle=True, own=True)
            raise


def _exit_code(status: int) -> int:
    code = posix.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reap(state: ContainerState, *, block: bool) -> int | None:
    """Collect exited children (we are a subreaper); init's exit code once it has exited."""
    while True:
        try:
            pid, status = posix.waitpid(-1, 0 if block else posix.WNOHANG)
        except ChildProcessError:  # init is not ours to wait for: poll it
            if block:
                wait_gone(state.pid, state.start_time, timeout=float("inf"))
            return None if state.alive() else 0
        if pid == state.pid:
            return _exit_code(status)
        if pid == 0:
            return None


def forward_signals(state: ContainerState) -> Callable[[], None]:
    """Forward our signals to the container's init from now on; what puts the old handlers
    back. A foreground `run` calls it before `start`: a signal the moment the process runs
    must reach it, not end us."""
    import _signal as signal  # noqa: PLC0415 - `signal` costs ~4 ms

    from galley.oci.forwarding import forwarded_signals  # noqa: PLC0415

    forwarded = forwarded_signals()
    previous = {s: signal.signal(s, lambda n, _f: signal_init(state, n)) for s in forwarded}

    def restore() -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    return restore


def wait_foreground(state: ContainerState, master: int | None = None) -> int:
    """Wait for init (relaying its terminal, if any); its exit status."""
    from galley.oci.cli import collect_garbage  # noqa: PLC0415

    collect_garbage()  # this may wait for days
    if master is not None:
        from galley.oci.commands.terminal import relay  # noqa: PLC0415

        return relay(master, lambda: reap(state, block=False))
    while (code := reap(state, block=True)) is None:
        pass
    return code


def delete(ctx: Context, cid: str, *, force: bool) -> None:
    """Delete a container. Without --force only a stopped or created one, as runc 1.1: a created
    container is killed first (tools written for runc, containerd's shim among them, rely on it;
    the runtime-spec would have an error here)."""
    try:
        state = ContainerState.load(ctx.root, cid)
    except NotFound:
        if not force:
            raise
        # A create killed midway leaves a directory without state.json; one still running
        # holds the directory's lock. Any other directory is no container of ours.
        state_dir = container_dir(ctx.root, cid)
        if not pathnames.lexists(state_dir):
            return
        if not is_incomplete(state_dir):
            raise
        try:
            with Lock(state_dir, wait=False):
                try:
                    state = ContainerState.load(ctx.root, cid)
                except NotFound:
                    clear_incomplete(state_dir)
                    return
        except ContainerGone:  # no such directory (any more)
            return
        except BlockingIOError:
            raise FailedPrecondition(
                f"container {cid!r} is busy: another command holds its lock"
                " (a create still running?)"
            ) from None
    delete_loaded(state, force=force, report=ctx.log.error)


def delete_loaded(
    state: ContainerState,
    *,
    force: bool,
    report: Callable[[str], None],
    in_bundle: bool = False,
    own: bool = False,
) -> None:
    """delete, for a container whose state is at hand; report takes what poststop hooks
    say (the command's log); they run in the bundle for run and start (in_bundle), as
    runc's do there, else in our directory, as runc's delete runs them. own: the caller
    made or started this container (run, start's failed hook), and since then another
    command may have deleted it, even made another under its id: then nothing is left to
    do, and the other container is not ours to touch."""
    from galley.oci import hostmounts  # noqa: PLC0415 - destroy() imports it anyway

    try:
        with Locked(state) as current:
            if own and not current.same_container(state):
                return
            status = current.status()
            if hostmounts.inherits_mount_namespace(current.spec):
                hostmounts.check(current.dir)  # not deletable from here: say so before any kill
            if status is not Status.STOPPED:
                if not force:
                    require(Operation.DELETE, status, current.id)
                kill_and_wait(current)
            destroy(current, report, hooks_cwd=current.bundle if in_bundle else None)
    except ContainerGone:  # deleted by another command since we read its state
        if not (own or force):
            raise


def kill(ctx: Context, cid: str, signal_name: str, *, all_processes: bool) -> int:
    """Signal the container's init, or all its processes; the signal's number. As runc, a
    container that does not exist is reported before a signal that does not."""
    state = ContainerState.load(ctx.root, cid)
    sig = parse_signal(signal_name)
    if all_processes:  # runc warns of each process kill(2) refused, and thaws all the same
        for refusal in signal_all(state, sig):
            ctx.log.warning(reason_text(refusal))
        return sig
    status = state.status(check_frozen=sig == SIGKILL)
    require(Operation.KILL, status, cid)  # paused may be killed too
    if not is_signal(sig):
        raise InvalidArgument("unable to signal init: invalid argument")  # runc's, from kill(2)
    signal_init(state, sig)
    if status is Status.PAUSED:
        if process_start_time(state.pid, zombie=True) != state.start_time:
            # a frozen cgroup reads as paused though v2 let a fatal signal end its init; once
            # that is reaped, runc's kill(2) of it fails
            raise FailedPrecondition("unable to signal init: os: process already finished")
        if sig == SIGKILL:  # v1's freezer holds the dying init
            state.cgroup_manager().thaw()  # as runc thaws it, for SIGKILL alone
    return sig


def run(command: str, ctx: Context, args: Args) -> int:
    """Run one lifecycle command."""
    config = None
    if command in {"create", "run"}:  # runc reads the spec before it looks at the id
        args.bundle = pathnames.resolved_directory(args.bundle)  # once: a link may change
        config = read_config(args.bundle)
    cid = container_id(command, args)
    if command == "create":
        create(ctx, args, cid, foreground=False, config=config)
    elif command == "start":
        state = ContainerState.load(ctx.root, cid)
        notifier = _notifier(state)
        start(ctx, state)
        if notifier is not None:  # after the poststart hooks, as runc
            notifier.relay(state.alive, state.pid)
        ctx.log.debug(f"started container_id={cid}")
    elif command == "run":
        code = run_container(ctx, args, cid, config)
        ctx.log.debug(f"ran container_id={cid} exit_status={code}")
        return code
    elif command == "delete":
        delete(ctx, cid, force=args.force)
        ctx.log.debug(f"deleted container_id={cid} force={args.force}")
    elif command == "kill":
        sig = kill(ctx, cid, args.signal or "SIGTERM", all_processes=args.all)
        ctx.log.debug(f"signalled container_id={cid} signal={sig} all={args.all}")
    return 0


def run_container(ctx: Context, args: Args, cid: str, config: Any) -> int:
    """`run` of config.json's JSON (read_config): create and start; in the foreground, wait
    (relaying a terminal) and clean up."""
    check_console_socket(args.console_socket, detach=args.detach)
    receiver = None
    if not args.detach and _wants_terminal(config):
        from galley.oci.commands.terminal import ConsoleReceiver  # noqa: PLC0415

        receiver = ConsoleReceiver()
        args.console_socket = receiver.path
    try:
        state = create(ctx, args, cid, foreground=not args.detach, config=config)
        master = None
        if receiver is not None:
            from galley.oci.commands.terminal import prepare_master  # noqa: PLC0415

            master = receiver.receive()
            prepare_master(master)  # before start
    finally:
        if receiver is not None:
            receiver.close()
    restore = _nothing if args.detach else forward_signals(state)
    try:
        notifier = _notifier(state)
        start(ctx, state)
    except BaseException:
        restore()
        if master is not None:
            posix.close(master)
        delete(ctx, cid, force=True)
        raise
    if args.detach:
        if notifier is not None:
            notifier.relay(state.alive, state.pid)
        return 0
    if notifier is not None:  # galley-runc is the process the service manager watches
        notifier.relay_in_background(state.alive, posix.getpid())
    try:
        code = wait_foreground(state, master)
    finally:
        restore()
        if not args.keep:  # as runc, quietly when another command deleted it meanwhile
            delete_loaded(state, force=True, report=ctx.log.error, in_bundle=True, own=True)
    return code


def _nothing() -> None:
    pass


def _notifier(state: ContainerState) -> NotifySocket | None:
    """With NOTIFY_SOCKET set, the socket the container's "READY=1" will come to (bound
    before it starts, so that none is lost)."""
    host = pathnames.environ("NOTIFY_SOCKET")
    if not host:
        return None
    from galley.oci.commands.notify import NotifySocket  # noqa: PLC0415

    return NotifySocket(state.dir, host)


def _wants_terminal(config: Any) -> bool:
    """process.terminal in config.json, not validated yet (a malformed config is create's to
    report)."""
    process = config.get("process") if isinstance(config, dict) else None
    return isinstance(process, dict) and bool(process.get("terminal"))
