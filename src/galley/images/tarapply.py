"""Writing tar members into a directory as they stream past: every entry kind, and whiteouts.

Whiteouts (OCI image-spec "Representing Changes"):

    entry           whiteouts="overlay" (dest: an upperdir)   whiteouts="native" (dest: a copy)
    a/.wh.b         a/b := character device 0/0                rm -r a/b
    a/.wh..wh..opq  setxattr(a, <ns>.overlay.opaque, "y")      rm -r each a/* not in this layer

(<ns> is trusted, or user inside a user namespace: see galley.snapshots.overlay.)

Directory times are set after the whole layer, deepest first, so that writing children does not
disturb them. Entry names and link targets are checked by galley.images.tarsafe, and every
write goes through its symlink-proof Root.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import Literal

from galley.errors import InvalidArgument
from galley.images.tarsafe import DIR_FLAGS, Parts, Root, check_metadata, clean_path, show
from galley.snapshots.overlay import overlay_xattr

WhiteoutMode = Literal["overlay", "native"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
_XATTR_PAX = "SCHILY.xattr."
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# setxattr's answers to an attribute the layer should not have had: user.* on a symlink or a
# FIFO, a malformed value (security.capability), an empty name, a value past the size limit
_XATTR_REFUSED = frozenset({errno.EPERM, errno.EINVAL, errno.E2BIG, errno.ERANGE})


class TarApplier:
    """Writes tar members into a Root, one at a time, as they stream past."""

    def __init__(
        self,
        root: Root,
        whiteouts: WhiteoutMode,
        allow_devices: bool,
        chunks: Callable[[tarfile.TarInfo], Iterator[bytes]],
    ) -> None:
        self.root = root
        self.chunks = chunks
        self.whiteouts = whiteouts
        self.allow_devices = allow_devices
        self.written: set[Parts] = set()  # entries of this layer, and their parents
        self.whited: set[Parts] = set()  # overlay whiteouts made by this layer
        self.dir_times: list[tuple[Parts, int]] = []
        # (lower layer, directory) -> its names and whether it hides the layers below
        self.listings: dict[tuple[str, Parts], tuple[frozenset[str], bool]] = {}
        if root.lowers:  # an implicit directory takes the attributes of the one it covers
            root.template = self._covered_directory

    def entry(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        """Apply one member (its data is read from tar as it streams)."""
        self.root.trim()
        parts = clean_path(member.name)
        base = parts[-1] if parts else ""
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        check_metadata(member, parts)
        if not parts:  # "./": the root directory's own attributes
            if member.isdir():
                self._attributes(self.root.fd, None, member)
            return
        if self.whited:
            self._reopen_whited(parts)
        dir_fd, name = self.root.parent(parts)
        replaced = self._make_room(parts, dir_fd, name, member.isdir())
        if member.isdir():
            if self.root.lstat(dir_fd, name) is None:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
                if replaced and self.whiteouts == "overlay":
                    # a whiteout, file or symlink of this layer took the place of what is
                    # below (deleting it), and a directory took its place: an empty one
                    os.setxattr(f"/proc/self/fd/{dir_fd}/{name}", overlay_xattr("opaque"), b"y")
        elif member.isreg():
            self._file(dir_fd, name, member)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=dir_fd)
        elif member.islnk():
            self._hard_link(parts, dir_fd, name, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._node(parts, dir_fd, name, member)
        else:
            raise InvalidArgument(
                f"layer entry {member.name!r} has unsupported type {member.type!r}"
            )
        self._mark_written(parts)
        if not member.islnk():
            self._attributes(dir_fd, name, member)

    def _mark_written(self, parts: Parts) -> None:
        while parts and parts not in self.written:
            self.written.add(parts)
            parts = parts[:-1]

    def _make_room(self, parts: Parts, dir_fd: int, name: str, is_dir: bool) -> bool:
        """Remove what is in the way of a new entry (an existing directory stays for a dir);
        whether anything was removed."""
        st = self.root.lstat(dir_fd, name)
        if st is None or (is_dir and stat.S_ISDIR(st.st_mode)):
            return False
        self.root.remove(parts)
        self.whited.discard(parts)
        if stat.S_ISDIR(st.st_mode):  # what this layer wrote in it is gone, and its times
            n = len(parts)
            self.dir_times = [(p, t) for p, t in self.dir_times if p[:n] != parts]
            self.written = {p for p in self.written if len(p) <= n or p[:n] != parts}
            self.whited = {p for p in self.whited if len(p) <= n or p[:n] != parts}
        return True

    def _file(self, dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            for chunk in self.chunks(member):
                _write_all(fd, chunk)
        finally:
            os.close(fd)

    def _hard_link(self, parts: Parts, dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
        target = clean_path(member.linkname, what=f"hard link {member.name!r} target")
        if target[: len(parts)] == parts:  # replacing parts deletes it first
            raise InvalidArgument(
                f"hard link {show(parts)!r} names itself, or a path inside it, as its target"
            )
        try:
            target_fd, target_name = self.root.parent(target, create=False)
            st = self.root.lstat(target_fd, target_name)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(
                f"hard link {show(parts)!r} names directory {show(target)!r}: a directory"
                " cannot be hard-linked"
            )
        if st is None:
            self._copy_up(target)
            target_fd, target_name = self.root.parent(target)
        os.link(target_name, name, src_dir_fd=target_fd, dst_dir_fd=dir_fd, follow_symlinks=False)

    def _copy_up(self, target: Parts) -> None:
        """Copy a hard link's target from a lower layer into dest (what overlayfs would do)."""
        found = self._below(target)
        if found is None or not stat.S_ISREG(found[1].st_mode):
            raise InvalidArgument(
                f"hard link target {show(target)!r} is not in the layer or below it"
            )
        with Root(found[0]) as below:
            below_fd, below_name = below.parent(target, create=False)
            target_fd, target_name = self.root.parent(target)
            _copy_file(below_fd, below_name, target_fd, target_name, found[1])

    def _covered_directory(self, parts: Parts) -> os.stat_result | None:
        found = self._below(parts)
        return found[1] if found is not None and stat.S_ISDIR(found[1].st_mode) else None

    def _below(self, parts: Parts) -> tuple[str, os.stat_result] | None:
        """What overlayfs would show at parts from the lower layers alone, as (the lower,
        the lstat there): the nearest layer's entry, where no opaque directory of this layer
        or a nearer one, no whiteout, and no file or symlink on the way hides it. None when
        nothing shows."""
        for depth in range(1, len(parts)):
            if parts[:depth] in self.whited:  # this layer's whiteout hides the rest
                return None
            try:
                if _opaque(self.root.directory(parts[:depth], create=False, entry=parts)):
                    return None
            except FileNotFoundError:
                break
        if not parts:
            return None  # the root: always there, never hidden
        for lower in self.root.lowers:
            key = (lower, parts[:-1])
            listing = self.listings.get(key)
            if listing is None:
                listing = self.listings[key] = _list_directory(lower, parts[:-1])
            names, hides = listing
            if parts[-1] in names:  # its directories checked: no symlink on this path
                st = os.lstat(os.path.join(lower, *parts))
                return None if _is_whiteout(st) else (lower, st)
            if hides:
                return None
        return None

    def _node(self, parts: Parts, dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
        if member.isfifo():
            os.mknod(name, stat.S_IFIFO | 0o600, dir_fd=dir_fd)
            return
        if not self.allow_devices:
            raise InvalidArgument(f"layer entry {show(parts)!r} is a device node, not allowed here")
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        device = os.makedev(member.devmajor, member.devminor)
        os.mknod(name, kind | 0o600, device, dir_fd=dir_fd)

    def _attributes(self, dir_fd: int, name: str | None, member: tarfile.TarInfo) -> None:
        """Owner, mode, xattrs and (for non-directories) times of a written entry."""
        where = name if name is not None else "."
        os.chown(where, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
        if not member.issym():
            os.chmod(where, stat.S_IMODE(member.mode), dir_fd=dir_fd)
        path = f"/proc/self/fd/{dir_fd}/{where}"
        for key, value in member.pax_headers.items():
            if not key.startswith(_XATTR_PAX):
                continue
            attr = key[len(_XATTR_PAX) :]
            if self.whiteouts == "overlay" and attr.startswith(_OVERLAY_XATTRS):
                continue  # a layer does not get to steer overlayfs
            self._xattr(path, attr, value.encode("utf-8", "surrogateescape"), member)
        mtime = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((clean_path(member.name), mtime))
        else:
            os.utime(where, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)

    @staticmethod
    def _xattr(path: str, attr: str, value: bytes, member: tarfile.TarInfo) -> None:
        """One extended attribute of a member. One whose namespace the filesystem does not
        have (EOPNOTSUPP) is left out, as containerd leaves it; one the kernel refuses for
        this file or value is a bad layer."""
        try:
            os.setxattr(path, attr, value, follow_symlinks=False)
        except OSError as err:
            if err.errno == errno.EOPNOTSUPP:
                return
            if err.errno not in _XATTR_REFUSED:
                raise
            raise InvalidArgument(
                f"layer entry {member.name!r} has extended attribute {attr[:80]!r}, which the"
                f" kernel refuses for it: {os.strerror(err.errno)}"
            ) from None

    def _whiteout(self, parts: Parts) -> None:
        directory, base = parts[:-1], parts[-1]
        hidden_name = base[len(WHITEOUT_PREFIX) :]
        if hidden_name in ("", ".", ".."):
            raise InvalidArgument(f"whiteout {show(parts)!r} names no file")
        opaque = base == OPAQUE
        if not opaque and base.startswith(WHITEOUT_PREFIX * 2):
            return  # other AUFS metadata (.wh..wh.plnk and the like): nothing to apply
        hidden = directory if opaque else (*directory, hidden_name)
        if not opaque and hidden in self.written:
            return  # a whiteout hides lower layers only, never its own layer's entries
        if self.whiteouts == "overlay" and hidden not in self.written:
            if directory in self.whited:  # (_below looks at the directories above it)
                return  # an opaque whiteout in what this layer whited out: nothing shows
            if self._below(hidden) is None:
                return  # nothing below to hide (native: nothing to delete), and a whiteout
                # device in a directory no lower layer merges with shows in its listing
        try:  # native: nothing below a missing directory to delete; overlay: make it
            dir_fd = self.root.directory(directory, create=self.whiteouts == "overlay", entry=parts)
        except FileNotFoundError:
            return
        if opaque:
            self._prune(directory, dir_fd)
            if self.whiteouts == "overlay":
                os.setxattr(dir_fd, overlay_xattr("opaque"), b"y")
            return
        self.root.remove(hidden)
        if self.whiteouts == "overlay":
            os.mknod(hidden[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)
            self.whited.add(hidden)

    def _prune(self, directory: Parts, dir_fd: int) -> None:
        """Delete what lies below directory that this layer did not write, at any depth: what
        lower layers left (native), or what a hard link copied up (overlay)."""
        for child in os.listdir(dir_fd):  # descriptors of its own: a pruned tree can be large
            parts = (*directory, child)
            if parts not in self.written:
                self.root.remove_in(dir_fd, child, parts)
            elif stat.S_ISDIR(os.lstat(child, dir_fd=dir_fd).st_mode):
                inner = os.open(child, DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._prune(parts, inner)
                finally:
                    os.close(inner)

    def _reopen_whited(self, parts: Parts) -> None:
        """Directories parts goes through where this layer made a whiteout (`.wh.c`, then
        `c/d` with no entry `c/`): each becomes an opaque directory, as an entry `c/` makes it
        (native application has deleted `c` and makes the directory as any implicit one)."""
        for depth in range(1, len(parts)):
            prefix = parts[:depth]
            if prefix not in self.whited:
                continue
            self.whited.discard(prefix)
            dir_fd, name = self.root.parent(prefix)
            st = self.root.lstat(dir_fd, name)
            if st is None or not _is_whiteout(st):
                continue  # replaced since by an entry of its own
            os.unlink(name, dir_fd=dir_fd)
            os.mkdir(name, 0o755, dir_fd=dir_fd)  # as native application makes it: no template
            os.chmod(name, 0o755, dir_fd=dir_fd, follow_symlinks=False)
            os.setxattr(self.root.directory(prefix), overlay_xattr("opaque"), b"y")
            self._mark_written(prefix)

    def finish(self) -> None:
        """Set directory times, deepest first (children are all written by now)."""
        for parts, mtime in sorted(self.dir_times, key=lambda t: -len(t[0])):
            self.root.trim()
            if not parts:
                os.utime(self.root.fd, ns=(mtime, mtime))
                continue
            dir_fd, name = self.root.parent(parts, create=False)
            os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)


def _list_directory(layer: str, directory: Parts) -> tuple[frozenset[str], bool]:
    """The names in one layer's directory (none where it has no such directory), and
    whether the layer hides the layers below it there: a file, symlink or whiteout on the
    way, or an opaque directory on the way or at it. Descriptors are opened and closed here,
    not kept: an image can have a hundred layers."""
    fd = os.open(layer, DIR_FLAGS)
    try:
        hides = False
        for name in directory:
            try:
                st = os.lstat(name, dir_fd=fd)
            except FileNotFoundError:
                return frozenset(), hides
            if not stat.S_ISDIR(st.st_mode):
                return frozenset(), True
            inner = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = inner
            hides = hides or _opaque(fd)
        return frozenset(os.listdir(fd)), hides
    finally:
        os.close(fd)


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(dir_fd: int) -> bool:
    try:
        return os.getxattr(dir_fd, overlay_xattr("opaque")) == b"y"
    except OSError:  # ENODATA: not opaque
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_file(src_fd: int, src_name: str, dst_fd: int, dst_name: str, st: os.stat_result) -> None:
    """Copy a regular file between directories (data, owner, mode, times)."""
    source = os.open(src_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        dest = os.open(dst_name, _FILE_FLAGS, 0o600, dir_fd=dst_fd)
        try:
            while os.sendfile(dest, source, None, CHUNK):
                pass
            os.fchown(dest, st.st_uid, st.st_gid)
            os.fchmod(dest, stat.S_IMODE(st.st_mode))
            os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dest)
    finally:
        os.close(source)
