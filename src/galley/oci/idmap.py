"""Idmapped bind mounts (runtime-spec `idmap` / `ridmap`, with a mount's uid/gidMappings).

The kernel idmaps a mount through a user namespace: a file whose on-disk owner is N appears
owned by what N maps to in that namespace. A mapping {containerID: c, hostID: h, size: s}
therefore becomes the line "c h s" of a throwaway user namespace: on-disk c..c+s shows as host
h..h+s, which a container whose own user namespace maps c to h sees as c again.

    fork a child ── child: unshare(CLONE_NEWUSER), sends its pid as /proc numbers it, waits
    write /proc/<child>/uid_map and gid_map, open /proc/<child>/ns/user, let the child exit
    mount_setattr(tree, MOUNT_ATTR_IDMAP, userns_fd)   on the detached bind, before attaching

Setting MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN over the filesystem's owner (the host), so the
create stage idmaps these trees before it enters the container's user namespace
(galley.oci.hosttrees.prebuild_binds) and attaches them later, inside it.
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import mount as k

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import IDMapping, Mount, Spec


def mappings_for(entry: Mount, spec: Spec) -> tuple[list[IDMapping], list[IDMapping]] | None:
    """The (uid, gid) mappings an idmapped mount uses; None when the mount is not idmapped."""
    options = entry.get("options", [])
    wanted = "idmap" in options or "ridmap" in options
    uids, gids = entry.get("uidMappings", []), entry.get("gidMappings", [])
    if not (wanted or uids or gids):
        return None
    linux = spec.get("linux", {})
    uids = uids or linux.get("uidMappings", [])
    gids = gids or linux.get("gidMappings", [])
    if not uids or not gids:
        raise InvalidArgument(
            "idmapped mount needs uidMappings and gidMappings (or the container's)"
        )
    return uids, gids


def userns_fd(uids: list[IDMapping], gids: list[IDMapping]) -> int:
    """An fd on a new user namespace with these mappings (the process behind it has exited)."""
    from galley.kernel import ns  # noqa: PLC0415 - only idmapped mounts need it

    ready_r, ready_w = posix.pipe()
    done_r, done_w = posix.pipe()
    pid = posix.fork()
    if pid == 0:  # pragma: no cover - child
        posix.close(ready_r)
        posix.close(done_w)
        try:
            ns.unshare(ns.CLONE_NEWUSER)
            # Our pid as the mounted /proc numbers it (it may belong to an outer pid namespace).
            posix.write(ready_w, posix.readlink("/proc/self").encode())
            posix.read(done_r, 1)
        finally:
            posix._exit(0)
    posix.close(ready_w)
    posix.close(done_r)
    try:
        proc_pid = posix.read(ready_r, 32).decode()
        if not proc_pid.isdigit():
            raise FailedPrecondition("idmapped mount: could not create a user namespace")
        _write_map(proc_pid, "uid_map", uids)
        _write_map(proc_pid, "gid_map", gids)
        return posix.open(f"/proc/{proc_pid}/ns/user", posix.O_RDONLY | posix.O_CLOEXEC)
    finally:
        posix.close(ready_r)
        posix.close(done_w)
        posix.waitpid(pid, 0)


def _write_map(pid: str, name: str, mappings: list[IDMapping]) -> None:
    lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
    with open(f"/proc/{pid}/{name}", "w") as out:
        out.write(lines)


def apply_idmap(
    tree: int, uids: list[IDMapping], gids: list[IDMapping], *, recursive: bool
) -> None:
    """Idmap a detached tree (open_tree clone) with these mappings."""
    userns = userns_fd(uids, gids)
    try:
        flags = k.AT_EMPTY_PATH | (k.AT_RECURSIVE if recursive else 0)
        k.mount_setattr(tree, "", flags, attr_set=k.MOUNT_ATTR_IDMAP, userns_fd=userns)
    except PermissionError as err:
        # Only the host's user namespace may idmap a host filesystem: an init stage already in
        # the container's user namespace would need the mount prepared by the runtime outside.
        raise FailedPrecondition(
            f"idmapped mount: not permitted in this user namespace: {os_error_text(err)}"
        ) from err
    finally:
        posix.close(userns)
