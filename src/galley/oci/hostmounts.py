"""A container that inherits the runtime's mount namespace, and the mounts it leaves there.

When linux.namespaces lists no "mount", the runtime-spec says the container inherits the
runtime's mount namespace. Its root filesystem is then built in that namespace, as runc
builds it: the stage binds the rootfs onto itself (recursively, then private, so that what
is mounted inside propagates nowhere), mounts every mounts[] entry and /dev under that bind,
and chroot()s into it (pivot_root would replace the host's root). The host's "/" keeps its
propagation, and maskedPaths, readonlyPaths and rootfsPropagation are refused (validation).

Unlike runc, galley takes those mounts down again. The bind is the topmost mount on the
rootfs path, and everything the container mounted sits under it, so detaching it removes
them all. P notes the mount id of the topmost mount on the path before create, and that of
the bind once the stage is ready (a file in the state directory); `delete` detaches the
bind only while it is still that mount, and a failed create detaches whatever was stacked
on the path since it began.

A chroot is all that separates such a container from the host's files: a process with
CAP_SYS_CHROOT can leave it. That is what asking for no mount namespace means.
"""

from __future__ import annotations

import os

from galley.kernel import mount as k

TYPE_CHECKING = False  # not `from typing`: it costs milliseconds per command

if TYPE_CHECKING:
    from galley.oci.spec import Spec

RECORD = "rootfs-mount"  # in the container's state directory: the bind's mount id
MAX_UNDO = 16  # mounts stacked on the rootfs path by one failed create, at most


def inherits_mount_namespace(spec: Spec) -> bool:
    """Whether the container shares the runtime's mount namespace (no "mount" entry)."""
    namespaces = spec.get("linux", {}).get("namespaces", [])
    return not any(entry.get("type") == "mount" for entry in namespaces)


def top_mount_id(path: str) -> int:
    """The id of the topmost mount on path (what a lookup of path reaches)."""
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
            for line in info:
                if line.startswith(b"mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise OSError(f"no mnt_id in the fdinfo of {path}")


def record(state_dir: str, rootfs: str) -> None:
    """After create: note the id of the bind the stage left on rootfs."""
    with open(os.path.join(state_dir, RECORD), "x") as f:
        f.write(str(top_mount_id(rootfs)))


def release(state_dir: str, rootfs: str) -> None:
    """At delete: detach the container's bind, if it is still the topmost mount on rootfs."""
    try:
        with open(os.path.join(state_dir, RECORD)) as f:
            mount_id = int(f.read())
    except (FileNotFoundError, ValueError):
        return
    try:
        if top_mount_id(rootfs) == mount_id:
            k.umount(rootfs, k.MNT_DETACH)
    except FileNotFoundError:
        pass


def undo(rootfs: str, before: int) -> None:
    """After a failed create: detach what was stacked on rootfs since its mount id was before."""
    for _ in range(MAX_UNDO):
        try:
            if top_mount_id(rootfs) == before:
                return
            k.umount(rootfs, k.MNT_DETACH)
        except OSError:
            return
