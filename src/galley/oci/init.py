"""The container's init stage: from a fork of galley-runc (or the re-executed, read-only
interpreter) to the trampoline's execve of the process.

    P (galley-runc create)                  init stage C (this module)
    ──────────────────────                  ────────────────────────────────────────────────
    read config.json; fork C ─────────────► imports (rootfs, caps, ...) while P validates
    (into a new pid namespace when the
    config allows: C is then pid 1)
    ["reexec" ────────────────────────────► exec python3 -IS from a read-only mount, main()]
    "boot" {spec, ...} ───────────────────► compiles seccomp, idmapped trees (host visible);
    cgroup.create(); cgroup.set(resources)  join/create namespaces (a new cgroup namespace
                                            waits) ─ "idmap" ─► P writes maps ◄─ "ok"
                                            fork when a pid/time namespace needs it (not
                                            when P forked C into it); "pid"
    ◄─ "pid" {pid}; oom_score_adj ────────► "ok" {pid}, which the container's pid 1 reads later
    cgroup.join(pid); "cgroup" ───┐         setsid, hostname, setup_rootfs: mounts until the
                                  └───────► first cgroup mount reads "ok" and "cgroup", then
                                              unshare(CLONE_NEWCGROUP); before pivot:
                                              process.terminal: a pty from the root's
    ◄─ "console" {fd}; P copies the master ◄── /dev/ptmx; "ok" ─► slave → /dev/console, stdio
                                              "hooks" ─► P runs prestart and
                                              createRuntime ◄─ "ok"; createContainer hooks
                                            sysctl, rlimits, seccomp, user, caps, cwd
    ◄─ "ready" {execs} ◄─────────────────── execve(trampoline) closes the pipe: P returns;
                                            the trampoline waits on the exec fifo ◄── `start`
                                            writes a byte; nnp + late seccomp, execve
    (with startContainer hooks: "ready", wait on the fifo here, hooks, then the trampoline)
    Any failure: "error" {message}, exit 1; P removes everything it made.

exec uses the same pipes: "exec" {spec with /proc/<init>/ns/* paths, process} in (the stage
joins the namespaces, and forks for a pid namespace); "pid" out, "ok" and "cgroup" in (P moves
the process into the container's cgroup, as runc does: a move is not bound by pids.max, so an
exec works in a container at its pids limit);
"console" {fd} (a pty from the container's /dev/ptmx, which P copies out with pidfd_getfd)
and "ready" out; the pipe closing on execve tells P the process started.
A seccomp filter with a listenerPath sends "ready" {seccomp_fd} the same way; one loaded without
noNewPrivileges (before the user and capabilities are set) sends "seccomp" {fd} at once and
waits for "ok": P has given it to the agent.

Messages are marshal-encoded dicts with a 4-byte length, over two pipes: json would cost ~7 ms
of imports in a stage that must start in ~10 ms (typing, dataclasses, json, signal and socket
are all avoided here for the same reason).
"""

from __future__ import annotations

import marshal
import posix
import sys

from galley.kernel import pathnames

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.spec import Process, Spec, State

BOOTSTRAP = "import sys;sys.path[:0]=[{src!r}];from galley.oci.init import main;main()"


class StageError(Exception):
    """The init stage reported a failure, or stopped talking."""


class Channel:
    """Length-prefixed marshal messages over a pair of pipe fds."""

    __slots__ = ("rfd", "wfd")

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd

    def send(self, kind: str, **fields: object) -> None:
        fields["type"] = kind
        data = marshal.dumps(fields)
        buf = len(data).to_bytes(4, "little") + data
        while buf:
            buf = buf[posix.write(self.wfd, buf) :]

    def recv(self) -> dict[str, Any]:
        size = int.from_bytes(self._read(4), "little")
        msg: dict[str, Any] = marshal.loads(self._read(size))
        return msg

    def expect(self, kind: str) -> dict[str, Any]:
        msg = self.recv()
        if msg["type"] == "error":
            raise StageError(msg["message"])
        if msg["type"] != kind:
            raise StageError(f"init protocol: expected {kind!r}, got {msg['type']!r}")
        return msg

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = posix.read(self.rfd, size)
            if not chunk:
                raise StageError("the other side of the init pipe exited")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def reported_error(self) -> str | None:
        """The "error" the other side has already written, if any, without waiting: why an
        answer to it just failed (it exited meanwhile)."""
        posix.set_blocking(self.rfd, False)
        try:
            msg = self.recv()
        except (OSError, StageError, ValueError, EOFError):
            return None
        finally:
            posix.set_blocking(self.rfd, True)
        return str(msg.get("message")) if msg.get("type") == "error" else None

    def close(self) -> None:
        """Close both ends (once: a second call does nothing)."""
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                posix.close(fd)
        self.rfd = self.wfd = -1


