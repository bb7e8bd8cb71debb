"""P's side of an init stage (create and exec): fork it, answer it, undo it.

C is forked from P and is the stage itself (galley.oci.init): no second interpreter start-up.
It never execs container code while it is the host's interpreter file (CVE-2019-5736): it
execs the sealed trampoline (galley.oci.trampoline), which execs the process. A stage that
must exec from inside the container (createContainer/startContainer hooks), that processes
with CAP_SYS_PTRACE could see (seen_by_tracers), or that runs where there is no trampoline
re-executes the interpreter from a detached read-only bind mount first, so its
/proc/<pid>/exe is a read-only file. StageServer answers the stage's messages (id maps, pid,
hooks, console, ready) as galley.oci.init draws them; Rollback undoes what a failed create or
exec started.
"""

from __future__ import annotations

import posix
import sys

from galley.kernel import pathnames
from galley.oci.channel import Channel, StageError, describe

TYPE_CHECKING = False  # not `from typing`: it costs milliseconds per command

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.spec import Process, Spec, State

SRC = pathnames.dirname(pathnames.dirname(pathnames.dirname(pathnames.abspath(__file__))))
# What a re-executed stage runs (argv: read fd, write fd): galley.oci.init.main.
BOOTSTRAP = "import sys;sys.path[:0]=[{src!r}];from galley.oci.init import main;main()"


class Rollback:
    """Undo steps run newest first when create or exec fails (no contextlib: it costs ~4 ms).

    As a context manager, around the start of a process: an error on the way out runs the
    steps, and a StageError (the stage's own report) becomes runc's "unable to start
    container process: ..." (FailedPrecondition); galley-runc prefixes the command's words."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], object]] = []

    def add(self, step: Callable[[], object]) -> None:
        self.steps.append(step)

    def add_final(self, step: Callable[[], object]) -> None:
        """A step that runs after all others (a cgroup goes once its processes are dead)."""
        self.steps.insert(0, step)

    def run(self) -> None:
        while self.steps:
            try:
                self.steps.pop()()
            except Exception:  # best effort: the first error is the one reported
                pass

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, _kind: object, error: BaseException | None, _trace: object) -> None:
        if error is None:
            return
        self.run()
        if isinstance(error, StageError):
            from galley.errors import FailedPrecondition  # noqa: PLC0415

            raise FailedPrecondition(f"unable to start container process: {error}") from None


class Stage:
    """A stage forked first thing, before the command's other work: C imports what it needs
    (a create stage: the rootfs code too) while P goes on."""

    __slots__ = ("channel", "pid", "pid_namespace", "preserve_fds")

    def __init__(self, preserve_fds: int, *, creates: bool, pid_namespace: bool = False) -> None:
        """pid_namespace: fork it into a new pid namespace, whose pid 1 it is (False when the
        kernel refuses: the stage then makes the namespace and forks, as without)."""
        _check_preserved(preserve_fds)
        self.preserve_fds = preserve_fds
        keep = list(range(3, 3 + preserve_fds))
        self.channel, self.pid, self.pid_namespace = spawn_stage(
            keep, creates=creates, pid_namespace=pid_namespace
        )

    def abandon(self) -> None:
        """Stop the stage when the command fails before it is used (or after: idempotent).
        Killed before its pipe closes: on that EOF it would write its own error to the
        caller's stderr, a second line after ours."""
        try:  # still our child, exited or not? Once reaped, its pid may be someone else's.
            posix.waitid(posix.P_PID, self.pid, posix.WEXITED | posix.WNOHANG | posix.WNOWAIT)
        except ChildProcessError:
            pass
        else:
            kill_started(self.pid)
        self.channel.close()


def _check_preserved(count: int) -> None:
    """--preserve-fds: no more fds than this process may have open (a huge count would build
    a list of that many numbers), and each of them passed by the caller, as runc checks (in
    its words). An fd there that is close-on-exec is one of ours (the code cache's, opened
    where the caller left a gap): what a caller passes through exec cannot be."""
    if count:
        from galley.errors import InvalidArgument  # noqa: PLC0415
        from galley.kernel.proc import RLIMIT_NOFILE, prlimit  # noqa: PLC0415

        most = prlimit(0, RLIMIT_NOFILE)[0]
        if 3 + count > most:
            raise InvalidArgument(
                f"--preserve-fds {count}: more fds than a process may have here ({most})"
            )
        for fd in range(3, 3 + count):
            try:
                passed = posix.get_inheritable(fd)
            except OSError:
                passed = False
            if not passed:
                raise InvalidArgument(
                    f"unable to stat preserved-fd {fd - 3} (of {count}): "
                    f"stat /proc/self/fd/{fd}: no such file or directory"
                )


