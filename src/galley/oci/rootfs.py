"""The container's root filesystem: mounts, /dev, pivot_root, masked and read-only paths.

setup_rootfs runs in the init stage, inside the container's new mount namespace, in this order
(runc's, so that hooks and the container see the same tree at the same moments):

    1. "/" made rslave (or linux.rootfsPropagation), the rootfs bind-mounted onto itself
    2. every mounts[] entry in order, each destination resolved inside the root (paths.py);
       one over "/" itself covers the root: the later ones land in it, pivot_root enters it;
       a tree the host's root made for an entry (hosttrees.py) is attached as it is
    3. /dev: device nodes, /dev/ptmx, /dev/fd and std* symlinks, /dev/console (devices.py)
    4. before_pivot(): the createContainer hooks, in the root as their working directory
    5. pivot_root(".", ".") and the old root detached, or with no_pivot MS_MOVE + chroot;
       process.cwd created when missing
       (A container without a mount namespace is built in the host's: galley.oci.hostmounts.)
    6. linux.sysctl, then read-only tmpfs mounts made so (kept writable until here, as
       runc's, for the mounts and directories made inside them), readonlyPaths (recursive
       read-only binds), maskedPaths (/dev/null over files, read-only tmpfs over
       directories), /dev read-only if asked, root.readonly, the final rootfsPropagation on
       the new "/"

Every failure raises a galley error whose one-line message names the config field.
"""

from __future__ import annotations

import posix
import stat

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import mount as k
from galley.kernel import pathnames
from galley.kernel.userns import in_user_namespace
from galley.oci import devices, lsm, masks, mounts, paths, pivot
from galley.oci.hosttrees import FOLLOWS_NAMESPACE, idmapper
from galley.oci.sysctl import apply_sysctl

__all__ = ["apply_sysctl", "setup_rootfs"]

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.spec import Mount, Spec


HOST_FALLBACKS = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}