def describe(err: BaseException) -> str:
    """The error for P, in its own words, without Python's [Errno N] prefix. A newline in
    it stays (a failing hook's output, as runc quotes it): the log line quotes the
    message whole."""
    if isinstance(err, OSError) and err.strerror:
        names = [str(n) for n in (err.filename, err.filename2) if n]
        where = "".join(f": {n}" for n in names if n not in err.strerror)
        return f"{err.strerror}{where}"
    return str(err) or type(err).__name__


def main() -> None:
    """Entry point of the re-executed interpreter: argv is [-c, read fd, write fd]."""
    run_stage(Channel(int(sys.argv[1]), int(sys.argv[2])))


def run_stage(
    channel: Channel, *, creates: bool = False, reexec: Callable[[], None] | None = None
) -> None:
    """The stage, in the re-executed interpreter or in a child forked from P (which knows
    whether it creates a container, and how to re-execute it if P asks): never returns."""
    try:
        from galley.kernel.proc import set_dumpable, set_title  # noqa: PLC0415

        set_dumpable(False)  # no /proc/<pid>/{exe,fd,mem} for the container's processes
        # Nor galley-runc's command line (--env values, host paths) in /proc/<pid>/cmdline,
        # which takes no ptrace check: an exec's process is seen there before its execve.
        set_title(b"galley-runc init")
        # What the stage needs, imported while P still makes the state and the cgroup.
        import galley.kernel.mount  # noqa: PLC0415 - the cwd check's mount ids
        from galley.oci import capabilities, identity, namespaces, rlimits, trampoline  # noqa: F401, PLC0415

        if creates:
            import galley.kernel.net  # noqa: PLC0415
            import galley.oci.rootfs  # noqa: F401, PLC0415

        msg = channel.recv()
        if msg["type"] == "reexec":  # before anything else: "boot" waits in the pipe
            if reexec is not None:
                reexec()
            msg = channel.recv()
        from galley.kernel.proc import cloexec_from  # noqa: PLC0415

        cloexec_from(3 + msg.get("preserve_fds", 0))  # nothing the caller leaked reaches execve
        {"boot": _run, "exec": _run_exec}.get(msg["type"], _unexpected)(channel, msg)
    except BaseException as err:  # every failure goes back to P as one line
        fail(channel, err)


def seal_imports() -> None:
    """From now on nothing is imported from a file: the stage is about to see the container's
    files where the host's were (exec joins its mount namespace; create pivots into its root,
    or joins a mount namespace by path). A module imported lazily past this point would be
    looked up in the container's /usr/lib/python3 (or our own src path there), and an image
    could put code there that would run as the host's root with every capability. So sys.path
    and the path and cache finders go: only modules built into the interpreter can still be
    imported, and a forgotten lazy import fails with ImportError instead."""
    import _frozen_importlib  # noqa: PLC0415 - loaded at start-up: costs nothing

    keep = (_frozen_importlib.BuiltinImporter, _frozen_importlib.FrozenImporter)
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder in keep]
    sys.path[:] = []
    sys.path_hooks[:] = []
    sys.path_importer_cache.clear()


def _import_rootfs_code() -> None:
    """Everything building a root may import lazily (rarely needed mount kinds, and the
    createContainer hooks, included)."""
    import subprocess  # noqa: F401, PLC0415 - run_hook imports it lazily

    import galley.oci.cgroupfs  # noqa: PLC0415
    import galley.oci.console  # noqa: PLC0415
    import galley.oci.copyup  # noqa: PLC0415
    import galley.oci.hooks  # noqa: PLC0415
    import galley.oci.idmap  # noqa: F401, PLC0415


def _unexpected(_channel: Channel, msg: dict[str, Any]) -> None:
    raise StageError(f"init protocol: unexpected message {msg['type']!r}")


def fail(channel: Channel, err: BaseException) -> None:
    """Report err to P (or, once P has gone, to the container's stderr, bare as runc's init
    prints it: a failing startContainer hook's error reads as runc's) and exit 1."""
    message = describe(err)
    try:
        channel.send("error", message=message)
    except OSError:
        posix.write(2, f"{message}\n".encode())
    posix._exit(1)


