"""Mount trees the host's root makes for a container before its stage enters the
container's user namespace, for rootfs.Rootfs to attach inside it: idmapped binds (only the
host's user namespace may idmap a host filesystem), every bind of a container with a user
namespace of its own (BindCloner: its root could not reach a source the host's root can),
and the sysfs and mqueue of namespaces it joins rather than creates (premade_filesystems).
Each is a detached tree fd keyed by its mounts[] index.
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, os_error_text
from galley.kernel import mount as k
from galley.oci import mounts

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from galley.kernel import unixsock
    from galley.oci.spec import Mount, Spec


# A fresh sysfs (mqueue) shows the network (IPC) namespace of the process that makes it, and
# the kernel lets only a process with CAP_SYS_ADMIN over that namespace's owner make one.
FOLLOWS_NAMESPACE = {"sysfs": "network", "mqueue": "ipc"}


def idmapper(entry: Mount, spec: Spec) -> Callable[[int], None] | None:
    """For an idmapped bind, what idmaps the detached tree; None for a plain bind."""
    if not {"idmap", "ridmap", "uidMappings", "gidMappings"} & {*entry, *entry.get("options", [])}:
        return None
    from galley.oci import idmap  # noqa: PLC0415 - rarely needed

    mappings = idmap.mappings_for(entry, spec)
    if mappings is None:
        return None
    uids, gids = mappings
    # `idmap` maps the bind's own mount, `ridmap` its submounts too; an rbind of the tree
    # copies its submounts either way (runtime-spec; runc: "child mounts are not remapped")
    recursive = "ridmap" in entry.get("options", [])
    return lambda tree: idmap.apply_idmap(tree, uids, gids, recursive=recursive)


def binds_to_clone(spec: Spec) -> bool:
    """Whether every bind is cloned by the host's root (BindCloner): the container has binds,
    a user namespace of its own and a new mount namespace (else only idmapped binds are),
    and we are root. A caller that is not root could not enter the container's mount
    namespace from outside its user namespace, and needs no help: the container's root is
    that caller, and reaches what it reaches."""
    if posix.geteuid() != 0:
        return False
    linux = spec.get("linux", {})
    paths_of = {ns.get("type"): ns.get("path") for ns in linux.get("namespaces", [])}
    if not ("user" in paths_of and "mount" in paths_of and not paths_of["mount"]):
        return False
    return any(
        m.get("type") == "bind" or mounts.MountOptions(m.get("options", [])).is_bind
        for m in spec.get("mounts", [])
    )


def _bind_trees(spec: Spec, bundle: str, *, every_bind: bool) -> Iterator[tuple[int, int]]:
    """(mounts[] index, tree fd) of each bind cloned here; an idmapped bind that cannot be
    cloned raises (a plain one is left to the stage, which reports it). The caller owns
    each fd as soon as it is yielded."""
    for index, entry in enumerate(spec.get("mounts", [])):
        options = mounts.MountOptions(entry.get("options", []))
        if entry.get("type") != "bind" and not options.is_bind:
            continue
        recursive = bool(options.flags & k.MS_REC)
        prepare = idmapper(entry, spec)
        if prepare is None and not every_bind:
            continue
        source = mounts.source_path(bundle, entry.get("source", ""))
        if prepare is not None and posix.geteuid() != 0:
            raise FailedPrecondition(
                f"mounts[{index}] {entry.get('destination', '')!r}: an idmapped mount needs"
                " root: only the host's root may idmap a host filesystem (galley-runc is"
                " not root)"
            )
        try:
            tree = mounts.clone_tree(source, options, recursive=recursive, prepare=prepare)
        except OSError as err:
            if prepare is None:
                continue
            raise mounts.failure(index, entry, err) from err
        yield index, tree


def prebuild_binds(spec: Spec, bundle: str) -> dict[int, int]:
    """Idmapped bind trees cloned before the stage enters the container's namespaces, as
    the host's root (only the host's user namespace may idmap a host filesystem): {mounts[]
    index: tree fd}. With a user namespace of the container's own, none: BindCloner clones
    every bind then, from inside the container's mount namespace."""
    trees: dict[int, int] = {}
    if binds_to_clone(spec):
        return trees
    try:
        for index, tree in _bind_trees(spec, bundle, every_bind=False):
            trees[index] = tree
    except BaseException:
        for tree in trees.values():
            posix.close(tree)
        raise
    return trees