def needs_interpreter(spec: Spec) -> bool:
    """Whether a create stage must become a read-only re-executed interpreter (P asks it with
    request_interpreter) rather than stay a fork of P.

    A forked stage runs the host's interpreter file until it execs the trampoline
    (galley.oci.trampoline), so it may exec nothing else from inside the container:
    createContainer and startContainer hooks run there. A process with an SELinux label is
    exec'd without the trampoline (galley.oci.lsm): the stage itself waits for `start`.
    """
    hooks = spec.get("hooks", {})
    labelled = bool(spec.get("process", {}).get("selinuxLabel"))
    return bool(hooks.get("createContainer") or hooks.get("startContainer") or labelled)


def seen_by_tracers(spec: Spec, *, execs: bool) -> bool:
    """Whether container processes that may hold CAP_SYS_PTRACE over the host's user namespace
    share the stage's pid namespace: they could open /proc/<stage>/exe, the host's interpreter,
    while the forked stage sets up (it is non-dumpable, which stops everyone else). Such a
    stage re-executes the interpreter from a read-only mount, as runc's init is a sealed copy.

    exec joins the container's processes: a risk when its bounding set holds CAP_SYS_PTRACE. A
    create that joins a pid namespace by path meets processes whose capabilities we do not know.
    A user namespace of the container's own makes their CAP_SYS_PTRACE worthless here.
    """
    linux = spec.get("linux", {})
    kinds = {ns.get("type"): ns.get("path") for ns in linux.get("namespaces", [])}
    if "user" in kinds:
        return False
    if execs:
        bounding = spec.get("process", {}).get("capabilities", {}).get("bounding", [])
        return "CAP_SYS_PTRACE" in bounding
    return bool(kinds.get("pid"))


def tracers_in(state_dir: str, spec: Spec) -> bool:
    """Whether an exec into this container meets processes that may hold CAP_SYS_PTRACE: its
    config's (seen_by_tracers), or those an earlier exec gave it (note_tracer)."""
    from galley.oci.state import TRACERS_FILE  # noqa: PLC0415

    if seen_by_tracers(spec, execs=True):
        return True
    return pathnames.exists(pathnames.join(state_dir, TRACERS_FILE))


def brings_tracer(spec: Spec, process: Process) -> bool:
    """Whether an exec's process may hold CAP_SYS_PTRACE over our user namespace (exec --cap,
    --process) where the container's config gives none: it stays a tracer in the container's
    pid namespace, for every later exec stage to meet (note_tracer)."""
    bounding = (process.get("capabilities") or {}).get("bounding") or []
    if "CAP_SYS_PTRACE" not in bounding or seen_by_tracers(spec, execs=True):
        return False
    return seen_by_tracers({**spec, "process": process}, execs=True)  # no user namespace


def note_tracer(state_dir: str) -> None:
    """Record, before its process may run, that an exec brought a tracer (tracers_in)."""
    from galley.oci.state import TRACERS_FILE  # noqa: PLC0415

    fd = posix.open(
        pathnames.join(state_dir, TRACERS_FILE),
        posix.O_WRONLY | posix.O_CREAT | posix.O_CLOEXEC | posix.O_NOFOLLOW,
        0o600,
    )
    posix.close(fd)


def request_interpreter(channel: Channel) -> None:
    """Make a forked stage re-execute the interpreter from a read-only mount before "boot"
    (a stage that is that interpreter already ignores it)."""
    send_quietly(channel, "reexec")