class Rootfs:
    """The root being built: its host path, an fd on it, and what the spec asks of it."""

    def __init__(
        self,
        spec: Spec,
        bundle: str,
        trees: dict[int, int] | None = None,
        attach_at: str | None = None,
    ) -> None:
        self.spec = spec
        self.bundle = bundle
        self.attach_at = attach_at  # without a mount namespace: where the clone goes
        # by mounts[] index: prebuilt binds, and premade sysfs and mqueue filesystems
        self.trees = trees if trees is not None else {}
        self.path = pathnames.realpath(pathnames.join(bundle, spec.get("root", {}).get("path", "")))
        linux = spec.get("linux", {})
        kinds = {entry.get("type") for entry in linux.get("namespaces", [])}
        self.shares_host_mounts = "mount" not in kinds  # galley.oci.hostmounts
        self.cgroupns = "cgroup" in kinds
        self.namespace_kinds = kinds
        self.userns = "user" in kinds or in_user_namespace()
        bounding = (spec.get("process", {}).get("capabilities") or {}).get("bounding") or []
        self.may_remount = "CAP_SYS_ADMIN" in bounding
        self.propagation = propagation_flags(linux.get("rootfsPropagation", ""))
        self.dev_readonly = False
        self.readonly_later: list[tuple[int, str]] = []  # read-only tmpfs: (fd, dest), finish()
        # A mount's own propagation, set again after a recursive rootfsPropagation (finish())
        self.propagation_later: list[tuple[int, list[int]]] = []
        self.root_covered = False  # a mounts[] entry went over "/": reopen the root after it
        self.root_fd = -1

    def prepare(self, report_clone: Callable[[str, int], None] | None = None) -> None:
        """Step 1: propagation, then the root as a mount of its own (pivot_root needs one).
        Without a mount namespace, report_clone(path, mount id) runs before the root's clone
        is attached in the host's (galley.oci.hostmounts)."""
        try:
            is_dir = paths.is_directory_path(self.path)
        except OSError as err:
            raise InvalidArgument(f"root.path: {self.path!r}: {err.strerror}") from err
        if not is_dir:
            raise InvalidArgument(f"root.path: {self.path!r} is not a directory")
        # An unbindable root cannot be bound onto itself, and pivot_root refuses a shared new
        # root, a shared parent of it or a shared old "/": those mounts alone are made private
        # (in this namespace only) and the requested propagation is given to the new "/" at
        # the end (finish()). Under "rshared" the rest of the tree stays shared, so a bind with
        # "rshared" still joins the host's peer group (Kubernetes' Bidirectional propagation).
        if self.shares_host_mounts:
            self._prepare_in_host_namespace(report_clone)
            return
        unbindable = bool(self.propagation & k.MS_UNBINDABLE)
        shared = bool(self.propagation & k.MS_SHARED)
        initial = self.propagation or k.MS_SLAVE | k.MS_REC
        try:
            k.mount(None, "/", None, k.MS_SLAVE | k.MS_REC if unbindable else initial)
            if shared:
                for mountpoint in {"/", _mountpoint_of(pathnames.dirname(self.path))}:
                    k.mount(None, mountpoint, None, k.MS_PRIVATE)
            k.mount(self.path, self.path, None, k.MS_BIND | k.MS_REC)
            if shared or unbindable:
                k.mount(None, self.path, None, k.MS_PRIVATE)
        except OSError as err:
            raise FailedPrecondition(f"root.path {self.path!r}: {os_error_text(err)}") from err
        self.root_fd = posix.open(self.path, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)

    def _prepare_in_host_namespace(self, report_clone: Callable[[str, int], None] | None) -> None:
        """Step 1 without a mount namespace of the container's own: a private clone of the
        rootfs's mounts, attached on its path once P knows its id; "/" is left as it is."""
        from galley.oci import hostmounts  # noqa: PLC0415 - rarely needed

        try:
            tree = hostmounts.clone_root(self.path)
        except OSError as err:
            raise FailedPrecondition(f"root.path {self.path!r}: {os_error_text(err)}") from err
        target = self.attach_at
        if target is None:  # never the rootfs path: another container may use it too
            posix.close(tree)
            raise FailedPrecondition("root.path: no mount point for the rootfs clone")
        try:
            if report_clone is not None:
                report_clone(target, k.mount_id(tree))
            hostmounts.attach(tree, target)
        except OSError as err:
            posix.close(tree)
            raise FailedPrecondition(f"root.path {self.path!r}: {os_error_text(err)}") from err
        except BaseException:
            posix.close(tree)
            raise
        self.root_fd = tree  # the clone's root, whatever is mounted on its path later

    def mount(self, index: int, entry: Mount) -> None:
        """Step 2, one mounts[] entry."""
        options = mounts.MountOptions(entry.get("options", []))
        kind, source = entry.get("type", ""), entry.get("source", "")
        dest = entry.get("destination", "")
        try:
            if options.flags & k.MS_REMOUNT:
                self._remount(dest, options)
            elif kind == "cgroup":
                from galley.oci.cgroupfs import mount_cgroup  # noqa: PLC0415 - rarely needed

                mount_cgroup(self.root_fd, dest, options, cgroupns=self.cgroupns, source=source)
            elif options.is_bind or kind == "bind":
                self._bind(entry, mounts.source_path(self.bundle, source), options, index)
            else:
                self._filesystem_or_host_bind(entry, kind, source, options, index)
        except OSError as err:
            raise mounts.failure(index, entry, err) from err
        except (InvalidArgument, FailedPrecondition) as err:
            raise type(err)(f"{mounts.describe(index, entry)}: {err}") from err
        if options.propagation and self.propagation & k.MS_REC and self._propagates_root():
            fd = paths.open_in_root(self.root_fd, dest, posix.O_PATH)  # the mount just made
            self.propagation_later.append((fd, options.propagation))
        if self.root_covered:
            self._reopen_root()

    def _propagates_root(self) -> bool:
        """Whether finish() gives the new root the rootfsPropagation (shared, unbindable)."""
        return bool(self.propagation & (k.MS_SHARED | k.MS_UNBINDABLE))

    def _reopen_root(self) -> None:
        """After a mount over the root: the root is what now lies on top of its path (the
        later mounts land in it and pivot_root enters it, as in runc)."""
        self.root_covered = False
        fd = posix.open(self.path, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        posix.close(self.root_fd)
        self.root_fd = fd

    def _remount(self, dest: str, options: mounts.MountOptions) -> None:
        """`remount`: change the flags of the mount already at dest (made by an earlier entry)."""
        target = paths.open_in_root(self.root_fd, dest)
        try:
            if options.is_bind or not options.data:
                mounts.set_attrs(target, *options.bind_attrs())
            else:
                k.mount(None, k.fd_path(target), None, options.flags, options.data)
            mounts.set_attrs(target, options.rec_set, options.rec_clr, recursive=True)
            mounts.propagate(target, options.propagation)
        finally:
            posix.close(target)

    def _bind(
        self, entry: Mount, source: str, options: mounts.MountOptions, index: int = -1
    ) -> None:
        """A bind: the source tree cloned, its attributes set while detached, then attached (a
        tree prebuilt for this entry by prebuild_binds is attached as it is)."""
        tree = self.trees.pop(index, -1)
        if tree >= 0:
            is_dir = stat.S_ISDIR(posix.fstat(tree).st_mode)
        elif pathnames.exists(source):
            is_dir = pathnames.isdir(source)
        else:
            raise InvalidArgument(f"bind source {source!r} does not exist")
        dest = entry.get("destination", "")
        recursive = bool(options.flags & k.MS_REC)
        try:
            target = paths.ensure_target(self.root_fd, dest, is_dir=is_dir)
        except BaseException:
            if tree >= 0:
                posix.close(tree)
            raise
        try:
            self._check_target(target, "bind", source, dest)
            if tree < 0:
                prepare = idmapper(entry, self.spec)
                tree = mounts.clone_tree(source, options, recursive=recursive, prepare=prepare)
            mounts.attach_tree(tree, target, options)
        finally:
            posix.close(target)
            if tree >= 0:
                posix.close(tree)

    def _filesystem_or_host_bind(
        self, entry: Mount, kind: str, source: str, options: mounts.MountOptions, index: int
    ) -> None:
        """A fresh filesystem (premade_filesystems may have made it already). When galley-runc
        itself runs in a user namespace, a sysfs or mqueue of the network or IPC namespace
        the container shares with it may be refused: it becomes a recursive bind of ours,
        read-only all the way down (our /sys holds submounts that would otherwise come along
        writable: tracefs, cgroup hierarchies); not for a process that may hold
        CAP_SYS_ADMIN, which could remount them writable. A namespace of the config's own is
        never shown through ours."""
        try:
            self._filesystem(entry.get("destination", ""), kind, source, options, index)
        except PermissionError:
            host = HOST_FALLBACKS.get(kind)
            if (
                host is None
                or not self.userns
                or self.may_remount
                or FOLLOWS_NAMESPACE[kind] in self.namespace_kinds
            ):
                raise  # a process with CAP_SYS_ADMIN could remount the host's tree rw
            fallback = mounts.MountOptions([*entry.get("options", []), "rbind", "rro"])
            self._bind(entry, host, fallback)

    def _filesystem(
        self, dest: str, kind: str, source: str, options: mounts.MountOptions, index: int = -1
    ) -> None:
        """A fresh filesystem (tmpfs, proc, devpts, mqueue, sysfs, ...). mount(2) lands on the
        target resolved in the root; one that needs more done to it (a tmpfs takes the mode
        of the directory it covers, as runc's; tmpcopyup, recursive attributes, propagation)
        is made detached and attached once done, so that its destination is never looked up
        again (galley.oci.mounts.new_filesystem). A read-only tmpfs stays writable until
        finish(), as runc's: a later mount may need its destination made inside it. One made
        already for mounts[index] (premade_filesystems) is attached the same way."""
        flags = options.flags
        copy_up = kind == "tmpfs" and "tmpcopyup" in options.extensions
        if paths.clean(dest) == "/dev" and flags & k.MS_RDONLY:
            self.dev_readonly = True  # made read-only after the devices are created
            flags &= ~k.MS_RDONLY
        data = lsm.mount_data(options.data, kind, self.spec.get("linux", {}).get("mountLabel", ""))
        covered = None  # a tmpfs takes the mode of the directory it covers, as runc's does
        try:
            target = paths.open_in_root(self.root_fd, dest, posix.O_PATH | posix.O_DIRECTORY)
            covered = stat.S_IMODE(posix.fstat(target).st_mode) if kind == "tmpfs" else None
        except FileNotFoundError:
            target = paths.ensure_dir(self.root_fd, dest)
        try:
            self._check_target(target, kind, source, dest)
            # read-only once every mount is in: the mount, as runc remounts it at the end
            readonly = kind == "tmpfs" and bool(flags & k.MS_RDONLY)
            later = covered is not None or options.rec_set or options.rec_clr or readonly
            if not (later or copy_up or options.propagation or index in self.trees):
                k.mount(source, k.fd_path(target), kind or None, flags, data or None)
                return
            tree = self.trees.pop(index, -1)
            if tree < 0:
                fresh = flags & ~k.MS_RDONLY if readonly else flags
                tree = mounts.new_filesystem(kind, source, fresh, data)
            try:
                if covered is not None:
                    posix.chmod(".", covered, dir_fd=tree)
                if copy_up:
                    self._copy_up(target, tree)
                mounts.set_attrs(tree, options.rec_set, options.rec_clr, recursive=True)
                mounts.attach(tree, target)
                mounts.propagate(tree, options.propagation)
                if readonly:  # its own fd: whatever is mounted over dest later is not it
                    self.readonly_later.append((tree, dest))
                    tree = -1
            finally:
                if tree >= 0:
                    posix.close(tree)
        finally:
            posix.close(target)

    def _copy_up(self, target: int, tree: int) -> None:
        """tmpcopyup: fill the new tmpfs (still detached) from the directory it will cover."""
        from galley.oci.copyup import copy_tree  # noqa: PLC0415 - rarely needed

        under = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC, dir_fd=target)
        try:
            copy_tree(under, tree)
        finally:
            posix.close(under)

    def _check_target(self, target: int, kind: str, source: str, dest: str) -> None:
        """Refuse /proc's insides, proc or sysfs through a symlink or over the root, any mount
        over the root of a rootfs built in the host's mount namespace, and a destination the
        image's symlinks resolve to the root (the covering mount's source, a host directory,
        would get the container's device nodes, cwd and later mount points, made as root;
        runc fails such a mount too). Another mount whose destination is "/" covers the root,
        as runc's: what follows is built in it (_reopen_root)."""
        where = paths.container_path(self.root_fd, target)
        if where == "/":
            if paths.clean(dest) != "/":  # the image's symlink: the mount would be the root
                raise InvalidArgument(  # its /dev, cwd and later mounts made in the source
                    "destination resolves through a symlink to the container's root directory"
                )
            if self.shares_host_mounts or kind in {"proc", "sysfs"}:
                raise InvalidArgument("cannot mount over the container's root directory")
            self.root_covered = True
        if kind in {"proc", "sysfs"}:
            if where != paths.clean(dest):  # runc: "not a directory" for a symlinked /proc
                raise InvalidArgument(  # the end in runc's words
                    f"{kind} destination resolves through a symlink to {where!r}: "
                    "must be mounted on ordinary directory"
                )
            return
        mounts.check_proc_target(where, kind, source)

    def make_dev(self, console_path: str | None) -> None:
        """Step 3: device nodes and links, unless /dev is a bind mount."""
        linux = self.spec.get("linux", {})
        if devices.needs_dev_setup(self.spec.get("mounts", [])):
            wanted = devices.all_devices(linux.get("devices", []))
            devices.create_devices(self.root_fd, wanted, bind=self.userns)
            try:
                devices.setup_ptmx(self.root_fd)
                devices.create_symlinks(self.root_fd)
            except OSError as err:
                raise FailedPrecondition(f"/dev links: {os_error_text(err)}") from err
        if console_path is not None:
            try:
                devices.bind_console(self.root_fd, console_path)
            except OSError as err:
                raise FailedPrecondition(
                    f"process.terminal: /dev/console: {os_error_text(err)}"
                ) from err

    def enter(self, no_pivot: bool) -> None:
        """Step 5: make the root "/" (pivot_root, or MS_MOVE + chroot with no_pivot; only a
        chroot in the host's mount namespace)."""
        if self.shares_host_mounts:
            pivot.chroot_into(self.root_fd)
        elif no_pivot:
            pivot.move_root(self.path)
        else:
            pivot.pivot_into(self.path)

    def finish(self) -> None:
        """Step 6, after sysctl, in runc's order: read-only tmpfs mounts, /dev and root
        (its finalizeRootfs), then read-only paths, then masked paths; propagation. A masked
        file gets a bind of /dev/null as it is by then, so it carries that mount's flags
        (read-only when /dev or a read-only path made it so), as under runc."""
        linux = self.spec.get("linux", {})
        while self.readonly_later:
            tree, dest = self.readonly_later.pop(0)
            try:
                mounts.set_attrs(tree, k.MOUNT_ATTR_RDONLY, 0)
            except OSError as err:
                raise FailedPrecondition(f"read-only tmpfs {dest!r}: {os_error_text(err)}") from err
            finally:
                posix.close(tree)
        if self.dev_readonly:
            masks.make_readonly(self.root_fd, "/dev")
        if self.spec.get("root", {}).get("readonly"):
            mounts.set_attrs(self.root_fd, k.MOUNT_ATTR_RDONLY, 0)
        for path in linux.get("readonlyPaths", []):
            masks.readonly_path(self.root_fd, path)
        if linux.get("maskedPaths"):
            null_fd = masks.open_dev_null(self.root_fd)
            try:
                for path in linux["maskedPaths"]:
                    masks.mask_path(self.root_fd, path, null_fd)
            finally:
                posix.close(null_fd)
        if self._propagates_root():  # the mounts' own come after it, as they did under runc's
            mounts.propagate(self.root_fd, [self.propagation])
        while self.propagation_later:
            fd, changes = self.propagation_later.pop(0)
            try:
                mounts.propagate(fd, changes)
            finally:
                posix.close(fd)