def _run(channel: Channel, boot: dict[str, Any]) -> None:
    """`create`: namespaces, session, names, rootfs, process checks; wait for start; execve."""
    spec: Spec = boot["spec"]
    fifo = posix.open(boot["fifo"], posix.O_RDWR | posix.O_CLOEXEC)
    start_hooks = spec.get("hooks", {}).get("startContainer")
    # Without startContainer hooks the trampoline waits for `start`: a created container's
    # init is then a sealed memfd rather than the host's interpreter.
    userns = any(n.get("type") == "user" for n in spec.get("linux", {}).get("namespaces", []))
    starter = ProcessStarter(
        spec["process"],
        spec,
        fifo=None if start_hooks else fifo,
        seccomp_cache=boot.get("seccomp_cache"),
        trampoline=boot.get("trampoline", True),
        keyring=boot.get("keyring"),
        # exec's processes join it by name: they must be able to search it (runc's bits)
        keyring_search=0x8 if userns else 0x80000,  # KEY_OTH_SEARCH, KEY_USR_SEARCH
        start_hooks=bool(start_hooks),
        init=True,
    )
    if start_hooks:  # imported now: after pivot_root the host's modules are out of reach
        import subprocess  # noqa: F401, PLC0415 - run_hook imports it lazily

        from galley.oci.hooks import run_hooks  # noqa: PLC0415
    import galley.kernel.net  # noqa: PLC0415 - a new network namespace's loopback
    import galley.oci.rootfs  # noqa: F401, PLC0415

    # P moves the container's process into its cgroup once it knows its pid; until then the
    # process builds its namespaces and rootfs, and only a new cgroup namespace must wait.
    from galley.kernel.ns import CLONE_NEWCGROUP, CLONE_NEWPID  # noqa: PLC0415
    from galley.oci.rootfs import (  # noqa: PLC0415
        BindCloner,
        binds_to_clone,
        prebuild_binds,
        premade_filesystems,
    )

    trees = prebuild_binds(spec, boot["bundle"])  # as the host's root, before the userns
    cloner = BindCloner(spec, boot["bundle"]) if binds_to_clone(spec) else None
    if any(
        n.get("type") == "mount" and n.get("path")
        for n in spec.get("linux", {}).get("namespaces", [])
    ):
        _import_rootfs_code()  # the rootfs is built in another mount namespace: seal first
        seal_imports()
    made = CLONE_NEWPID if boot.get("pid_namespace") else 0  # P forked us into it: pid 1
    entered = None
    if cloner is not None:  # the host's root clones them in the container's mount namespace

        def entered() -> None:
            trees.update(cloner.trees())  # before a fork for a pid namespace: ours to reap

    deferred = _enter_namespaces(
        channel,
        spec,
        defer=CLONE_NEWCGROUP,
        made=made,
        entered=entered,
        before_user=lambda: trees.update(premade_filesystems(spec)),
    )
    posix.setsid()
    _set_names(spec)
    state: State = {
        "ociVersion": spec.get("ociVersion", ""),
        "id": boot["id"],
        "status": "creating",
        "pid": 0,  # as P sees it: its "ok" tells, read with "cgroup" (before any hook)
        "bundle": boot["bundle"],
        "annotations": spec.get("annotations", {}),
    }
    terminal = bool(boot.get("terminal"))
    _setup_rootfs(
        channel,
        spec,
        boot,
        before_pivot=lambda: _before_pivot(channel, spec, state, boot, terminal=terminal),
        join_cgroup=lambda: _join_cgroup(channel, deferred, state),
        trees=trees,
    )
    seccomp_fd = starter.prepare(lambda fd: _hand_over_listener(channel, fd))
    if starter.fifo is not None:
        _ready_to_exec(channel, seccomp_fd)
        starter.execute(boot["preserve_fds"])
    channel.send("ready", seccomp_fd=seccomp_fd)
    previous = _exit_on_signals()  # as the trampoline does while it waits
    posix.read(fifo, 1)  # `start` writes one byte; until then we are "created"
    posix.close(fifo)
    _restore_signals(previous)
    if start_hooks:
        state["status"] = "created"  # as runc: the process has not run yet
        starter.set_rlimits()
        starter.secure_for_hooks()
        run_hooks(start_hooks, state, inherit=starter.env)  # with the HOME it may have got
    starter.execute(boot["preserve_fds"])