def spawn_stage(
    keep: list[int], *, creates: bool = False, pid_namespace: bool = False
) -> tuple[Channel, int, bool]:
    """Fork C, the init stage; (channel, C's pid, whether C is in a new pid namespace). C is
    the stage itself (no second interpreter start-up) and imports what a create (or an exec)
    stage needs at once; it re-executes a read-only interpreter when asked
    (request_interpreter), or at once on machines without a trampoline, which must exec the
    process directly."""
    from galley.oci import trampoline  # noqa: PLC0415

    floor = max(keep, default=2) + 1
    to_stage, from_p = _pipe_above(floor)[::-1]
    from_stage, to_p = _pipe_above(floor)
    p_fds, c_fds = _fd_sockets(floor) if posix.geteuid() != 0 else (-1, -1)
    forked = trampoline.supported()
    if forked:  # the stage's code, imported by P before the fork (docs/history.md, session 9)
        from galley.oci.init import run_stage  # noqa: PLC0415
    pid, pid_namespace = _fork(pid_namespace)
    if pid == 0:  # C
        try:
            for fd in (to_stage, from_stage, p_fds):
                if fd >= 0:
                    posix.close(fd)
            if forked:
                channel = Channel(from_p, to_p, c_fds)
                run_stage(channel, creates=creates, reexec=lambda: _reexec(from_p, to_p, c_fds))
            _reexec(from_p, to_p, c_fds)
        except BaseException as err:  # C must never return into P's code
            try:
                Channel(-1, to_p).send("error", message=describe(err))
            finally:
                posix._exit(1)
    for fd in (from_p, to_p, c_fds):
        if fd >= 0:
            posix.close(fd)
    return Channel(from_stage, to_stage, p_fds), pid, pid_namespace


def _fd_sockets(floor: int) -> tuple[int, int]:
    """The socket pair a P that is not root takes the stage's fds over (galley.oci.channel),
    close-on-exec, both ends >= floor (as _pipe_above's)."""
    from galley.kernel import unixsock  # noqa: PLC0415

    p_end, c_end = unixsock.pair()
    return _above(p_end.detach(), floor), _above(c_end.detach(), floor)


