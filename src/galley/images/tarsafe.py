"""Hostile-input checks for layer tars, and a directory walker that cannot be led outside its root.

A layer is untrusted input. Its entry names are checked before anything is written:

    absolute paths ("/etc/passwd")            refused
    ".." components ("a/../../x")             refused
    NUL bytes, components over 255 bytes,     refused
    paths over 4096 bytes
    "./a//b/."                                 normalised to ("a", "b")

and so is what a member says of itself that no file can be given (check_metadata): a uid or
gid outside [0, 2^32-2], a modification time that is no number or past what a nanosecond
time stamp holds, a device number past the kernel's 12-bit major and 20-bit minor, a symlink
target that is empty, holds a NUL or is PATH_MAX bytes or longer;

and everything is then written relative to directory file descriptors opened with O_NOFOLLOW,
one component at a time (as openat2's RESOLVE_NO_SYMLINKS would): a symlink planted by an
earlier entry (`evil -> /`) is never followed, so `evil/etc/passwd` is refused rather than
written through it. Hard-link targets go through the same walk, so a link can only name a
file already inside the tree.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import tarfile
from collections.abc import Callable, Sequence

from galley.errors import InvalidArgument

NAME_MAX = 255
PATH_MAX = 4096

ID_MAX = (1 << 32) - 2  # chown takes (uid_t)-1 as "leave the owner as it is"
DEV_MAJOR_MAX = (1 << 12) - 1  # the kernel's dev_t
DEV_MINOR_MAX = (1 << 20) - 1
TIME_MAX = (1 << 63) // 1_000_000_000 - 1  # seconds in an int64 of nanoseconds
CACHED_DIRS = 256

Parts = tuple[str, ...]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def clean_path(name: str, what: str = "layer entry") -> Parts:
    """The components of a tar member name, refusing names that could reach outside the root."""
    raw = os.fsencode(name)
    if b"\0" in raw:
        raise InvalidArgument(f"{what} {name!r} contains a NUL byte")
    if len(raw) > PATH_MAX:
        raise InvalidArgument(f"{what} name is {len(raw)} bytes long, over {PATH_MAX}")
    if name.startswith("/"):
        raise InvalidArgument(f"{what} {name!r} is an absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    for part in parts:
        if part == "..":
            raise InvalidArgument(f"{what} {name!r} climbs out of the layer with '..'")
        if len(os.fsencode(part)) > NAME_MAX:
            raise InvalidArgument(f"{what} {name[:80]!r}... has a component over {NAME_MAX} bytes")
    return parts


def check_metadata(member: tarfile.TarInfo, parts: Parts) -> None:
    """Refuse a member whose owner, time, device number or symlink target no file can have
    (galley.images.tarapply would otherwise fail on it with the system's words)."""
    where = f"layer entry {show(parts)!r}"
    for what, value in (("uid", member.uid), ("gid", member.gid)):
        if not 0 <= value <= ID_MAX:
            raise InvalidArgument(f"{where} has {what} {value}, out of range [0, {ID_MAX}]")
    if not math.isfinite(member.mtime) or abs(member.mtime) > TIME_MAX:
        raise InvalidArgument(f"{where} has modification time {member.mtime}, which is no time")
    if (member.ischr() or member.isblk()) and not (
        0 <= member.devmajor <= DEV_MAJOR_MAX and 0 <= member.devminor <= DEV_MINOR_MAX
    ):
        raise InvalidArgument(
            f"{where} is device {member.devmajor}:{member.devminor}, past the kernel's"
            f" largest, {DEV_MAJOR_MAX}:{DEV_MINOR_MAX}"
        )
    if member.issym():
        target = os.fsencode(member.linkname)
        if not target:
            raise InvalidArgument(f"{where} is a symlink with an empty target")
        if b"\0" in target:
            raise InvalidArgument(f"{where} is a symlink whose target contains a NUL byte")
        if len(target) >= PATH_MAX:
            raise InvalidArgument(
                f"{where} is a symlink whose target is {len(target)} bytes long, over"
                f" {PATH_MAX - 1}"
            )


def show(parts: Parts) -> str:
    """parts as a path for messages."""
    return "/".join(parts) or "."


class Root:
    """A directory tree written only through file descriptors, never following symlinks.

    Directory descriptors are cached by path (trim() bounds them); forget() drops those under
    a removed directory. Where template is set (galley.images.tarapply: the lower layers'
    directory that a new one covers, overlay), it gives the mode and owner of directories
    created implicitly, so that an upper directory does not hide its lower twin's attributes.
    """

    def __init__(self, path: str, lowers: Sequence[str] = ()) -> None:
        self.path = path
        self.fd = os.open(path, DIR_FLAGS)
        self.lowers = tuple(lowers)
        self._dirs: dict[Parts, int] = {(): self.fd}
        # the directory whose mode and owner a directory made implicitly takes, if any
        self.template: Callable[[Parts], os.stat_result | None] | None = None

    def close(self) -> None:
        """Close every descriptor."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def trim(self) -> None:
        """Close the cached descriptors (the root's aside) once there are CACHED_DIRS: a layer
        can hold tens of thousands of directories, and a process may open 1,024 files. Call
        it only where no descriptor this Root returned is still in use."""
        if len(self._dirs) > CACHED_DIRS:
            for key in [k for k in self._dirs if k]:
                os.close(self._dirs.pop(key))

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def directory(self, parts: Parts, *, create: bool = True, entry: Parts = ()) -> int:
        """The descriptor of directory parts (made on the way when create); never via a symlink."""
        cached = self._dirs.get(parts)
        if cached is not None:
            return cached
        parent = self.directory(parts[:-1], create=create, entry=entry or parts)
        name = parts[-1]
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            self._make_dir(parent, parts)
            fd = os.open(name, DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            kind = "a symlink" if self.is_symlink(parent, name) else "not a directory"
            raise InvalidArgument(
                f"layer entry {show(entry or parts)!r} goes through {show(parts)!r}, "
                f"which is {kind}"
            ) from None
        self._dirs[parts] = fd
        return fd

    def _make_dir(self, parent: int, parts: Parts) -> None:
        mode, owner = 0o755, None
        template = self.template(parts) if self.template is not None else None
        if template is not None:
            mode, owner = stat.S_IMODE(template.st_mode), (template.st_uid, template.st_gid)
        os.mkdir(parts[-1], mode, dir_fd=parent)
        os.chmod(parts[-1], mode, dir_fd=parent, follow_symlinks=False)
        if owner is not None:
            os.chown(parts[-1], *owner, dir_fd=parent, follow_symlinks=False)

    def parent(self, parts: Parts, *, create: bool = True) -> tuple[int, str]:
        """The descriptor of parts' parent directory and parts' last component."""
        if not parts:
            raise InvalidArgument("layer entry '.' cannot be replaced")
        return self.directory(parts[:-1], create=create, entry=parts), parts[-1]

    @staticmethod
    def is_symlink(dir_fd: int, name: str) -> bool:
        """True when name in dir_fd is a symlink."""
        try:
            return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
        except OSError:
            return False

    @staticmethod
    def lstat(dir_fd: int, name: str) -> os.stat_result | None:
        """lstat of name in dir_fd, or None when there is nothing."""
        try:
            return os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return None

    def remove(self, parts: Parts) -> None:
        """Delete whatever is at parts (a whole tree for a directory); nothing there is fine."""
        dir_fd, name = self.parent(parts, create=False)
        self.remove_in(dir_fd, name, parts)

    def remove_in(self, dir_fd: int, name: str, parts: Parts) -> None:
        """remove(parts), given its parent's descriptor and its name there."""
        st = self.lstat(dir_fd, name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            self.forget(parts)
            _remove_tree(dir_fd, name)
        else:
            os.unlink(name, dir_fd=dir_fd)

    def forget(self, parts: Parts) -> None:
        """Drop cached descriptors of parts and everything below it."""
        n = len(parts)
        for key in [k for k in self._dirs if k[:n] == parts and k]:
            os.close(self._dirs.pop(key))


def _remove_tree(dir_fd: int, name: str) -> None:
    """rm -r name inside dir_fd, without following symlinks."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            if stat.S_ISDIR(os.lstat(child, dir_fd=fd).st_mode):
                _remove_tree(fd, child)
            else:
                os.unlink(child, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
