"""The parent (P) side of `create` and `run`: start the init stage, serve it, report its pid.

P forks C. C never runs container code from a writable host interpreter (CVE-2019-5736): it
re-executes the interpreter from a detached read-only bind mount as the init stage
(galley.oci.init), so /proc/<pid>/exe of every later stage is a read-only file. P moves C into
the cgroup, then answers the stage's requests (id maps, pid, hooks) until it says "ready" or
fails; on failure P kills what it started and removes what it made. See galley.oci.init for
the whole conversation.
"""

from __future__ import annotations

import os
import sys

from galley.errors import FailedPrecondition
from galley.oci.init import BOOTSTRAP, FIFO_NAME, Channel, StageError, describe

TYPE_CHECKING = False  # not `from typing`: every `galley-runc start` imports this module

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.cgroups import CgroupManager
    from galley.oci.spec import Process, Spec, State

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


class Rollback:
    """Undo steps run newest first when create fails (no contextlib: it costs ~4 ms)."""

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


def create(
    container_id: str,
    bundle: str,
    spec: Spec,
    state_dir: str,
    *,
    pid_file: str | None,
    console_socket: str | None,
    no_pivot: bool,
    preserve_fds: int,
    foreground: bool,
) -> LaunchResult:
    """Start the container's init, stopped at the exec fifo until `start`."""
    rollback = Rollback()
    try:
        return _create(
            container_id,
            bundle,
            spec,
            state_dir,
            rollback,
            pid_file=pid_file,
            console_socket=console_socket,
            no_pivot=no_pivot,
            preserve_fds=preserve_fds,
            foreground=foreground,
        )
    except StageError as err:
        rollback.run()
        raise FailedPrecondition(
            f"container {container_id!r}: unable to start container process: {err}"
        ) from None
    except BaseException:
        rollback.run()
        raise


def _create(
    container_id: str,
    bundle: str,
    spec: Spec,
    state_dir: str,
    rollback: Rollback,
    *,
    pid_file: str | None,
    console_socket: str | None,
    no_pivot: bool,
    preserve_fds: int,
    foreground: bool,
) -> LaunchResult:
    from galley.kernel.proc import preload_libc  # noqa: PLC0415

    preload_libc()
    fifo = os.path.join(state_dir, FIFO_NAME)
    os.mkfifo(fifo, 0o622)
    rollback.add(lambda: os.unlink(fifo))
    preserve_fds += _listen_fds(spec)
    master, slave = open_console(spec, console_socket, foreground)
    if foreground:
        from galley.kernel.proc import set_child_subreaper  # noqa: PLC0415

        set_child_subreaper()
    keep = list(range(3, 3 + preserve_fds)) + ([slave] if slave is not None else [])
    channel, stage_pid = spawn_stage(keep)
    rollback.add(lambda: kill_started(stage_pid))
    rollback.add(channel.close)
    # The stage imports and compiles while P builds the cgroup; it waits for "cgroup" before
    # it creates namespaces or forks, so everything it starts is inside the cgroup.
    send_quietly(
        channel,
        "boot",
        spec=spec,
        bundle=bundle,
        id=container_id,
        fifo=fifo,
        no_pivot=no_pivot,
        console=slave,
        preserve_fds=preserve_fds,
    )
    cgroup = _cgroup(spec, container_id, stage_pid, rollback)
    send_quietly(channel, "cgroup")
    if slave is not None:
        os.close(slave)
    state: State = {
        "ociVersion": spec.get("ociVersion", ""),
        "id": container_id,
        "status": "creating",
        "bundle": bundle,
        "annotations": spec.get("annotations", {}),
    }
    pid = serve(channel, spec, stage_pid, state, rollback)
    channel.close()
    rollback.steps.remove(channel.close)
    if master is not None and console_socket is not None:
        from galley.oci.console import send_master  # noqa: PLC0415

        send_master(console_socket, master)
        os.close(master)
    start_time = process_start_time(pid)
    if pid_file:
        write_pid_file(pid_file, pid)
    from galley.oci.namespaces import paths  # noqa: PLC0415

    return LaunchResult(pid=pid, start_time=start_time, cgroup=cgroup, namespaces=paths(pid))