def _fork(pid_namespace: bool) -> tuple[int, bool]:
    """posix.fork(), into a new pid namespace if asked and the kernel agrees; (pid, whether it
    did). unshare(CLONE_NEWPID) changes where this thread's children go, not this process:
    setns puts ours back at once, so that hooks and everything else P forks stay here. Signals
    wait meanwhile: a handler that raised between the fork and the setns would leave P's
    children going to the new namespace (and a stage that create's rollback never saw)."""
    if not pid_namespace:
        return posix.fork(), False
    import _signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` costs ~4 ms

    from galley.kernel import ns  # noqa: PLC0415

    own = posix.open("/proc/self/ns/pid", posix.O_RDONLY | posix.O_CLOEXEC)
    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        try:
            # The way back first, a no-op: it is refused where our pid namespace belongs to
            # a user namespace above ours (galley-runc as root of a rootless user namespace).
            ns.setns(own, ns.CLONE_NEWPID, "/proc/self/ns/pid")
            ns.unshare(ns.CLONE_NEWPID)
        except OSError:  # that, a nesting limit, a seccomp filter: the stage forks as without
            return posix.fork(), False
        try:
            pid = posix.fork()
        except BaseException:
            ns.setns(own, ns.CLONE_NEWPID, "/proc/self/ns/pid")
            raise
        if pid:
            ns.setns(own, ns.CLONE_NEWPID, "/proc/self/ns/pid")
        return pid, True
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)
        posix.close(own)


def _reexec(from_p: int, to_p: int, fds: int) -> None:
    """In C: become the stage in a read-only re-executed interpreter, on the same pipes (and
    fd socket, -1: none; the starter makes every fd past the preserved ones close-on-exec
    before the container's process runs).

    The preserved fds are inheritable already (they came through our own execve); an fd P
    opened there itself (a free number: a lock, a log) is close-on-exec.
    """
    for fd in (from_p, to_p, fds):
        if fd >= 0:
            posix.set_inheritable(fd, True)
    exec_readonly_interpreter([str(from_p), str(to_p), str(fds)])


def _pipe_above(floor: int) -> tuple[int, int]:
    """A close-on-exec pipe whose fds are >= floor: a pipe on a free fd number inside the
    preserved range (--preserve-fds, LISTEN_FDS) would otherwise reach the container."""
    read_end, write_end = posix.pipe2(posix.O_CLOEXEC)
    return _above(read_end, floor), _above(write_end, floor)


def _above(fd: int, floor: int) -> int:
    """fd, or a close-on-exec copy of it >= floor (fd closed) where it is below."""
    if fd >= floor:
        return fd
    import fcntl  # noqa: PLC0415

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    posix.close(fd)
    return moved


def send_quietly(channel: Channel, kind: str, **fields: object) -> None:
    """Send to the stage; if it already died, its error message is waiting in the pipe."""
    try:
        channel.send(kind, **fields)
    except BrokenPipeError:
        pass


def exec_readonly_interpreter(args: list[str]) -> None:
    """In C: execute the interpreter from a read-only mount, so its /proc/<pid>/exe is read-only.

    open_tree(OPEN_TREE_CLONE) makes a detached bind mount of the interpreter file, which
    mount_setattr makes read-only; fexecve runs it. Being detached, the mount propagates
    nowhere and C keeps the host's mount namespace (and its peer groups, for rshared roots).
    Kernels without the new mount API (< 5.12) get the old way: a private mount namespace,
    / rslave, and a read-only bind of the interpreter onto itself. A caller that is not root
    (rootless) may mount neither way, and needs neither: the interpreter is not its to write,
    and a container it runs has no more rights on the host than it has.
    """
    from galley.kernel import mount as m  # noqa: PLC0415

    exe = pathnames.realpath(sys.executable)
    argv = [exe, "-IS", "-c", BOOTSTRAP.format(src=SRC), *args]
    if posix.geteuid() != 0:
        posix.execve(exe, argv, {})
    try:
        tree = m.open_tree(m.AT_FDCWD, exe, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC)
        m.mount_setattr(tree, "", m.AT_EMPTY_PATH, attr_set=m.MOUNT_ATTR_RDONLY)
    except OSError:
        _bind_interpreter_read_only(exe)
        posix.execve(exe, argv, {})
    posix.execve(tree, argv, {})


def _bind_interpreter_read_only(exe: str) -> None:
    from galley.kernel import mount as m  # noqa: PLC0415
    from galley.kernel import ns  # noqa: PLC0415

    ns.unshare(ns.CLONE_NEWNS)
    m.mount(None, "/", None, m.MS_REC | m.MS_SLAVE)
    m.mount(exe, exe, None, m.MS_BIND)
    locked = posix.statvfs(exe).f_flag & (m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC)
    m.mount(None, exe, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | locked)


def serve(
    channel: Channel,
    spec: Spec,
    stage_pid: int,
    state: State,
    rollback: Rollback,
    *,
    consoles: list[int] | None = None,
    prepare_console: Callable[[int], None] | None = None,
    after_pid: Callable[[int], None] | None = None,
    on_clone: Callable[[str, int], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Answer the init stage until it is ready (and, when it execs next, until its execve has
    succeeded); the container's pid (exec: the pty masters the stage reports are copied into
    consoles, and prepare_console(master) runs on each before the stage goes on). on_clone(
    path, mount id) records a rootfs clone before the stage attaches it (create without a
    mount namespace). after_pid(pid) runs once the stage goes on with the container's pid
    (create: P moves it into its cgroup meanwhile). on_ready() runs once it is ready, while
    its execve (a millisecond or two) is under way (create: P writes state.json meanwhile);
    an execve that then fails fails serve all the same."""
    server = StageServer(channel, spec, stage_pid, state, rollback, consoles=consoles)
    server.prepare_console = prepare_console
    server.after_pid = after_pid
    server.on_clone = on_clone
    while True:
        msg = channel.recv()
        handler = getattr(server, f"on_{msg['type']}", None)
        if handler is None:
            raise StageError(f"init protocol: unexpected message {msg['type']!r}")
        try:
            done = handler(msg)
        except Exception as err:  # the stage goes on after "pid": it may have failed meanwhile
            reported = channel.next_error(timeout=0)
            if reported is not None:
                raise StageError(reported) from err
            raise
        if done:
            break
    if on_ready is not None:
        on_ready()
    if msg.get("execs"):
        _wait_for_execve(channel)
    return server.pid


def _wait_for_execve(channel: Channel) -> None:
    """The pipe closes when execve succeeds (close-on-exec); an error arrives when it fails."""
    try:
        msg = channel.recv()
    except StageError:
        return
    raise StageError(msg.get("message", f"init protocol: unexpected {msg['type']!r}"))


class StageServer:
    """P's answers, one method per message the stage sends; True ends the conversation."""

    def __init__(
        self,
        channel: Channel,
        spec: Spec,
        stage_pid: int,
        state: State,
        rollback: Rollback,
        *,
        consoles: list[int] | None,
    ) -> None:
        self.channel = channel
        self.spec = spec
        self.stage_pid = stage_pid
        self.state = state
        self.rollback = rollback
        self.consoles = consoles
        self.prepare_console: Callable[[int], None] | None = None
        self.pid = 0
        self.after_pid: Callable[[int], None] | None = None
        self.on_clone: Callable[[str, int], None] | None = None

    def on_error(self, msg: dict[str, Any]) -> bool:
        raise StageError(msg["message"])

    def on_idmap(self, _msg: dict[str, Any]) -> bool:
        from galley.oci.usermaps import write_id_maps  # noqa: PLC0415

        linux = self.spec.get("linux", {})
        write_id_maps(self.stage_pid, linux.get("uidMappings", []), linux.get("gidMappings", []))
        self.channel.send("ok")
        return False

    def on_pid(self, msg: dict[str, Any]) -> bool:
        self.pid = pid = msg["pid"] or self.stage_pid  # None: the stage is the container's pid 1
        if pid != self.stage_pid:
            self.rollback.add(_killer(pid))
        self.state["pid"] = pid
        if posix.geteuid() == 0:  # else the stage writes its own (galley.oci.init)
            _write_oom_score_adj(pid, self.spec.get("process", {}).get("oomScoreAdj"))
        send_quietly(self.channel, "ok", pid=pid)  # read later: the stage may have failed
        if self.after_pid is not None:
            self.after_pid(pid)
        if pid != self.stage_pid:
            posix.waitpid(self.stage_pid, 0)  # the stage forked the container's pid 1 and exits
        return False

    def on_rootfs(self, msg: dict[str, Any]) -> bool:
        """A container without a mount namespace: its rootfs clone, to record before the
        stage attaches it in our mount namespace (galley.oci.hostmounts)."""
        if self.on_clone is None:
            raise StageError("init protocol: a rootfs clone from an exec stage")
        self.on_clone(str(msg["path"]), int(msg["mount_id"]))
        self.channel.send("ok")
        return False

    def on_hooks(self, _msg: dict[str, Any]) -> bool:
        """prestart and createRuntime, in the runtime's namespaces, before pivot_root."""
        from galley.errors import FailedPrecondition  # noqa: PLC0415
        from galley.oci.hooks import run_create_hooks  # noqa: PLC0415

        hooks = self.spec.get("hooks", {})
        try:
            bundle = self.state["bundle"]
            run_create_hooks(hooks.get("prestart", []), self.state, cwd=bundle)
            run_create_hooks(hooks.get("createRuntime", []), self.state, cwd=bundle)
        except FailedPrecondition as e:  # "unable to start container process: ...", as runc
            raise StageError(str(e)) from None
        self.channel.send("ok")
        return False

    def on_console(self, msg: dict[str, Any]) -> bool:
        """exec: the stage's pty master, by number; copied out with pidfd_getfd."""
        if self.consoles is None:
            raise StageError("init protocol: a console from a create stage")
        self.consoles.append(self.channel.take(self.pid, msg["fd"]))
        if self.prepare_console is not None:
            self.prepare_console(self.consoles[-1])
        self.channel.send("ok")
        return False

    def on_seccomp(self, msg: dict[str, Any]) -> bool:
        """A listener the process loaded before its last steps: to the agent now."""
        _forward_seccomp_listener(self.spec, self.channel.take(self.pid, msg["fd"]), self.state)
        self.channel.send("ok")
        return False

    def on_ready(self, msg: dict[str, Any]) -> bool:
        if msg.get("seccomp_fd") is not None:
            fd = self.channel.take(self.pid, msg["seccomp_fd"])
            _forward_seccomp_listener(self.spec, fd, self.state)
            if msg.get("execs"):
                self.channel.send("ok")  # copied: the stage may close it by exec now
        return True


def _forward_seccomp_listener(spec: Spec, fd: int, state: State) -> None:
    """Send our copy of the init's seccomp notify fd to the agent at listenerPath (and close
    it)."""
    from galley.oci.seccomp import SeccompFilter  # noqa: PLC0415
    from galley.oci.seccomp_notify import forward_listener  # noqa: PLC0415

    seccomp = spec.get("linux", {}).get("seccomp", {})
    listener = SeccompFilter(
        None, True, seccomp.get("listenerPath"), seccomp.get("listenerMetadata", "")
    )
    forward_listener(listener, fd, dict(state))


def _write_oom_score_adj(pid: int, score: int | None) -> None:
    if score is None:
        return
    path = f"/proc/{pid}/oom_score_adj"
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(str(score))
    except OSError as err:
        raise StageError(f"process.oomScoreAdj {score}: {err.strerror}") from None


def _killer(pid: int) -> Callable[[], None]:
    return lambda: kill_started(pid)


def kill_started(pid: int) -> None:
    """SIGKILL a process we started and reap it if it is our child."""
    try:
        posix.kill(pid, 9)
    except ProcessLookupError:
        return
    try:
        posix.waitpid(pid, 0)
    except ChildProcessError:
        pass
