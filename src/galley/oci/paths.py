"""Resolving and creating paths strictly inside the container's root (openat2 RESOLVE_IN_ROOT).

Every path the runtime touches inside a rootfs is looked up relative to an fd on the root
directory, with the kernel treating that fd as "/": absolute symlinks, `..` and symlinks that
point at host paths all stay inside the root, and magic links (/proc/self/root and friends) are
refused. The result is an O_PATH fd; mounts go onto `/proc/self/fd/N` for that fd, so a symlink
swapped in after the lookup (CVE-2021-30465) cannot redirect the mount to the host.

Creating missing components walks from the root: each prefix is reopened through openat2, each
new directory is made with mkdirat relative to its parent's fd, and a dangling symlink met on
the way is followed (inside the root) rather than trusted, up to the kernel's 40 hops.
"""

from __future__ import annotations

import posix
import stat

from galley.errors import InvalidArgument
from galley.kernel import pathnames
from galley.kernel.mount import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, fd_path, openat2

RESOLVE = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
MAX_SYMLINK_HOPS = 40


def components(path: str) -> list[str]:
    """The components of a container path, without empty and '.' parts."""
    return [part for part in path.split("/") if part not in {"", "."}]


def clean(path: str) -> str:
    """A container path in canonical absolute form, lexically ('//dev/./x/..' -> '/dev');
    '..' stops at the root, as it does inside the container."""
    kept: list[str] = []
    for part in components(path):
        if part != "..":
            kept.append(part)
        elif kept:
            kept.pop()
    return "/" + "/".join(kept)


def open_in_root(root_fd: int, path: str, flags: int = posix.O_PATH) -> int:
    """Open path inside the root (symlinks followed within it); raises OSError when missing."""
    relative = "/".join(components(path)) or "."
    return openat2(root_fd, relative, flags | posix.O_CLOEXEC, RESOLVE)


def ensure_dir(root_fd: int, path: str, mode: int = 0o755) -> int:
    """An O_PATH fd on the directory path inside the root, created (with parents) if missing."""
    return _ensure(root_fd, components(path), mode, leaf_is_dir=True)


def ensure_file(root_fd: int, path: str, mode: int = 0o644) -> int:
    """An O_PATH fd on path inside the root, created as an empty file of this mode (its missing
    parents 0755) if missing."""
    parts = components(path)
    if not parts or parts[-1] == "..":
        raise InvalidArgument(f"path {path!r}: not a file name inside the container root")
    return _ensure(root_fd, parts, mode, leaf_is_dir=False)


def ensure_target(root_fd: int, path: str, *, is_dir: bool) -> int:
    """A mount target of the right kind: a directory, or a file for a file bind mount."""
    return ensure_dir(root_fd, path) if is_dir else ensure_file(root_fd, path)


def _ensure(root_fd: int, parts: list[str], mode: int, *, leaf_is_dir: bool) -> int:
    flags = posix.O_PATH | (posix.O_DIRECTORY if leaf_is_dir else 0)
    try:  # most targets exist: one lookup instead of one per prefix
        return openat2(root_fd, "/".join(parts) or ".", flags, RESOLVE)
    except FileNotFoundError:
        pass
    hops = made = 0  # symlinks followed; components made (a racing rmdir makes us redo one)
    while True:
        found = _walk(root_fd, parts, mode, leaf_is_dir=leaf_is_dir)
        if isinstance(found, int):
            return found
        if found is parts or len(found) < len(parts):  # made one, or "missing/.." dropped
            made += 1
        else:
            hops += 1
        # the bound on components grows with the path: a symlink may add a hundred of them
        if hops > 2 * MAX_SYMLINK_HOPS or made > 2 * len(found):
            raise OSError(
                40,
                "too many levels of symbolic links, or a path changing under us",
                "/" + "/".join(found),
            )
        parts = found