def spawn_stage(keep: list[int], argv_extra: tuple[str, ...] = ()) -> tuple[Channel, int]:
    """Fork C, which re-executes a read-only interpreter as the init stage; (channel, C's pid)."""
    to_stage, from_p = os.pipe2(os.O_CLOEXEC)[::-1]
    from_stage, to_p = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # C
        try:
            os.close(to_stage)
            os.close(from_stage)
            for fd in (from_p, to_p, *keep):
                os.set_inheritable(fd, True)
            exec_readonly_interpreter([str(from_p), str(to_p), *argv_extra])
        except BaseException as err:  # C must never return into P's code
            try:
                Channel(-1, to_p).send("error", message=describe(err))
            finally:
                os._exit(1)
    os.close(from_p)
    os.close(to_p)
    return Channel(from_stage, to_stage), pid


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
    / rslave, and a read-only bind of the interpreter onto itself.
    """
    from galley.kernel import mount as m  # noqa: PLC0415

    exe = os.path.realpath(sys.executable)
    argv = [exe, "-IS", "-c", BOOTSTRAP.format(src=SRC), *args]
    try:
        tree = m.open_tree(m.AT_FDCWD, exe, m.OPEN_TREE_CLONE | m.OPEN_TREE_CLOEXEC)
        m.mount_setattr(tree, "", m.AT_EMPTY_PATH, attr_set=m.MOUNT_ATTR_RDONLY)
    except OSError:
        _bind_interpreter_read_only(exe)
        os.execve(exe, argv, {})
    os.execve(tree, argv, {})


def _bind_interpreter_read_only(exe: str) -> None:
    from galley.kernel import mount as m  # noqa: PLC0415
    from galley.kernel import ns  # noqa: PLC0415

    ns.unshare(ns.CLONE_NEWNS)
    m.mount(None, "/", None, m.MS_REC | m.MS_SLAVE)
    m.mount(exe, exe, None, m.MS_BIND)
    locked = os.statvfs(exe).f_flag & (m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC)
    m.mount(None, exe, None, m.MS_BIND | m.MS_REMOUNT | m.MS_RDONLY | locked)


def serve(
    channel: Channel,
    spec: Spec,
    stage_pid: int,
    state: State,
    rollback: Rollback,
    *,
    consoles: list[int] | None = None,
) -> int:
    """Answer the init stage until it is ready; the container's pid (exec: the pty masters
    the stage reports are copied into consoles)."""
    server = StageServer(channel, spec, stage_pid, state, rollback, consoles=consoles)
    while True:
        msg = channel.recv()
        handler = getattr(server, f"on_{msg['type']}", None)
        if handler is None:
            raise StageError(f"init protocol: unexpected message {msg['type']!r}")
        if handler(msg):
            return server.pid


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
        self.pid = 0

    def on_error(self, msg: dict[str, Any]) -> bool:
        raise StageError(msg["message"])

    def on_idmap(self, _msg: dict[str, Any]) -> bool:
        from galley.oci.namespaces import write_id_maps  # noqa: PLC0415

        linux = self.spec.get("linux", {})
        write_id_maps(self.stage_pid, linux.get("uidMappings", []), linux.get("gidMappings", []))
        self.channel.send("ok")
        return False

    def on_pid(self, msg: dict[str, Any]) -> bool:
        self.pid = pid = msg["pid"]
        if pid != self.stage_pid:
            self.rollback.add(_killer(pid))
            os.waitpid(self.stage_pid, 0)  # the stage forked the container's pid 1 and exits
        self.state["pid"] = pid
        _write_oom_score_adj(pid, self.spec.get("process", {}).get("oomScoreAdj"))
        self.channel.send("ok", pid=pid)
        return False

    def on_hooks(self, _msg: dict[str, Any]) -> bool:
        """prestart and createRuntime, in the runtime's namespaces, before pivot_root."""
        from galley.oci.hooks import run_hooks  # noqa: PLC0415

        hooks = self.spec.get("hooks", {})
        run_hooks(hooks.get("prestart", []), self.state, "prestart")
        run_hooks(hooks.get("createRuntime", []), self.state, "createRuntime")
        self.channel.send("ok")
        return False

    def on_console(self, msg: dict[str, Any]) -> bool:
        """exec: the stage's pty master, by number; copied out with pidfd_getfd."""
        from galley.kernel.seccomp import take_fd  # noqa: PLC0415

        if self.consoles is None:
            raise StageError("init protocol: a console from a create stage")
        self.consoles.append(take_fd(self.pid, msg["fd"]))
        self.channel.send("ok")
        return False

    def on_ready(self, msg: dict[str, Any]) -> bool:
        if msg.get("seccomp_fd") is not None:
            _forward_seccomp_listener(self.spec, self.pid, msg["seccomp_fd"], self.state)
        return True


