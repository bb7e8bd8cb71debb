"""The `cgroup` mount type: what the container sees at its cgroup mount (usually /sys/fs/cgroup).

    cgroup v2 only (unified)   cgroup2 mounted at the destination: with a cgroup namespace
                               rooted at the container's cgroup, without one the host's whole
                               hierarchy (as runc shows it, for docker's --cgroupns=host);
                               where the kernel refuses a fresh mount (no cgroup namespace
                               inside a user namespace, or the host's /sys bound in, whose
                               cgroup2 mount is the same one: EBUSY), a bind instead, of the
                               container's own cgroup directory with a cgroup namespace, of
                               the host's cgroup2 mount without one (runc's fallbacks); a
                               container without a cgroup (a caller that is not root, refused
                               one) gets an empty read-only tmpfs there instead, as in runc
    v1 or hybrid               a tmpfs at the destination (nosuid, nodev, noexec, as runc's
                               whatever the options say), then per v1 hierarchy a directory
                               named like the host's (cpu, memory, systemd, cpu,cpuacct...):
                               with a cgroup namespace a fresh `cgroup` mount of that hierarchy
                               (nosuid, nodev, noexec too), without one a bind of the
                               container's own cgroup directory in it;
                               symlinks for co-mounted controllers (cpu -> cpu,cpuacct); the tmpfs
                               made read-only last when the mount asks for `ro`

The init stage runs this after it has been moved into the container's cgroups, so
/proc/self/cgroup names the container's own directories.
"""

from __future__ import annotations

import posix
import stat

from galley.kernel import mount as k
from galley.kernel import pathnames
from galley.oci import paths
from galley.oci.mounts import (
    MountOptions,
    attach,
    bind_attrs,
    new_filesystem,
    propagate,
    set_attrs,
)

TYPE_CHECKING = False  # typing costs galley-runc milliseconds; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable

# runc 1.1 mounts the v1 tmpfs, and each fresh v1 hierarchy in a cgroup namespace, with these
# whatever the mount's options say (only "ro" and propagation come from them).
_V1_FLAGS = k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC

_SUPER_OPTIONS = frozenset({"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode"})


class Hierarchy:
    """One host cgroup mount: where, which part of the hierarchy, and its controllers."""

    __slots__ = ("controllers", "mountpoint", "options", "root", "version")

    def __init__(
        self, mountpoint: str, root: str, version: int, controllers: frozenset[str], options: str
    ) -> None:
        self.mountpoint = mountpoint
        self.root = root
        self.version = version
        self.controllers = controllers
        self.options = options  # the superblock options, minus rw/ro


def host_hierarchies() -> list[Hierarchy]:
    """The cgroup and cgroup2 mounts this process sees, from /proc/self/mountinfo, each
    hierarchy once: the first mount of it is the host's (a container without a network
    namespace already has the host's /sys, cgroups and all, bound into its root)."""
    found: list[Hierarchy] = []
    seen: set[tuple[int, frozenset[str]]] = set()
    for line in pathnames.read_text("/proc/self/mountinfo", "surrogateescape").split("\n"):
        fields, _, rest = line.partition(" - ")
        parts, tail = fields.split(), rest.split()
        if len(tail) < 3 or tail[0] not in {"cgroup", "cgroup2"}:
            continue
        options = {o for o in tail[2].split(",") if o.split("=")[0] not in _SUPER_OPTIONS}
        options = {o for o in options if "=" not in o or o.startswith("name=")}
        version = 2 if tail[0] == "cgroup2" else 1
        if (version, frozenset(options)) in seen:
            continue
        seen.add((version, frozenset(options)))
        sb_options = ",".join(o for o in tail[2].split(",") if o not in {"rw", "ro"})
        found.append(Hierarchy(_unescape(parts[4]), _unescape(parts[3]), version,
                               frozenset(options), sb_options))  # fmt: skip
    return found


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")


def own_cgroups() -> dict[frozenset[str], str]:
    """This process's cgroup per hierarchy (keyed by controller set; v2 is the empty set)."""
    own: dict[frozenset[str], str] = {}
    for line in pathnames.read_text("/proc/self/cgroup", "surrogateescape").split("\n"):
        if line:
            _, controllers, path = line.split(":", 2)
            own[frozenset(c for c in controllers.split(",") if c)] = path
    return own