def _walk(root_fd: int, parts: list[str], mode: int, *, leaf_is_dir: bool) -> int | list[str]:
    """An fd on the whole path, or, after creating one missing component (or meeting a
    dangling symlink), the path to walk again."""
    parent = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC, dir_fd=root_fd)
    try:
        for index in range(len(parts)):
            want_dir = leaf_is_dir or index < len(parts) - 1
            flags = posix.O_PATH | (posix.O_DIRECTORY if want_dir else 0)
            try:
                current = openat2(root_fd, "/".join(parts[: index + 1]), flags, RESOLVE)
            except FileNotFoundError:
                end = _popped_at(parts, index)
                if end >= 0 and not _is_link(parent, parts[index]):
                    return parts[:index] + parts[end + 1 :]  # "new/..": nothing to make there
                leaf = index == len(parts) - 1  # parents are 0755, as runc's MkdirAll
                link = _create(parent, parts[index], mode if leaf else 0o755, is_dir=want_dir)
                return parts if link is None else _follow(parts, index, link)
            posix.close(parent)
            parent = current
        found, parent = parent, -1
        return found
    finally:
        if parent >= 0:
            posix.close(parent)


def _popped_at(parts: list[str], index: int) -> int:
    """Where a later ".." climbs back out of parts[index], or -1. parts[index] is missing, so
    everything under it is too and the span cancels lexically, as runc's SecureJoin has it
    ("/mnt/new/../b" makes /mnt/b and no /mnt/new)."""
    depth = 0
    for end in range(index, len(parts)):
        depth += -1 if parts[end] == ".." else 1
        if depth == 0:
            return end
    return -1


def _is_link(parent_fd: int, name: str) -> bool:
    """Whether name under parent_fd is a symlink (a dangling one resolves, as runc's SecureJoin
    resolves it; a plain missing name followed by ".." is dropped with it)."""
    try:
        posix.readlink(name, dir_fd=parent_fd)
    except OSError:
        return False
    return True


def _create(parent_fd: int, name: str, mode: int, *, is_dir: bool) -> str | None:
    """Make name under parent_fd; when a dangling symlink is in the way, return its target."""
    try:
        if is_dir:
            posix.mkdir(name, mode, dir_fd=parent_fd)
        else:
            flags = (
                posix.O_CREAT | posix.O_EXCL | posix.O_WRONLY | posix.O_NOFOLLOW | posix.O_CLOEXEC
            )
            posix.close(posix.open(name, flags, mode, dir_fd=parent_fd))
    except FileExistsError:
        try:
            return posix.readlink(name, dir_fd=parent_fd)
        except OSError:
            return None  # made concurrently by someone else: just look again
    return None


def _follow(parts: list[str], index: int, target: str) -> list[str]:
    """The path with parts[index] (a symlink) replaced by its target, resolved inside the root."""
    base = [] if target.startswith("/") else parts[:index]
    return base + components(target) + parts[index + 1 :]


def container_path(root_fd: int, fd: int) -> str:
    """The absolute path inside the root of what fd names (for checks and error messages)."""
    root = posix.readlink(fd_path(root_fd))
    here = posix.readlink(fd_path(fd))
    if here == root:
        return "/"
    prefix = root.rstrip("/") + "/"
    if not here.startswith(prefix):
        raise InvalidArgument(f"path {here!r} resolved outside the container root {root!r}")
    return "/" + here[len(prefix) :]


def is_directory(fd: int) -> bool:
    """Whether the fd names a directory."""
    return stat.S_ISDIR(posix.fstat(fd).st_mode)


def is_directory_path(path: str) -> bool:
    """Whether a host path is a directory; raises OSError when it cannot be looked at."""
    return stat.S_ISDIR(posix.stat(path).st_mode)


def remove_in_root(root_fd: int, path: str) -> None:
    """Unlink path (not a directory) inside the root; a missing path is fine."""
    parent = open_in_root(root_fd, pathnames.dirname(path.rstrip("/")) or "/")
    try:
        posix.unlink(pathnames.basename(path.rstrip("/")), dir_fd=parent)
    except FileNotFoundError:
        pass
    finally:
        posix.close(parent)


def symlink_in_root(root_fd: int, target: str, path: str) -> None:
    """Create the symlink path -> target inside the root (an existing entry is left alone)."""
    parent = ensure_dir(root_fd, pathnames.dirname(path.rstrip("/")) or "/")
    try:
        posix.symlink(target, pathnames.basename(path.rstrip("/")), dir_fd=parent)
    except FileExistsError:
        pass
    finally:
        posix.close(parent)