CGROUP_TYPES = ("cgroup", "cgroup2")  # mounts that show the cgroup namespace


def setup_rootfs(
    spec: Spec,
    bundle: str,
    *,
    no_pivot: bool,
    console_path: str | None,
    before_pivot: Callable[[], None],
    join_cgroup: Callable[[], None] | None = None,
    trees: dict[int, int] | None = None,
    report_clone: Callable[[str, int], None] | None = None,
    attach_at: str | None = None,
) -> None:
    """Build the container's root inside the current (new) mount namespace and enter it.

    join_cgroup() is called once, before the first cgroup mount or else before before_pivot():
    the create stage builds the root while P moves it into its cgroup (without a mount
    namespace: first of all, then report_clone(); see galley.oci.hostmounts).
    """
    rootfs = Rootfs(spec, bundle, trees, attach_at)
    if rootfs.shares_host_mounts and join_cgroup is not None:
        join_cgroup()  # P's pending answers first: report_clone waits for one
        join_cgroup = None
    rootfs.prepare(report_clone)
    try:
        for index, entry in enumerate(spec.get("mounts", [])):
            if join_cgroup is not None and entry.get("type") in CGROUP_TYPES:
                join_cgroup()
                join_cgroup = None
            rootfs.mount(index, entry)
        rootfs.make_dev(console_path)
        if join_cgroup is not None:
            join_cgroup()
        posix.fchdir(rootfs.root_fd)  # the createContainer hooks start there, as runc's
        before_pivot()
        try:
            rootfs.enter(no_pivot)
        except OSError as err:
            raise FailedPrecondition(f"root.path {rootfs.path!r}: {os_error_text(err)}") from err
        pivot.reopen_dev_null()
        make_cwd(rootfs.root_fd, spec.get("process", {}).get("cwd", ""))
        apply_sysctl(spec)
        rootfs.finish()
    finally:
        posix.close(rootfs.root_fd)
        later = [fd for fd, _ in (*rootfs.readonly_later, *rootfs.propagation_later)]
        for tree in [*rootfs.trees.values(), *later]:
            posix.close(tree)  # left by a failure


def make_cwd(root_fd: int, cwd: str) -> None:
    """process.cwd is created inside the root when missing, as runc does (before read-only)."""
    if cwd:
        try:
            posix.close(paths.ensure_dir(root_fd, cwd))
        except OSError as err:
            raise FailedPrecondition(f"process.cwd {cwd!r}: {os_error_text(err)}") from err


def _mountpoint_of(path: str) -> str:
    """The mount point of the mount holding path."""
    while not pathnames.ismount(path):
        path = pathnames.dirname(path)
    return path


def propagation_flags(name: str) -> int:
    """linux.rootfsPropagation as mount(2) flags (0 when unset)."""
    if not name:
        return 0
    if name not in mounts.PROPAGATION_OPTIONS:
        raise InvalidArgument(f"linux.rootfsPropagation: unknown propagation {name!r}")
    return mounts.PROPAGATION_OPTIONS[name]
