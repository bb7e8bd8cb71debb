"""linux.maskedPaths and linux.readonlyPaths, applied inside the container after pivot_root.

    masked file        the container's /dev/null bound over it (reads empty, writes vanish)
    masked directory   an empty read-only tmpfs over it
    read-only path     a recursive bind of itself, read-only throughout (rro)
    missing paths      skipped, as runc does

Everything is resolved inside the root and done on fds (open_tree, fsmount, move_mount), so it
works even when the container has no /proc of its own.
"""

from __future__ import annotations

import posix
import stat

from galley.errors import FailedPrecondition, os_error_text
from galley.kernel import mount as k
from galley.oci import mounts, paths


def open_dev_null(root_fd: int) -> int:
    """The container's /dev/null (what masks files), checked to be the null device: bound over
    the masked files, another node (block device 1:3, a RAM disk; a FIFO; /dev/zero) would be
    what they show (CVE-2025-31133)."""
    try:
        fd = paths.open_in_root(root_fd, "/dev/null")
    except OSError as err:
        raise FailedPrecondition(
            f"linux.maskedPaths: the container has no /dev/null: {os_error_text(err)}"
        )
    st = posix.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != posix.makedev(1, 3):
        posix.close(fd)
        raise FailedPrecondition(
            "linux.maskedPaths: the container's /dev/null is not the null device (character"
            " device 1:3), which masks files: linux.devices may not give /dev/null another"
        )
    return fd


def mask_path(root_fd: int, path: str, null_fd: int) -> None:
    """A masked path: /dev/null bound over a file, an empty read-only tmpfs over a directory."""
    try:
        target = paths.open_in_root(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        if paths.is_directory(target):
            mask_directory(target)
        else:
            mounts.bind(null_fd, target, mounts.MountOptions([]), recursive=False)
    except OSError as err:
        raise FailedPrecondition(f"linux.maskedPaths {path!r}: {os_error_text(err)}") from err
    finally:
        posix.close(target)


def mask_directory(target: int) -> None:
    """An empty read-only tmpfs over the directory target (an O_PATH fd) names."""
    tree = k.fsmount("tmpfs", {"source": "tmpfs", "ro": None}, k.MOUNT_ATTR_RDONLY)
    try:
        mounts.attach(tree, target)
    finally:
        posix.close(tree)


def readonly_path(root_fd: int, path: str) -> None:
    """A read-only path: a recursive bind of itself, read-only throughout."""
    try:
        target = paths.open_in_root(root_fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        mounts.bind(target, target, mounts.MountOptions(["rbind", "rro"]), recursive=True)
    except OSError as err:
        raise FailedPrecondition(f"linux.readonlyPaths {path!r}: {os_error_text(err)}") from err
    finally:
        posix.close(target)


def make_readonly(root_fd: int, path: str) -> None:
    """Make the mount at path read-only (not its submounts)."""
    target = paths.open_in_root(root_fd, path)
    try:
        mounts.set_attrs(target, k.MOUNT_ATTR_RDONLY, 0)
    finally:
        posix.close(target)