def host_dir(hierarchy: Hierarchy, own: dict[frozenset[str], str]) -> str:
    """The host directory of this process's cgroup in a hierarchy."""
    key = frozenset() if hierarchy.version == 2 else hierarchy.controllers
    path = own.get(key, hierarchy.root)
    relative = pathnames.relpath(path, hierarchy.root) if path.startswith(hierarchy.root) else "."
    return pathnames.normpath(pathnames.join(hierarchy.mountpoint, relative))


_host_view: tuple[list[Hierarchy], dict[frozenset[str], str]] | None = None
_own_unified = True  # whether the container has a cgroup2 cgroup of its own


def note_host_view(*, own_unified: bool) -> None:
    """Read the cgroup mounts and this process's cgroups now, in the container's cgroups
    but before its new cgroup namespace: from inside that namespace both name paths from its
    root (/proc/self/cgroup says "/", the host's mounts "/../.."), so a bind of the
    container's own cgroup would then bind the host's whole hierarchy. The bind is what a
    cgroup mount falls back to where no fresh one is allowed: a user namespace without a
    network namespace has the host's /sys bound in, and cgroup2 mounted on the host's own
    cgroup2 mount is EBUSY. own_unified False: the container has no cgroup2 cgroup (a
    caller that is not root, refused one), and this process is still in its caller's."""
    global _host_view, _own_unified  # noqa: PLW0603 - one container per stage process
    _host_view = (host_hierarchies(), own_cgroups())
    _own_unified = own_unified


def mount_cgroup(
    root_fd: int, dest: str, options: MountOptions, *, cgroupns: bool, source: str
) -> None:
    """Mount the container's view of its cgroups at dest (see the module docstring); source
    is the mount's, which a fresh cgroup2 mount takes (runc's does; v1's are runc's own)."""
    hierarchies, own = _host_view or (host_hierarchies(), own_cgroups())
    v1 = [h for h in hierarchies if h.version == 1]
    target = paths.ensure_dir(root_fd, dest)
    try:
        if v1:
            _mount_v1_tmpfs(target, v1, own, options, cgroupns=cgroupns)
        else:
            unified = [h for h in hierarchies if h.version == 2]
            hierarchy = unified[0] if unified else None
            _mount_hierarchy(
                target,
                hierarchy,
                own,
                options,
                cgroupns=cgroupns,
                mounted=lambda: paths.open_in_root(root_fd, dest, posix.O_PATH),
                source=source,
            )
    finally:
        posix.close(target)


def _mount_v1_tmpfs(
    target: int,
    v1: list[Hierarchy],
    own: dict[frozenset[str], str],
    options: MountOptions,
    *,
    cgroupns: bool,
) -> None:
    """The tmpfs holding each v1 hierarchy, made detached and attached on the target fd: its
    own fd names it from then on, so dest is never looked up again (a process sharing a
    parent directory could have put something else there). It takes the mode of the
    directory it covers, as runc's tmpfs mounts do: sysfs's 555 for /sys/fs/cgroup, which a
    root without CAP_DAC_OVERRIDE cannot write to.

    The mount's propagation is the tmpfs's, given before the hierarchies are mounted in it, as
    runc gives it: a fresh hierarchy (a cgroup namespace) takes what the kernel gives a new
    mount there (shared under a shared tmpfs, else private); a bind of the host's directory
    gets it too (_mount_hierarchy). A recursive one is applied last, over all of them."""
    covered = stat.S_IMODE(posix.fstat(target).st_mode)
    tmpfs = new_filesystem("tmpfs", "tmpfs", _V1_FLAGS, "mode=755")
    try:
        attach(tmpfs, target)
        propagate(tmpfs, [change for change in options.propagation if not change & k.MS_REC])
        for hierarchy in v1:
            _mount_in_tmpfs(tmpfs, hierarchy, own, options, cgroupns=cgroupns)
        posix.chmod(".", covered, dir_fd=tmpfs)
        if options.flags & k.MS_RDONLY:
            set_attrs(tmpfs, k.MOUNT_ATTR_RDONLY, 0)
        propagate(tmpfs, [change for change in options.propagation if change & k.MS_REC])
    finally:
        posix.close(tmpfs)


