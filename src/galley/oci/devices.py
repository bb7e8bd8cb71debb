"""The container's /dev: default and configured device nodes, ptmx, standard symlinks, console.

    /dev/null zero full random urandom tty   mknod 0666 root:root (runc's defaults), unless
                                             linux.devices names the same path
    linux.devices                            mknod with fileMode/uid/gid; inside a user namespace
                                             (or when mknod is refused) a bind of the host node
    /dev/ptmx -> pts/ptmx                    the container's own devpts instance (even when
                                             linux.devices names /dev/ptmx, as runc)
    /dev/fd -> /proc/self/fd, stdin stdout stderr -> /proc/self/fd/{0,1,2}
    /dev/core -> /proc/kcore                 when the host has /proc/kcore, as runc does
    /dev/console                             a bind of the console pty's slave, when there is one

Nothing here runs when /dev is itself a bind mount (the container then sees that /dev as is).
"""

from __future__ import annotations

import errno
import posix
import stat

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import mount as k
from galley.kernel import pathnames
from galley.oci import paths

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import Device, Mount

# runc's order (it shows in the container's mount table inside a user namespace).
DEFAULT_DEVICES: list[Device] = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
]

DEV_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)

_KINDS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def needs_dev_setup(mounts: list[Mount]) -> bool:
    """False when /dev is a bind mount (runc then creates no devices)."""
    for mount in mounts:
        if paths.clean(mount.get("destination", "")) != "/dev":
            continue
        options = mount.get("options", [])
        if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
            return False
    return True


def all_devices(configured: list[Device]) -> list[Device]:
    """The configured devices plus every default one whose path they do not name."""
    named = {paths.clean(device.get("path", "")) for device in configured}
    return list(configured) + [d for d in DEFAULT_DEVICES if d["path"] not in named]


def create_devices(root_fd: int, devices: list[Device], *, bind: bool) -> None:
    """Create each device node inside the root (umask 0, so fileMode is exact); /dev/ptmx is
    left to setup_ptmx, as runc leaves it (podman --privileged lists the host's: in a user
    namespace its bind would be a mount point that the symlink cannot replace)."""
    old_umask = posix.umask(0)
    try:
        for index, device in enumerate(devices):
            if paths.clean(device.get("path", "")) == "/dev/ptmx":
                continue
            try:
                create_device(root_fd, index, device, bind=bind)
            except OSError as err:
                raise FailedPrecondition(
                    f"device {device.get('path', '')!r}: {os_error_text(err)}"
                ) from err
    finally:
        posix.umask(old_umask)


def create_device(root_fd: int, index: int, device: Device, *, bind: bool) -> None:
    """One node: mknod (an existing node is kept), or a bind of the host's node; at the path
    cleaned, as runc's ("/dev/x/" is /dev/x)."""
    path = paths.clean(device.get("path", ""))
    if path == "/":
        raise InvalidArgument(
            f"linux.devices[{index}].path: {device.get('path')!r} is not a device path"
        )
    if bind:
        bind_host_device(root_fd, path)
        return
    kind = _KINDS.get(device.get("type", "c"))
    if kind is None:
        raise InvalidArgument(
            f"linux.devices[{index}].type: unknown device type {device.get('type')!r}"
        )
    parent = paths.ensure_dir(root_fd, pathnames.dirname(path))
    name = pathnames.basename(path)
    mode = (device.get("fileMode", 0o666) & 0o7777) | kind
    rdev = (
        0 if kind == stat.S_IFIFO else posix.makedev(device.get("major", 0), device.get("minor", 0))
    )
    try:
        posix.mknod(name, mode, rdev, dir_fd=parent)
        posix.chown(name, device.get("uid", 0), device.get("gid", 0), dir_fd=parent,
                 follow_symlinks=False)  # fmt: skip
    except FileExistsError:
        pass
    except PermissionError:
        bind_host_device(root_fd, path)
    finally:
        posix.close(parent)


def bind_host_device(root_fd: int, path: str) -> None:
    """Bind the host's node at path onto an empty file at the same path inside the root."""
    if not pathnames.lexists(path):  # podman's --device /dev/zero:/dev/z in a user namespace
        raise FileNotFoundError(
            errno.ENOENT,
            "the host has no node there to bind (a user namespace cannot make device nodes)",
        )
    target = paths.ensure_file(root_fd, path, 0o666)
    try:
        k.mount(path, k.fd_path(target), None, k.MS_BIND)
    finally:
        posix.close(target)


def setup_ptmx(root_fd: int) -> None:
    """/dev/ptmx as a symlink to the container's devpts instance."""
    paths.remove_in_root(root_fd, "/dev/ptmx")
    paths.symlink_in_root(root_fd, "pts/ptmx", "/dev/ptmx")


def create_symlinks(root_fd: int) -> None:
    """/dev/fd, /dev/stdin, /dev/stdout, /dev/stderr (and /dev/core when /proc/kcore exists)."""
    links = list(DEV_SYMLINKS)
    if pathnames.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    for target, link in links:
        paths.symlink_in_root(root_fd, target, link)


def bind_console(root_fd: int, console_path: str) -> None:
    """Bind the console pty's slave onto /dev/console (a 0666 file made for it)."""
    old_umask = posix.umask(0)
    try:
        target = paths.ensure_file(root_fd, "/dev/console", 0o666)
    finally:
        posix.umask(old_umask)
    try:
        k.mount(console_path, k.fd_path(target), None, k.MS_BIND)
    finally:
        posix.close(target)
