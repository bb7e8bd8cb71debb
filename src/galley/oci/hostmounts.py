"""A container that inherits the runtime's mount namespace, and the mounts it leaves there.

When linux.namespaces lists no "mount", the runtime-spec says the container inherits the
runtime's mount namespace. Its root filesystem is then built in that namespace, as runc
builds it, but on a clone: the stage clones the rootfs's mount tree (open_tree), attaches
the clone on a directory of its own in the container's state directory (ROOTFS_MOUNT_POINT: never
on the rootfs path, which containerd's overlay or another container may use too), makes it
private (so nothing mounted inside it propagates anywhere, and the host's own mounts keep
their propagation), mounts every mounts[] entry and /dev inside it, and chroot()s into it
by its fd (pivot_root would replace the host's root). The host's root directory itself is
refused as such a rootfs. maskedPaths, readonlyPaths, rootfsPropagation and user
namespaces need a mount namespace (validation).

Unlike runc, galley takes those mounts down again, and only those. Before attaching the
clone the stage tells P its mount id, and P records it with the path in the state
directory (ROOTFS_RECORD) before the stage goes on: `delete`, a failed create and a
`delete --force` after a killed create detach that mount, and only while it is still the
topmost one on its mount point; everything the container mounted sits inside it. Mount
ids are reused once free, but nothing but galley mounts on that private directory.

A chroot is all that separates such a container from the host's files: a process with
CAP_SYS_CHROOT can leave it. That is what asking for no mount namespace means.
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, InvalidArgument
from galley.kernel import pathnames
from galley.oci.state import ROOTFS_MOUNT_POINT, ROOTFS_RECORD, write_private

TYPE_CHECKING = False  # not `from typing`: it costs milliseconds per command
# galley.kernel.mount is imported where a mount is made or removed: every delete (and every
# create's P) asks inherits_mount_namespace() and check(), and its ctypes layer costs ~1 ms.

if TYPE_CHECKING:
    from galley.oci.spec import Spec


def make_mount_point(state_dir: str) -> str:
    """In P, before the stage starts: the directory the rootfs clone will be attached on."""
    path = pathnames.join(state_dir, ROOTFS_MOUNT_POINT)
    posix.mkdir(path, 0o700)
    return path


def inherits_mount_namespace(spec: Spec) -> bool:
    """Whether the container shares the runtime's mount namespace (no "mount" entry)."""
    namespaces = spec.get("linux", {}).get("namespaces", [])
    return not any(entry.get("type") == "mount" for entry in namespaces)


def top_mount_id(path: str) -> int:
    """The id of the topmost mount on path (what a lookup of path reaches)."""
    from galley.kernel.mount import mount_id  # noqa: PLC0415

    fd = posix.open(path, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        return mount_id(fd)
    finally:
        posix.close(fd)


def clone_root(path: str) -> int:
    """In the stage: a private, detached clone of the mount tree at path; its fd."""
    st, host_root = posix.stat(path), posix.stat("/")
    if (st.st_dev, st.st_ino) == (host_root.st_dev, host_root.st_ino):
        raise InvalidArgument(
            f"root.path: {path!r} is the host's root directory, which a container without "
            "a mount namespace cannot use as its own"
        )
    from galley.kernel import mount as k  # noqa: PLC0415

    flags = k.OPEN_TREE_CLONE | k.OPEN_TREE_CLOEXEC | k.AT_RECURSIVE
    tree = k.open_tree(k.AT_FDCWD, path, flags)
    try:
        k.mount_setattr(tree, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE, propagation=k.MS_PRIVATE)
    except BaseException:
        posix.close(tree)
        raise
    return tree


def attach(tree: int, path: str) -> None:
    """In the stage, once P has recorded the clone: attach it on path, then make it private
    again (attached under a shared mount, the kernel makes the whole tree shared)."""
    from galley.kernel import mount as k  # noqa: PLC0415

    k.move_mount(tree, "", k.AT_FDCWD, path, k.MOVE_MOUNT_F_EMPTY_PATH)
    k.mount_setattr(tree, "", k.AT_EMPTY_PATH | k.AT_RECURSIVE, propagation=k.MS_PRIVATE)


def record(state_dir: str, path: str, mount: int) -> None:
    """In P, before the stage attaches its clone: note which mount to detach later."""
    from galley.oci import jsonfast  # noqa: PLC0415

    record = jsonfast.dumps({"path": path, "mount_id": mount})
    write_private(pathnames.join(state_dir, ROOTFS_RECORD), record)


def release(state_dir: str) -> None:
    """Detach the container's rootfs clone, if it is the topmost mount on its mount point
    (nothing recorded, or nothing mounted there: nothing to do). FailedPrecondition, from
    check(), when something else is mounted there."""
    recorded = check(state_dir)
    if recorded is not None:
        from galley.kernel import mount as k  # noqa: PLC0415

        k.umount(recorded, k.MNT_DETACH)


def check(state_dir: str) -> str | None:
    """The mount point of the container's rootfs clone when the clone is attached there as
    recorded, else None (nothing recorded or mounted). FailedPrecondition when something
    else is mounted there: another mount namespace's copy of the clone (a delete run from
    elsewhere than the create), which galley must neither detach nor remove, nor kill the
    container for."""
    from galley.oci import jsonfast  # noqa: PLC0415

    try:
        with open(pathnames.join(state_dir, ROOTFS_RECORD), "rb") as f:
            recorded = jsonfast.loads(f.read())
        path, mount = str(recorded["path"]), int(recorded["mount_id"])
        top = top_mount_id(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if top == mount:
        return path
    if top != top_mount_id(state_dir):
        raise FailedPrecondition(
            f"{path}: the container's root is mounted there, but not as the create that made "
            "it recorded (run from another mount namespace?): it was left as it is"
        )
    return None