def _mount_in_tmpfs(
    tmpfs: int,
    hierarchy: Hierarchy,
    own: dict[frozenset[str], str],
    options: MountOptions,
    *,
    cgroupns: bool,
) -> None:
    """One v1 hierarchy in the tmpfs just mounted: empty, and no process of the container
    exists yet, so its directories are made and opened directly, not resolved in the root."""
    name = pathnames.basename(hierarchy.mountpoint)
    posix.mkdir(name, 0o755, dir_fd=tmpfs)

    target = posix.open(name, _SUBDIR, dir_fd=tmpfs)
    try:
        _mount_hierarchy(target, hierarchy, own, options, cgroupns=cgroupns, mounted=None)
    finally:
        posix.close(target)
    for controller in sorted(hierarchy.controllers):
        if controller != name and "," in name and not controller.startswith("name="):
            try:
                posix.symlink(name, controller, dir_fd=tmpfs)  # cpu -> cpu,cpuacct
            except FileExistsError:
                pass


_SUBDIR = posix.O_PATH | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC


def _mount_hierarchy(
    target: int,
    hierarchy: Hierarchy | None,
    own: dict[frozenset[str], str],
    options: MountOptions,
    *,
    cgroupns: bool,
    mounted: Callable[[], int] | None,
    source: str = "cgroup2",
) -> None:
    """At target: a fresh mount of cgroup2 (whatever the namespaces, and where the host has
    no hierarchy) or of a v1 hierarchy in a cgroup namespace; else (a v1 hierarchy without a
    cgroup namespace, or a fresh mount the kernel refused) a bind of what the module
    docstring says, its attributes set while it is detached. The bind gets the mount's
    propagation, as runc's do; the fresh one too where mounted opens it (target names the
    directory it covers): the cgroup2 mount, which the propagation is for (runc 1.1's
    cgroup2 mount skips it). A fresh v1 hierarchy (mounted None) takes the tmpfs's."""
    flags = options.flags & ~(k.MS_BIND | k.MS_REC | k.MS_REMOUNT)
    if hierarchy is None or cgroupns or hierarchy.version == 2:
        # A cgroup2 mount made from the initial cgroup namespace re-applies its options
        # (nsdelegate, memory_recursiveprot) to the host's hierarchy: repeat the host's.
        fstype = "cgroup2"
        data = hierarchy.options if hierarchy is not None else None
        if hierarchy is not None and hierarchy.version == 1:
            flags = _V1_FLAGS | (flags & k.MS_RDONLY)
            fstype, data = "cgroup", ",".join(sorted(hierarchy.controllers))
            named = [c[5:] for c in hierarchy.controllers if c.startswith("name=")]
            source = named[0] if named else "cgroup"  # runc shows "systemd" for name=systemd
        try:
            k.mount(source, k.fd_path(target), fstype, flags, data)
        except OSError as err:
            if hierarchy is None or err.errno not in {1, 16}:  # EPERM, EBUSY
                raise
        else:
            if options.propagation and mounted is not None:
                fresh = mounted()
                try:
                    propagate(fresh, options.propagation)
                finally:
                    posix.close(fresh)
            return
    whole = hierarchy.version == 2 and not cgroupns
    if hierarchy.version == 2 and not whole and not _own_unified:
        # No cgroup of its own to bind: runc's bind of the cgroup it meant to make fails
        # (ENOENT), and it masks the destination instead. A bind of our cgroup would show
        # the caller's, the host's whole hierarchy where the caller is at its root.
        from galley.oci.masks import mask_directory  # noqa: PLC0415 - rootless only

        mask_directory(target)
        return
    bound = hierarchy.mountpoint if whole else host_dir(hierarchy, own)
    tree = k.open_tree(k.AT_FDCWD, bound, k.OPEN_TREE_CLONE | k.OPEN_TREE_CLOEXEC)
    try:
        set_attrs(tree, *bind_attrs(flags, options.clear))
        attach(tree, target)
        propagate(tree, options.propagation)
    finally:
        posix.close(tree)