def premade_filesystems(spec: Spec) -> dict[int, int]:
    """The sysfs and mqueue mounts of a container with a user namespace of its own and a
    network (IPC) namespace it does not create: {mounts[] index: tree fd}. The stage makes
    them as the host's root once it is in the container's other namespaces and before it
    enters the new user namespace, whose root the kernel would refuse them: a namespace the
    container joins or shares is owned by another user namespace (runc 1.1 fails there; a
    bind of the host's /sys would show the host's network devices). One that cannot be made
    here is left to the mount itself, which reports the failure."""
    created = {
        entry.get("type"): not entry.get("path")
        for entry in spec.get("linux", {}).get("namespaces", [])
    }
    trees: dict[int, int] = {}
    if created.get("user") is not True:
        return trees
    try:
        for index, entry in enumerate(spec.get("mounts", [])):
            kind = entry.get("type", "")
            if kind not in FOLLOWS_NAMESPACE or created.get(FOLLOWS_NAMESPACE[kind]):
                continue
            options = mounts.MountOptions(entry.get("options", []))
            if options.is_bind or options.flags & k.MS_REMOUNT:
                continue
            try:
                trees[index] = mounts.new_filesystem(
                    kind, entry.get("source", ""), options.flags, options.data
                )
            except OSError:
                continue
    except BaseException:
        for tree in trees.values():
            posix.close(tree)
        raise
    return trees


class BindCloner:
    """In a container with a user namespace of its own, every bind is cloned by the host's
    root (runc 1.1 opens the sources first): its root could not reach a source below a
    directory that only the host's root may search (a kubelet's 0750 pod directories).

    Cloned from inside the container's mount namespace, as runc's parent opens them there:
    that namespace is a copy made for a less privileged user namespace, so the kernel has
    locked its mounts, and a recursive bind keeps its submounts locked (MNT_LOCKED) — the
    container's root can neither unmount one to see the host's files under it nor reveal
    them with a non-recursive bind. A clone made in the host's namespace would carry no such
    lock. So a helper is forked before the stage enters the namespaces (it keeps the host's
    credentials), joins the new mount namespace when trees() sends it, and sends back the
    trees (SCM_RIGHTS)."""

    def __init__(self, spec: Spec, bundle: str) -> None:
        # Imported here, not with the module: _socket costs the create stage ~0.3 ms, and
        # only a container with a user namespace and binds needs it. Imported before the
        # stage enters any namespace; the methods below find it in sys.modules.
        from galley.kernel import unixsock  # noqa: PLC0415

        ours, theirs = unixsock.pair(unixsock.SOCK_SEQPACKET)
        self.sock = ours
        self.pid = posix.fork()
        if self.pid == 0:  # pragma: no cover - the helper: ends in _exit
            status = 1
            try:
                ours.close()
                keep = theirs.fileno()
                posix.closerange(3, keep)  # P's pipes: the helper must not hold them open
                posix.closerange(keep + 1, 1 << 16)
                _serve_binds(theirs, spec, bundle)
                status = 0
            finally:
                posix._exit(status)
        theirs.close()

    def trees(self) -> dict[int, int]:
        """The trees, once the stage is in the container's mount namespace."""
        trees: dict[int, int] = {}
        try:
            self._receive(trees)
        except BaseException:
            for tree in trees.values():
                posix.close(tree)
            raise
        finally:
            self.close()
        return trees

    def _receive(self, trees: dict[int, int]) -> None:
        from galley.kernel import unixsock  # noqa: PLC0415 - loaded by __init__

        mntns = posix.open("/proc/thread-self/ns/mnt", posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            unixsock.send_fds(self.sock, b"mnt", [mntns])
        finally:
            posix.close(mntns)
        while True:
            data, fds = unixsock.recv_fds(self.sock, 4096, 1)
            if data and fds:
                trees[int(data)] = fds[0]
                continue
            for fd in fds:
                posix.close(fd)
            if data == b".":
                return
            if data.startswith(b"!"):  # the helper's error, in its words
                raise FailedPrecondition(data[1:].decode(errors="replace"))
            raise FailedPrecondition("binds: the host's helper exited")

    def close(self) -> None:
        """Let the helper go (it exits on end of file) and reap it."""
        if self.sock.fileno() >= 0:
            self.sock.close()
        try:
            posix.waitpid(self.pid, 0)
        except ChildProcessError:  # already reaped
            pass


def _serve_binds(sock: unixsock.Socket, spec: Spec, bundle: str) -> None:  # pragma: no cover
    """The helper: join the mount namespace it is sent, clone every bind there, send them."""
    from galley.kernel import ns, unixsock  # noqa: PLC0415

    _, fds = unixsock.recv_fds(sock, 16, 1)
    if not fds:
        return  # the stage gave up before its namespaces
    try:
        ns.setns(fds[0], ns.CLONE_NEWNS, "the container's mount namespace")
    except OSError as err:
        sock.send(f"!binds: joining the container's mount namespace: {os_error_text(err)}".encode())
        return
    finally:
        posix.close(fds[0])
    try:
        for index, tree in _bind_trees(spec, bundle, every_bind=True):
            try:
                unixsock.send_fds(sock, str(index).encode(), [tree])
            finally:
                posix.close(tree)
    except Exception as err:  # the stage reports it (an idmap's mappings too)
        sock.send(f"!{err}".encode())
        return
    sock.send(b".")
