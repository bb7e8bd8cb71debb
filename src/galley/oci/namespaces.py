"""The container's namespaces (linux.namespaces): which to join, which to create, in what order.

Order, as the kernel needs it:

    1. setns() into a user namespace given by path          (decides what may be joined next)
    2. setns() into every other namespace given by path, still with the caller's rights over
       their owners (as runc: from inside a new user namespace, joining one the host owns
       is refused)
    3. unshare(CLONE_NEWUSER) when a new one is asked for (just before, still the host's
       root, the stage makes what the root of that namespace may not: premade_filesystems
       in galley.oci.rootfs); P writes uid_map/gid_map (galley.oci.usermaps); we become root
       inside it
    4. unshare() every other new namespace at once; a new cgroup namespace must come after
       the process was moved into its cgroup, so the create stage defers it (galley.oci.init)
    5. new time namespace: write its offsets before any process lives in it
    6. pid and time namespaces (new or joined) hold only the caller's *children*: the init stage
       forks once more, and the child is the container's pid 1 -- unless P could fork the
       stage straight into the container's new pid namespace (pid_namespace_at_fork): then
       the stage is pid 1 itself

This module is imported by the init stage, so it imports nothing beyond posix and galley.kernel
(typing alone would cost ~12 ms of start-up there).
"""

from __future__ import annotations

import posix

from galley.kernel import ns, pathnames

TYPE_CHECKING = False  # not `from typing`: importing typing costs ~10 ms in the init stage

if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.spec import Spec, TimeOffset

CHILD_ONLY = ns.CLONE_NEWPID | ns.CLONE_NEWTIME


class NamespacePlan:
    """What to join (user first) and what to create, decided from the spec."""

    __slots__ = ("create", "join", "joined", "needs_fork", "new_user")

    def __init__(self, spec: Spec) -> None:
        self.join: list[tuple[str, str]] = []
        self.create = 0
        self.new_user = False
        for entry in spec.get("linux", {}).get("namespaces", []):
            kind = entry.get("type", "")
            flag = ns.NAMESPACES[kind][0]
            path = entry.get("path", "")
            if path:
                self.join.append((kind, path))
            elif kind == "user":
                self.new_user = True
            else:
                self.create |= flag
        self.join.sort(key=lambda item: item[0] != "user")
        joined = 0
        for kind, _ in self.join:
            joined |= ns.NAMESPACES[kind][0]
        self.joined = joined
        self.needs_fork = bool((self.create | joined) & CHILD_ONLY)

    def made_already(self, flags: int) -> None:
        """Namespaces the stage was forked into (P made them): nothing to create, and no fork
        for them."""
        self.create &= ~flags
        self.needs_fork = bool((self.create | self.joined) & CHILD_ONLY)


def pid_namespace_at_fork(spec: Spec) -> bool:
    """Whether P may fork the create stage straight into the container's new pid namespace, so
    that the stage is the container's pid 1 and needs no second fork: a new pid namespace, and
    neither a user namespace (the pid namespace must belong to it, and only the stage makes
    or joins it) nor a time namespace (it too takes a fork). Read before validation: any
    oddity in the config means no."""
    try:
        kinds = {entry.get("type"): entry.get("path") for entry in spec["linux"]["namespaces"]}
    except (KeyError, TypeError, AttributeError):
        return False
    return "pid" in kinds and not kinds["pid"] and not {"user", "time"} & kinds.keys()


def enter(
    plan: NamespacePlan,
    map_ids: Callable[[], None],
    offsets: dict[str, TimeOffset] | None,
    opened: Callable[[], None] | None = None,
    before_user: Callable[[], None] | None = None,
) -> None:
    """Steps 1-5 above; map_ids() asks P to write the id maps of a new user namespace, and
    before_user() runs just before it is made.

    Every path is opened before the first setns: after joining a mount namespace, /proc/<pid>
    paths would resolve in the container's /proc. opened() runs once they are (exec checks
    that they were its container's init's, not a new process's under a reused pid).
    """
    # Opened while we are the host's root: the kernel checks CAP_SYS_TIME with the opener's
    # credentials, and a non-dumpable process's /proc/self files belong to the host's root,
    # which the root of a user namespace of the container's own may not open for writing.
    offsets_fd = -1
    if plan.create & ns.CLONE_NEWTIME and offsets:
        offsets_fd = posix.open("/proc/self/timens_offsets", posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        _enter(plan, map_ids, opened, before_user)
        if offsets_fd >= 0:
            write_time_offsets(offsets_fd, offsets or {})
    finally:
        if offsets_fd >= 0:
            posix.close(offsets_fd)


def _enter(
    plan: NamespacePlan,
    map_ids: Callable[[], None],
    opened: Callable[[], None] | None,
    before_user: Callable[[], None] | None,
) -> None:
    fds = [
        (kind, path, posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)) for kind, path in plan.join
    ]
    try:
        if opened is not None:
            opened()
        if plan.new_user or any(kind == "user" for kind, _, _ in fds):
            drop_groups()  # the caller's groups: in there, setgroups may be denied
        for kind, path, fd in fds:  # the user namespace first: plan.join is sorted so
            ns.setns(fd, ns.NAMESPACES[kind][0], path)
            if kind == "user":
                become_root()
    finally:
        for _, _, fd in fds:
            posix.close(fd)
    if plan.new_user:
        if before_user is not None:
            before_user()
        ns.unshare(ns.CLONE_NEWUSER)
        if posix.geteuid() == 0:
            map_ids()
        else:
            _map_ids_rootless(map_ids)
        become_root()
    if plan.create:
        ns.unshare(plan.create)


def _map_ids_rootless(map_ids: Callable[[], None]) -> None:
    """map_ids() for a caller that is not root: P, which is not root either, may write our
    /proc files only as their owner, and a process that is not dumpable has root own them.
    Dumpable meanwhile, as runc's stage is: P is the same user, which owns all of it anyway."""
    from galley.kernel.proc import set_dumpable  # noqa: PLC0415 - imported by the stage

    set_dumpable(True)
    try:
        map_ids()
    finally:
        set_dumpable(False)


def become_root() -> None:
    """Take uid/gid 0 in a user namespace just entered (the mapped root), no extra groups."""
    posix.setresgid(0, 0, 0)
    posix.setresuid(0, 0, 0)
    drop_groups()


def drop_groups() -> None:
    """No supplementary groups. Left as they are where that is not ours to change: a user
    namespace whose setgroups is "deny", or a caller that is not root (rootless, as runc:
    its groups are its own, and show as the overflow gid inside)."""
    try:
        posix.setgroups([])
    except PermissionError:
        pass


def write_time_offsets(fd: int, offsets: dict[str, TimeOffset]) -> None:
    """Offsets of a new time namespace, written to our timens_offsets (fd) before any process
    lives in it."""
    lines = []
    for clock, offset in offsets.items():
        lines.append(f"{clock} {offset.get('secs', 0)} {offset.get('nanosecs', 0)}\n")
    try:
        posix.write(fd, "".join(lines).encode())
    except OSError as e:  # ERANGE: a clock would leave the kernel's range
        from galley.errors import FailedPrecondition  # noqa: PLC0415

        raise FailedPrecondition(f"linux.timeOffsets: the kernel refused them: {e.strerror}")


def paths(pid: int) -> dict[str, str]:
    """The /proc/<pid>/ns/* path of every namespace type the kernel has, by OCI type."""
    found = {}
    for kind, (_, name) in ns.NAMESPACES.items():
        path = f"/proc/{pid}/ns/{name}"
        if pathnames.lexists(path):
            found[kind] = path
    return found
