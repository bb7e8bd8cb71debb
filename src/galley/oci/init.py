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

The messages' framing is galley.oci.channel's; the process's own last steps (user,
capabilities, seccomp, cwd, execve) are galley.oci.starter's. typing, dataclasses, json,
signal and socket are avoided here: the stage must start in ~10 ms.
"""

from __future__ import annotations

import posix
import sys

from galley.kernel import pathnames
from galley.oci.channel import Channel, StageError, describe
from galley.oci.starter import ProcessStarter, environment

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from galley.oci.spec import Process, Spec, State


def main() -> None:
    """Entry point of the re-executed interpreter: argv is [-c, read fd, write fd, fd socket]
    (galley.oci.channel; -1: none)."""
    run_stage(Channel(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))


def run_stage(
    channel: Channel, *, creates: bool = False, reexec: Callable[[], None] | None = None
) -> None:
    """The stage, in the re-executed interpreter or in a child forked from P (which knows
    whether it creates a container, and how to re-execute it if P asks): never returns."""
    try:
        from galley.kernel.proc import set_dumpable, set_title  # noqa: PLC0415

        if posix.geteuid() != 0:
            _open_oom_score()
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
    from galley.oci.hosttrees import (  # noqa: PLC0415
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
        join_cgroup=lambda: _join_cgroup(
            channel,
            deferred,
            state,
            cgroup_mount=any(m.get("type") == "cgroup" for m in spec.get("mounts", [])),
        ),
        trees=trees,
    )
    seccomp_fd = starter.prepare(lambda fd: _hand_over_listener(channel, fd))
    if starter.fifo is not None:
        _ready_to_exec(channel, seccomp_fd)
        starter.execute(boot["preserve_fds"])
    _send_ready(channel, seccomp_fd)
    previous = _signals_while_waiting()  # as the trampoline does while it waits
    posix.read(fifo, 1)  # `start` writes one byte; until then we are "created"
    posix.close(fifo)
    _restore_signals(previous)
    if start_hooks:
        state["status"] = "created"  # as runc: the process has not run yet
        starter.set_rlimits()
        starter.secure_for_hooks()
        run_hooks(start_hooks, state, inherit=starter.env)  # with the HOME it may have got
    starter.execute(boot["preserve_fds"])


def _signals_while_waiting() -> dict[int, object]:
    """Treat signals as the trampoline does while it waits (runc's init as well): die of the
    fatal ones (pid 1 of a new pid namespace would drop them without a handler, the host's
    SIGTERM too; as such a pid 1 cannot die of its own signal, it exits 128 + the signal), and
    ignore the others that end a process by default. The previous handlers, for
    _restore_signals."""
    import _signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` imports enum

    from galley.oci.trampoline import FATAL_SIGNALS, IGNORED_SIGNALS  # noqa: PLC0415

    def die_of(signum: int, _frame: object) -> None:
        _signal.signal(signum, _signal.SIG_DFL)
        posix.kill(posix.getpid(), signum)
        posix._exit(128 + signum)

    def ignore(_signum: int, _frame: object) -> None:
        pass  # the read of the exec fifo goes on (PEP 475)

    previous = {sig: _signal.signal(sig, die_of) for sig in FATAL_SIGNALS}
    return previous | {sig: _signal.signal(sig, ignore) for sig in IGNORED_SIGNALS}


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
    channel.lend(fd)
    channel.send("seccomp", fd=fd)
    channel.expect("ok")
    posix.close(fd)


def _ready_to_exec(channel: Channel, seccomp_fd: int | None) -> None:
    """Tell P that execve comes next (the pipe closes when it succeeds); a seccomp listener fd
    must stay open until P has copied it."""
    _send_ready(channel, seccomp_fd, execs=True)
    if seccomp_fd is not None:
        channel.expect("ok")


def _send_ready(channel: Channel, seccomp_fd: int | None, **fields: object) -> None:
    if seccomp_fd is not None:
        channel.lend(seccomp_fd)
    channel.send("ready", seccomp_fd=seccomp_fd, **fields)


def _open_terminal(channel: Channel, process: Process, root: str | None) -> None:
    """A pty from the container's /dev/ptmx (under root before pivot_root); P copies the
    master out; the slave becomes stdio (fd 0 from now on) and controlling terminal."""
    from galley.oci.console import open_pty_here, take_console  # noqa: PLC0415

    master, slave = open_pty_here(process.get("consoleSize"), root)
    channel.lend(master)
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
    _set_own_oom_score(spec.get("process", {}).get("oomScoreAdj"))
    if plan.needs_fork:
        child = posix.fork()
        if child:
            channel.send("pid", pid=child)
            posix._exit(0)
    else:  # this is the container's process; forked into its pid namespace, it reads 1 as
        channel.send("pid", pid=None if made else posix.getpid())  # its pid: P knows the real one
    return deferred


# A P that is not root (rootless) may not open a non-dumpable process's /proc files, so it
# cannot write our oom_score_adj as root's P does ("pid"): we write our own (the container's
# pid 1, if we fork it, inherits it), on a file opened while we were still dumpable.
_oom_score_fd = -1


def _open_oom_score() -> None:
    global _oom_score_fd  # noqa: PLW0603 - one file for the stage's life
    _oom_score_fd = posix.open("/proc/self/oom_score_adj", posix.O_WRONLY | posix.O_CLOEXEC)


def _set_own_oom_score(score: int | None) -> None:
    global _oom_score_fd  # noqa: PLW0603
    if _oom_score_fd < 0:
        return
    try:
        if score is not None:
            posix.write(_oom_score_fd, str(score).encode())
    except OSError as err:
        raise StageError(f"process.oomScoreAdj {score}: {err.strerror}") from None
    finally:
        posix.close(_oom_score_fd)
        _oom_score_fd = -1


def _joined(channel: Channel) -> int:
    """P's "ok" to "pid": the container's pid as P sees it."""
    pid: int = channel.expect("ok")["pid"]
    return pid


def _join_cgroup(channel: Channel, deferred: int, state: State, *, cgroup_mount: bool) -> None:
    """Wait until P has moved this process into its cgroup, then make the deferred cgroup
    namespace (rooted there): before the first cgroup mount, any hook and any fork or exec."""
    import galley.oci.cgroupfs  # noqa: PLC0415 - while P is still at it

    state["pid"] = _joined(channel)
    joined = channel.expect("cgroup")
    if deferred and cgroup_mount:  # deferred: a new cgroup namespace, or nothing
        galley.oci.cgroupfs.note_host_view(own_unified=joined["unified"])
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
