"""Making the container's root "/": pivot_root, or MS_MOVE + chroot for --no-pivot.

pivot_root(".", ".") stacks the old root under the new one at the same place; it is then made
rslave (so detaching it cannot propagate to the host) and detached with MNT_DETACH. --no-pivot
cannot detach the old root, so, as runc does, it first unmounts (or covers with a read-only
tmpfs) the proc and sysfs mounts a chroot would leave reachable, then moves the root onto "/".
"""

from __future__ import annotations

import posix
import stat

from galley.kernel import mount as k
from galley.kernel import pathnames


def pivot_into(path: str) -> None:
    """pivot_root(".", ".") inside path, then detach the old root stacked underneath."""
    old_root = posix.open("/", posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
    new_root = posix.open(path, posix.O_DIRECTORY | posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        posix.fchdir(new_root)
        k.pivot_root(".", ".")
        posix.fchdir(old_root)
        # Keep the unmount below from propagating to the host's mounts.
        k.mount(None, ".", None, k.MS_SLAVE | k.MS_REC)
        k.umount(".", k.MNT_DETACH)
        posix.chdir("/")
    finally:
        posix.close(old_root)
        posix.close(new_root)


def move_root(path: str) -> None:
    """--no-pivot: hide the host's proc and sysfs mounts, MS_MOVE the root onto "/", chroot."""
    for mountpoint in reversed(_host_kernel_mounts(path)):
        try:
            k.umount(mountpoint, k.MNT_DETACH)
        except OSError:
            k.mount("tmpfs", mountpoint, "tmpfs", k.MS_RDONLY)
    posix.chdir(path)
    k.mount(path, "/", None, k.MS_MOVE)
    posix.chroot(".")
    posix.chdir("/")


def chroot_into(root_fd: int) -> None:
    """A container in the host's mount namespace: chroot only, into the directory root_fd is
    (its rootfs clone, whatever its path shows now; see galley.oci.hostmounts)."""
    posix.fchdir(root_fd)
    posix.chroot(".")
    posix.chdir("/")


def _host_kernel_mounts(root: str) -> list[str]:
    """proc and sysfs mounts outside root: what a chroot would still leave reachable."""
    found = []
    # A mount namespace joined by path is a container's: its mount points are any bytes.
    for line in pathnames.read_text("/proc/self/mountinfo", "surrogateescape").split("\n"):
        fields, _, rest = line.partition(" - ")
        if not rest:  # the end
            continue
        where = fields.split()[4]
        if rest.split()[0] in {"proc", "sysfs"} and not (where + "/").startswith(root + "/"):
            found.append(where)
    return found


def reopen_dev_null() -> None:
    """stdio pointing at the host's /dev/null is moved to the container's, as runc does."""
    try:
        fd = posix.open("/dev/null", posix.O_RDWR | posix.O_CLOEXEC)
    except OSError:
        return
    null = posix.fstat(fd)
    for stdio in (0, 1, 2):
        try:
            st = posix.fstat(stdio)
        except OSError:
            continue
        same_device = _node(st) == _node(null)  # a block device of its numbers is another
        if same_device and (st.st_dev, st.st_ino) != (null.st_dev, null.st_ino):
            posix.dup2(fd, stdio)
    posix.close(fd)


def _node(st: posix.stat_result) -> tuple[int, int]:
    """What a device node opens: its type (character or block) and its numbers."""
    return stat.S_IFMT(st.st_mode), st.st_rdev