def _exit_on_signals() -> dict[int, object]:
    """Die of the signals that end a process by default, which pid 1 of a new pid namespace
    would drop without a handler (the host's SIGTERM too): exit 128 + the signal, as the
    trampoline does. The previous handlers, for _restore_signals."""
    import _signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` imports enum

    from galley.oci.trampoline import CAUGHT_SIGNALS  # noqa: PLC0415

    def exit_on(signum: int, _frame: object) -> None:
        posix._exit(128 + signum)

    return {sig: _signal.signal(sig, exit_on) for sig in CAUGHT_SIGNALS}


def _restore_signals(previous: dict[int, object]) -> None:
    import _signal  # noqa: PLC0415

    for sig, handler in previous.items():
        _signal.signal(sig, handler)


def _run_exec(channel: Channel, msg: dict[str, Any]) -> None:
    """`exec`: join the container's namespaces, wait until P has moved us into the container's
    cgroup, finish, execve."""
    spec: Spec = msg["spec"]
    process: Process = msg["process"]
    starter = ProcessStarter(
        process,
        spec,
        seccomp_cache=msg.get("seccomp_cache"),
        trampoline=msg.get("trampoline", True),
        keyring=msg.get("keyring"),
    )
    if process.get("terminal"):
        import galley.oci.console  # noqa: F401, PLC0415 - imported before joining
    from galley.oci.state import process_start_time  # noqa: PLC0415

    init_pid, init_start = msg["init"]

    def same_init() -> None:  # the namespaces opened are those of the init P checked
        if process_start_time(init_pid) != init_start:
            raise StageError("the container's init exited: its namespaces are gone")

    seal_imports()  # the container's mount namespace is next
    # Without a mount namespace of its own the container's root is a chroot in ours: the
    # init's, opened before its start time is checked again.
    root = _open_init_root(init_pid) if msg.get("chroot") else -1
    _enter_namespaces(channel, spec, opened=same_init)
    if root >= 0:
        posix.fchdir(root)
        posix.chroot(".")
        posix.close(root)
    posix.setsid()
    _joined(channel)
    channel.expect("cgroup")  # P has moved this process into the container's cgroup
    if process.get("terminal"):
        _open_terminal(channel, process, None)
    _ready_to_exec(channel, starter.prepare(lambda fd: _hand_over_listener(channel, fd)))
    starter.execute(msg["preserve_fds"])


def _open_init_root(pid: int) -> int:
    """The root directory of the container's init, as an fd to chroot into."""
    try:
        return posix.open(f"/proc/{pid}/root", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError as err:
        raise StageError(f"the container's root: {describe(err)}") from None


def _hand_over_listener(channel: Channel, fd: int) -> None:
    """A seccomp listener loaded early: P copies it to the agent before we go on, and it is
    closed here (the agent's copy is the one that answers)."""
    channel.send("seccomp", fd=fd)
    channel.expect("ok")
    posix.close(fd)


def _ready_to_exec(channel: Channel, seccomp_fd: int | None) -> None:
    """Tell P that execve comes next (the pipe closes when it succeeds); a seccomp listener fd
    must stay open until P has copied it."""
    channel.send("ready", seccomp_fd=seccomp_fd, execs=True)
    if seccomp_fd is not None:
        channel.expect("ok")


def _open_terminal(channel: Channel, process: Process, root: str | None) -> None:
    """A pty from the container's /dev/ptmx (under root before pivot_root); P copies the
    master out; the slave becomes stdio (fd 0 from now on) and controlling terminal."""
    from galley.oci.console import open_pty_here, take_console  # noqa: PLC0415

    uid = process.get("user", {}).get("uid", 0)
    master, slave = open_pty_here(process.get("consoleSize"), uid, root)
    channel.send("console", fd=master)
    channel.expect("ok")
    posix.close(master)
    take_console(slave)


def _set_names(spec: Spec) -> None:
    """hostname and domainname, when given and not empty (as runc: an empty one leaves the
    name the UTS namespace has; validation lets it through without a UTS namespace of the
    container's own, where setting it would rename the host)."""
    from galley.kernel import proc  # noqa: PLC0415

    if spec.get("hostname"):
        proc.sethostname(spec["hostname"])
    if spec.get("domainname"):
        proc.setdomainname(spec["domainname"])


def _enter_namespaces(
    channel: Channel,
    spec: Spec,
    *,
    defer: int = 0,
    made: int = 0,
    opened: Callable[[], None] | None = None,
    entered: Callable[[], None] | None = None,
    before_user: Callable[[], None] | None = None,
) -> int:
    """Namespaces in kernel order, but those to create in defer (returned) and those P made
    (made: we were forked into them); entered() once in them, before any fork; then "pid" to
    P. P's answer is read later (_joined): the process goes on while P writes oom_score_adj
    and moves it into its cgroup, and it runs nothing of the container's before "cgroup"."""
    from galley.kernel.ns import CLONE_NEWNET  # noqa: PLC0415
    from galley.oci import namespaces  # noqa: PLC0415

    plan = namespaces.NamespacePlan(spec)
    deferred = plan.create & defer
    plan.create &= ~defer
    if made:
        if posix.getpid() != 1:
            raise StageError("init protocol: not the first process of the new pid namespace")
        plan.made_already(made)

    def map_ids() -> None:
        channel.send("idmap")
        channel.expect("ok")

    offsets = spec.get("linux", {}).get("timeOffsets")
    namespaces.enter(plan, map_ids, offsets, opened, before_user)
    if entered is not None:
        entered()
    if plan.create & CLONE_NEWNET:  # a network namespace of its own: loopback up, as runc
        from galley.kernel.net import set_up  # noqa: PLC0415 - imported with the stage's code

        set_up("lo")
    if plan.needs_fork:
        child = posix.fork()
        if child:
            channel.send("pid", pid=child)
            posix._exit(0)
    else:  # this is the container's process; forked into its pid namespace, it reads 1 as
        channel.send("pid", pid=None if made else posix.getpid())  # its pid: P knows the real one
    return deferred


def _joined(channel: Channel) -> int:
    """P's "ok" to "pid": the container's pid as P sees it."""
    pid: int = channel.expect("ok")["pid"]
    return pid


def _join_cgroup(channel: Channel, deferred: int, state: State) -> None:
    """Wait until P has moved this process into its cgroup, then make the deferred cgroup
    namespace (rooted there): before the first cgroup mount, any hook and any fork or exec."""
    import galley.oci.cgroupfs  # noqa: F401, PLC0415 - while P is still at it

    state["pid"] = _joined(channel)
    channel.expect("cgroup")
    if deferred:
        from galley.kernel import ns  # noqa: PLC0415

        ns.unshare(deferred)


def _before_pivot(
    channel: Channel, spec: Spec, state: State, boot: dict[str, Any], *, terminal: bool
) -> None:
    """The console (runc: after the mounts, before the rootfs is finished), prestart and
    createRuntime in P (runtime namespaces), then createContainer in here."""
    if terminal:
        from galley.oci.console import bind_console  # noqa: PLC0415

        root = boot.get("host_root") or pathnames.realpath(
            pathnames.join(boot["bundle"], spec.get("root", {}).get("path", ""))
        )
        _open_terminal(channel, spec["process"], root)
        bind_console(root, 0)  # the slave, now stdin
    hooks = spec.get("hooks", {})
    if hooks.get("prestart") or hooks.get("createRuntime"):
        channel.send("hooks")
        channel.expect("ok")
    if hooks.get("createContainer"):
        from galley.oci.hooks import run_create_hooks  # noqa: PLC0415

        run_create_hooks(hooks["createContainer"], state, inherit=environment(spec["process"]))
    seal_imports()  # pivot_root is next


def _setup_rootfs(
    channel: Channel,
    spec: Spec,
    boot: dict[str, Any],
    *,
    before_pivot: Callable[[], None],
    join_cgroup: Callable[[], None],
    trees: dict[int, int],
) -> None:
    from galley.oci.rootfs import setup_rootfs  # noqa: PLC0415

    def report_clone(path: str, mount_id: int) -> None:  # P records it before we attach it
        channel.send("rootfs", path=path, mount_id=mount_id)
        channel.expect("ok")

    setup_rootfs(
        spec,
        boot["bundle"],
        no_pivot=boot["no_pivot"],
        console_path=None,  # /dev/console is bound in before_pivot, with the container's pty
        before_pivot=before_pivot,
        join_cgroup=join_cgroup,
        trees=trees,
        report_clone=report_clone,
        attach_at=boot.get("host_root"),
    )


class ProcessStarter:
    """The last steps of create and exec: security in runc's order, cwd, then execve.

    [execCPUAffinity.initial at the stage's start] → scheduler, ioPriority,
    execCPUAffinity.final (or, without execCPUAffinity, every CPU), personality →
    rlimits → seccomp (without noNewPrivileges) → user (keeping caps) → capabilities → cwd
    (checked inside the root: CVE-2024-21626) → [wait for start] → no_new_privs + seccomp
    (with noNewPrivileges) → [startContainer hooks, under both, as in runc 1.1] → every fd
    past the preserved ones closed on exec → signals back to default → execve.
    """

    def __init__(
        self,
        process: Process,
        spec: Spec,
        *,
        fifo: int | None = None,
        seccomp_cache: str | None = None,
        trampoline: bool = True,
        keyring: str | None = None,
        keyring_search: int = 0,
        start_hooks: bool = False,
        init: bool = False,
    ) -> None:
        """keyring: the session keyring to join (runc's "_ses.<id>"; None with
        --no-new-keyring), made searchable by keyring_search's bits when this makes it.
        start_hooks: startContainer hooks run before the execve (secure_for_hooks).
        init: the container's init, to which execCPUAffinity does not apply (runtime-spec)."""
        # Everything is imported and compiled here, while the host's files are still visible.
        from galley.kernel import keys  # noqa: PLC0415
        from galley.oci import capabilities, identity, rlimits  # noqa: PLC0415
        from galley.oci import trampoline as program  # noqa: PLC0415
        from galley.oci.lsm import Labels  # noqa: PLC0415

        self.labels = Labels(process)  # the host's /proc, before any of the container's files
        if self.labels.exec_needs_own_file:
            trampoline = False  # an SELinux domain's entrypoint is the program, not a memfd
        self.keys = keys
        self.keyring = keyring
        self.keyring_search = keyring_search
        self.process = process
        # P decides (a re-executed stage has an empty environment; see trampoline.supported)
        self.trampoline = program if trampoline and program.supported() else None
        self.fifo = fifo if self.trampoline is not None else None  # the trampoline waits on it
        self.image = -1
        if process.get("apparmorProfile") and not pathnames.isdir("/sys/kernel/security/apparmor"):
            raise StageError("apparmor profile set in config.json but AppArmor is not enabled")
        self.capabilities = capabilities
        self.identity = identity
        self.rlimits = rlimits
        self.rlimits_set = False
        self.env = environment(process)
        self.filter = None
        seccomp = spec.get("linux", {}).get("seccomp")
        if seccomp:
            from galley.oci.seccomp import compile_filter  # noqa: PLC0415

            # A profile compiled before under this root is read back: libseccomp takes 10-30 ms
            # over a Docker-style profile, and a node starts most containers with one profile.
            self.filter = compile_filter(seccomp, seccomp_cache)
        self.nnp = bool(process.get("noNewPrivileges"))
        self.start_hooks = start_hooks
        self.executable = ""
        self.personality = spec.get("linux", {}).get("personality")
        self.memory_policy = spec.get("linux", {}).get("memoryPolicy")
        self.affinity = {} if init else process.get("execCPUAffinity") or {}
        # glibc counts them in the host's /sys/devices/system/cpu: read before pivot_root
        self.cpus = posix.sysconf("SC_NPROCESSORS_CONF")
        self.scheduling = None
        if (
            self.affinity
            or self.personality
            or self.memory_policy
            or {"scheduler", "ioPriority"} & process.keys()
        ):
            from galley.oci import scheduling  # noqa: PLC0415

            self.scheduling = scheduling
            scheduling.apply_cpu_affinity(self.affinity, "initial")

    def prepare(self, hand_over: Callable[[int], None]) -> int | None:
        """Everything that can fail before `start`: create reports these errors.

        Returns the seccomp notify fd when the filter has a listener: P copies it out of this
        process and sends it to the agent, so such a filter is loaded now even with
        noNewPrivileges (as runc does); other filters load as late as they can. One loaded
        before the user and capabilities are set (without noNewPrivileges) goes to
        hand_over(fd) at once, as runc's: what this process does after it may be what the
        filter sends the agent, and it would wait for an agent that has no fd yet.
        """
        process = self.process
        if self.keyring:  # before any seccomp filter: Docker's profile refuses keyctl
            self.labels.key_label(True)
            self._join_keyring()
            self.labels.key_label(False)
        self.labels.apply()  # takes effect at the execve
        self.labels.close()
        if self.trampoline is not None:  # before the rlimits: RLIMIT_FSIZE binds memfd writes
            self._load_trampoline()
        if self.scheduling is not None:
            self._schedule()
        if not (self.affinity.get("initial") or self.affinity.get("final")):
            every_cpu(self.cpus)
        self.rlimits.raise_hard_limits(process.get("rlimits", []))  # the rest: set_rlimits
        cwd = process.get("cwd", "/")
        entered = enter_cwd(cwd, may_retry=True)  # as runc: first with the runtime's rights
        if entered:
            self._find_program()
        notify_fd = None
        if self.filter is not None and not self.nnp:
            self.set_rlimits()  # little Python after this: RLIMIT_DATA or AS may bind it
            early = self.filter.load()
            if early is not None:
                hand_over(early)
        self.identity.apply_user(process.get("user") or {"uid": 0, "gid": 0})
        self.capabilities.apply_capabilities(process.get("capabilities", {}))
        if not entered:
            enter_cwd(cwd)
            self._find_program()
        if self.filter is not None and self.nnp and self.filter.notify:
            from galley.kernel import proc  # noqa: PLC0415

            proc.set_no_new_privs()
            self.set_rlimits()
            notify_fd = self.filter.load()
            self.filter = None
        return notify_fd

    def _find_program(self) -> None:
        """HOME (from the container's /etc/passwd, read only when needed) and the program's
        path, found with the runtime's rights as runc's LookPath and user lookup are: a
        program the user may not execute fails at its execve, in runc's words."""
        process = self.process
        if "HOME" not in self.env:
            self.env["HOME"] = self.identity.home_dir(process.get("user", {}).get("uid", 0))
        self.executable = find_executable(process["args"][0], self.env)

    def set_rlimits(self) -> None:
        """The final rlimits, once: just before execve, before startContainer hooks (they run
        under the process's limits, as runc's parent has set them on its init by then), or
        before a filter loaded earlier than that. Never after one: an allowlist profile need
        not allow prlimit64 (runc's parent sets them before its init loads a filter). Limits
        as small as RLIMIT_DATA or RLIMIT_AS may allow bind the stage's own Python, so they
        come as late as they can."""
        if not self.rlimits_set:
            self.rlimits.apply_rlimits(self.process.get("rlimits", []))
            self.rlimits_set = True

    def _load_trampoline(self) -> None:
        """The trampoline's sealed memfd, with no_new_privs and the late filter: the filter
        without noNewPrivileges, or with a listener, is loaded by prepare instead, and the one
        the startContainer hooks run under by secure_for_hooks."""
        assert self.trampoline is not None
        loaded_here = self.start_hooks or (self.filter is not None and self.filter.notify)
        late = self.filter if self.nnp and not loaded_here else None
        program, flags = late.raw() if late is not None else (b"", 0)
        self.image = self.trampoline.load(
            fifo=self.fifo, no_new_privs=self.nnp, program=program, flags=flags
        )

    def secure_for_hooks(self) -> None:
        """Before the startContainer hooks: with noNewPrivileges, no_new_privs and the filter,
        which the hooks run under as in runc 1.1 (the filter is not loaded again later)."""
        if not self.nnp:
            return  # the filter, if any, is loaded already
        from galley.kernel import proc  # noqa: PLC0415

        proc.set_no_new_privs()
        if self.filter is not None:
            self.filter.load()
            self.filter = None

    def _join_keyring(self) -> None:
        """A session keyring of the container's own, not the caller's (which would hold the
        host's keys), as runc does; without keyrings in the kernel, none (runc: the same)."""
        assert self.keyring is not None
        try:
            key = self.keys.join_session_keyring(self.keyring)
        except OSError as err:
            if err.errno == 38:  # ENOSYS
                return
            raise StageError(f"unable to join session keyring: {describe(err)}") from None
        if self.keyring_search:
            perm = int(self.keys.describe(key).split(";")[3], 16)
            self.keys.set_permissions(key, perm | self.keyring_search)

    def _schedule(self) -> None:
        """scheduler, ioPriority, execCPUAffinity.final (now inside the cgroup), personality,
        memoryPolicy (which the process and its children keep through execve)."""
        process, scheduling = self.process, self.scheduling
        assert scheduling is not None
        if process.get("scheduler"):
            scheduling.apply_scheduler(process["scheduler"])
        if process.get("ioPriority"):
            scheduling.apply_io_priority(process["ioPriority"])
        scheduling.apply_cpu_affinity(self.affinity, "final")
        if self.personality:
            scheduling.apply_personality(self.personality)
        if self.memory_policy:
            scheduling.apply_memory_policy(self.memory_policy)

    def execute(self, preserve_fds: int) -> None:
        """fds, signals, then execve: of the trampoline (which waits for start, sets
        no_new_privs, loads the late filter and execs the process), or where there is none,
        no_new_privs and the late filter here and execve of the process. Never returns."""
        import _signal  # noqa: PLC0415 - `signal` imports enum

        from galley.kernel import proc  # noqa: PLC0415

        close_on_exec(3 + preserve_fds)  # before the late filter: it may forbid close_range
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):  # Python ignores these; exec keeps that
            _signal.signal(sig, _signal.SIG_DFL)
        self.set_rlimits()  # no Python work after, unless a filter came first
        if self.trampoline is not None:
            if self.fifo is not None:
                posix.set_inheritable(self.fifo, True)  # the trampoline reads and closes it
            if self.nnp:  # before this execve too: root's would raise permitted to bounding
                proc.set_no_new_privs()
            argv = self.trampoline.argv(self.executable, self.process["args"])
            self._execve(self.image, argv)
        if self.nnp:
            proc.set_no_new_privs()
            if self.filter is not None:
                self.filter.load()
        self._execve(self.executable, self.process["args"])

    def _execve(self, image: str | int, argv: list[str]) -> None:
        """execve, failing in runc's words ("exec /bin/sh: argument list too long"), not
        Python's (the trampoline's image is an fd: "Argument list too long: 7")."""
        try:
            posix.execve(image, argv, self.env)
        except OSError as err:
            from galley.errors import reason_text  # noqa: PLC0415 - loaded by P already

            raise OSError(err.errno, f"exec {self.executable}: {reason_text(err)}") from None


def close_on_exec(first: int) -> None:
    """Every fd >= first closes on execve; one fd at a time if a filter forbids close_range."""
    from galley.kernel import proc  # noqa: PLC0415

    try:
        proc.cloexec_from(first)
    except OSError:
        for name in posix.listdir("/proc/self/fd"):
            if int(name) >= first:
                try:
                    posix.set_inheritable(int(name), False)
                except OSError:  # the directory's own fd, closed already
                    pass


def every_cpu(configured: int) -> None:
    """Let the process run on every one of the configured CPUs, which the kernel narrows to
    its cgroup's cpuset: the CPUs its caller was bound to (taskset, a pinned shim) are no
    business of the container's (runc since 1.2 resets them too). Nothing to do, and no set
    to build, in the usual case. Best effort, as runc's: a kernel that refuses leaves the
    process where it was."""
    try:
        if len(posix.sched_getaffinity(0)) < configured:
            posix.sched_setaffinity(0, range(configured))
    except OSError:
        pass


def environment(process: Process) -> dict[str, str]:
    """process.env as a dict (later entries win, as in execve's consumers)."""
    env = {}
    for item in process.get("env", []):
        key, _, value = item.partition("=")
        env[key] = value
    return env


def enter_cwd(cwd: str, *, may_retry: bool = False) -> bool:
    """chdir to process.cwd and make sure it lies inside the container's root. With may_retry
    a permission error returns False instead: runc tries before taking the user's ids (so the
    process may start in a directory its user cannot open, such as root's 0700 home) and
    again after (a volume chowned to the user may be closed to root without DAC override)."""
    try:
        posix.chdir(cwd)
    except PermissionError as err:
        if may_retry:
            return False
        raise StageError(f'chdir to cwd ("{cwd}") set in config.json failed: {err.strerror}')
    except OSError as err:
        raise StageError(f'chdir to cwd ("{cwd}") set in config.json failed: {err.strerror}')
    try:
        posix.getcwd()  # glibc: ENOENT when the kernel says "(unreachable)/..."
    except FileNotFoundError:
        raise StageError(f'cwd "{cwd}" is outside the container\'s root') from None
    except OSError:  # a seccomp profile may deny getcwd (runtime-tools' does): the process
        if not _below_root():  # runs, as runc 1.1.5's, but the cwd is still checked
            raise StageError(f'cwd "{cwd}" is outside the container\'s root') from None
    return True


def _below_root() -> bool:
    """Whether "/" is reached from the cwd by "..", for when getcwd is denied: a cwd outside
    the root (a leaked fd's directory, CVE-2024-21626) climbs to a top of its own. A top is
    where ".." stays put: the root is one, but a directory that only looks like the root (the
    rootfs reached through another mount, whose ".." leads out) is not, nor the root of a
    detached copy of the rootfs (whose ".." stays put too: told by its mount id, where statx
    gives one). Climbed by fds, so that no depth is too deep. Without open or stat, nothing
    can tell: True."""
    flags = posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC
    try:
        root = posix.stat("/")
        fd = posix.open(".", flags)
    except OSError:
        return True
    try:
        here = posix.stat(fd)
        while True:
            parent_fd = posix.open("..", flags, dir_fd=fd)
            posix.close(fd)
            fd = parent_fd
            parent = posix.stat(fd)
            if (parent.st_dev, parent.st_ino) == (here.st_dev, here.st_ino):
                if (here.st_dev, here.st_ino) != (root.st_dev, root.st_ino):
                    return False
                return _same_mount(fd, "/")
            here = parent
    except OSError:
        return True
    finally:
        posix.close(fd)


def _same_mount(fd: int, path: str) -> bool:
    """Whether fd and path are on one mount (True where the kernel cannot say)."""
    from galley.kernel.mount import AT_FDCWD, mount_id  # noqa: PLC0415 - run_stage loaded it

    try:
        return mount_id(fd) == mount_id(AT_FDCWD, path)
    except OSError:
        return True


def find_executable(name: str, env: dict[str, str]) -> str:
    """args[0] resolved as runc resolves it (Go's exec.LookPath), with the container's PATH: an
    empty or unset PATH searches nowhere, and a name found through a relative entry ("",
    ".", "bin") is refused, as Go refuses it since 1.19; a clear error if absent."""
    if "/" in name:
        candidates = [name]
    else:
        search = env.get("PATH", "")
        candidates = [pathnames.join(d or ".", name) for d in search.split(":")] if search else []
    for path in candidates:
        try:
            st = posix.stat(path)
        except OSError as err:
            if "/" in name:  # runc's words (Go's exec.LookPath)
                from galley.errors import go_error_text  # noqa: PLC0415

                text = go_error_text(err.errno or 0)
                raise StageError(f'exec: "{name}": stat {name}: {text}')
            continue
        if st.st_mode & 0o170000 == 0o100000 and posix.access(path, posix.X_OK):
            if "/" not in name and not path.startswith("/"):
                raise StageError(
                    f'exec: "{name}": cannot run executable found relative to current directory'
                )
            return path
        if "/" in name:
            raise StageError(f'exec: "{name}": permission denied')
    raise StageError(f'exec: "{name}": executable file not found in $PATH')
