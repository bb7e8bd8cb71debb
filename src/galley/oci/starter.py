"""The last steps of a container's process in the init stage (create's and exec's): its
security settings in runc's order, its working directory and program, then execve.

galley.oci.init builds a ProcessStarter before it enters the container's namespaces (while
the host's files are visible, everything it needs is imported and compiled), calls prepare()
for what may still fail, and execute() last.
"""

from __future__ import annotations

import posix

from galley.kernel import pathnames
from galley.oci.channel import StageError, describe

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.spec import Process, Spec


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
        self.unmapped: tuple[int, int] | None = None  # what stat() says of an unmapped owner
        self.filter_first = False  # load the late filter before the trampoline (_load_trampoline)
        namespaces = spec.get("linux", {}).get("namespaces", [])
        if self.trampoline is not None and any(n.get("type") == "user" for n in namespaces):
            from galley.kernel.userns import overflow_ids  # noqa: PLC0415

            self.image = self.trampoline.reserve()  # before we enter the container's namespace
            self.unmapped = overflow_ids()
        # The host's cap_last_cap, read now: an exec's stage would otherwise read it from the
        # container's /proc, where a process with CAP_SYS_ADMIN can mount a file saying 1 and
        # every later exec would keep the capabilities past it (runc 1.1 reads it there).
        from galley.kernel.caps import last_cap  # noqa: PLC0415

        last_cap()
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
        if not self.env.get("HOME"):  # an empty one too, as runc (podman exec -u passes one)
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
        if late is not None and not self._trampoline_out_of_reach():
            self.filter_first, late = True, None  # execute() loads it, and no_new_privs
        program, flags = late.raw() if late is not None else (b"", 0)
        self.image = self.trampoline.load(
            fifo=self.fifo,
            no_new_privs=self.nnp and not self.filter_first,
            program=program,
            flags=flags,
            into=self.image,
        )

    def _trampoline_out_of_reach(self) -> bool:
        """Whether the container's processes, whatever their capabilities, cannot write into
        the trampoline's memory before it loads the late filter: true without a user
        namespace of the container's (the memory is then our namespace's), and with one that
        maps neither the owner nor the group of the reserved file (trampoline.reserve), which
        stat() then reports as the overflow ids. Where it maps them (we were not root, so the
        file stayed ours; a rootless container maps its runtime's id), the filter is loaded
        before the trampoline's execve instead: it then also binds the trampoline's own few
        calls (prctl, rt_sigaction, read and close of the exec fifo), as runc 1.1.5's init
        loads its filter before it opens the exec fifo (later runc releases load it after)."""
        if self.unmapped is None:
            return True
        st = posix.fstat(self.image)
        return st.st_uid == self.unmapped[0] or st.st_gid == self.unmapped[1]

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
        import _signal  # type: ignore[import-not-found]  # noqa: PLC0415 - `signal` imports enum

        from galley.kernel import proc  # noqa: PLC0415

        close_on_exec(3 + preserve_fds)  # before the late filter: it may forbid close_range
        for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):  # Python ignores these; exec keeps that
            _signal.signal(sig, _signal.SIG_DFL)
        # and no signal blocked: the mask survives execve, and a SIGTERM that a caller (or a
        # library user's thread) had blocked would never stop the container
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        self.set_rlimits()  # no Python work after, unless a filter came first
        if self.trampoline is not None:
            if self.fifo is not None:
                posix.set_inheritable(self.fifo, True)  # the trampoline reads and closes it
            if self.nnp:  # before this execve too: root's would raise permitted to bounding
                proc.set_no_new_privs()
            if self.filter_first and self.filter is not None:
                self.filter.load()
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
        raise _chdir_error(cwd, err) from None
    except OSError as err:
        raise _chdir_error(cwd, err) from None
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

                raise _exec_error(name, f"stat {name}: {go_error_text(err.errno or 0)}")
            continue
        if st.st_mode & 0o170000 == 0o100000 and posix.access(path, posix.X_OK):
            if "/" not in name and not path.startswith("/"):
                raise _exec_error(name, "cannot run executable found relative to current directory")
            return path
        if "/" in name:
            raise _exec_error(name, "permission denied")
    raise _exec_error(name, "executable file not found in $PATH")


def _exec_error(name: str, what: str) -> StageError:
    """runc's words for an args[0] it cannot run: Go's exec.Error, the name as %q quotes it."""
    from galley.errors import go_quote  # noqa: PLC0415 - on this error only

    return StageError(f"exec: {go_quote(name)}: {what}")


def _chdir_error(cwd: str, err: OSError) -> StageError:
    """runc's words for a process.cwd it cannot enter (the path as %q quotes it)."""
    from galley.errors import go_error_text, go_quote  # noqa: PLC0415 - on this error only

    why = go_error_text(err.errno or 0)
    return StageError(f"chdir to cwd ({go_quote(cwd)}) set in config.json failed: {why}")