def _forward_seccomp_listener(spec: Spec, pid: int, fd: int, state: State) -> None:
    """Send the init's seccomp notify fd (by number) to the agent at listenerPath."""
    from galley.oci.seccomp import SeccompFilter  # noqa: PLC0415
    from galley.oci.seccomp_notify import forward_listener  # noqa: PLC0415

    seccomp = spec.get("linux", {}).get("seccomp", {})
    listener = SeccompFilter(
        None, True, seccomp.get("listenerPath"), seccomp.get("listenerMetadata", "")
    )
    forward_listener(listener, pid, fd, dict(state))


def _cgroup(
    spec: Spec, container_id: str, stage_pid: int, rollback: Rollback
) -> CgroupManager | None:
    """Create the container's cgroup and move C into it (its children follow)."""
    try:
        from galley.oci.cgroups import manager_for  # noqa: PLC0415
    except ImportError:  # TEMPORARY: until galley.oci.cgroups lands
        return None
    manager = manager_for(spec, container_id)
    rollback.add_final(manager.destroy)
    manager.apply(stage_pid)
    resources = spec.get("linux", {}).get("resources")
    if resources:
        manager.set(resources)
    return manager


def open_console(
    spec: Spec, console_socket: str | None, foreground: bool
) -> tuple[int | None, int | None]:
    """(master, slave) of the container's pty when process.terminal, else (None, None)."""
    process = spec.get("process", {})
    if not check_console(process, console_socket):
        return None, None
    from galley.oci.console import open_pty  # noqa: PLC0415

    uid = host_id(process.get("user", {}).get("uid", 0), spec.get("linux", {}), "uidMappings")
    return open_pty(process.get("consoleSize"), uid)


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


def host_id(container_id: int, linux: object, key: str) -> int:
    """The host uid/gid of a container id through linux.uidMappings/gidMappings (if any)."""
    mappings = linux.get(key) if isinstance(linux, dict) else None
    for m in mappings or []:
        if m["containerID"] <= container_id < m["containerID"] + m["size"]:
            return int(m["hostID"] + container_id - m["containerID"])
    return container_id


def _listen_fds(spec: Spec) -> int:
    """systemd socket activation: pass LISTEN_FDS through as runc does (they come first)."""
    count = os.environ.get("LISTEN_FDS", "")
    if not count.isdigit() or os.environ.get("LISTEN_PID") != str(os.getpid()):
        return 0
    env = spec.setdefault("process", {}).setdefault("env", [])
    env += [f"LISTEN_FDS={count}", "LISTEN_PID=1"]
    return int(count)


def _write_oom_score_adj(pid: int, score: int | None) -> None:
    if score is None:
        return
    path = f"/proc/{pid}/oom_score_adj"
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(str(score))
    except OSError as err:
        raise StageError(f"process.oomScoreAdj {score}: {err.strerror}") from None


def _killer(pid: int) -> Callable[[], None]:
    return lambda: kill_started(pid)


def kill_started(pid: int) -> None:
    """SIGKILL a process we started and reap it if it is our child."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): tells a recycled pid apart."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def write_pid_file(path: str, pid: int) -> None:
    """Write the pid atomically (tmp + rename), as runc does."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def start(state_dir: str) -> None:
    """Let a created container's init run its process: one byte into the exec fifo."""
    path = os.path.join(state_dir, FIFO_NAME)
    name = os.path.basename(state_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FailedPrecondition(f"container {name!r} cannot start: it is not created") from None
    except OSError as err:  # ENXIO: no reader, the init has gone
        raise FailedPrecondition(f"container {name!r} cannot start: {err.strerror}") from None
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
    os.unlink(path)
