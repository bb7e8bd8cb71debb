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

import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from typing import Literal

from galley.errors import InvalidArgument
from galley.images.tarsafe import Parts, Root, clean_path, show
from galley.snapshots.overlay import overlay_xattr

WhiteoutMode = Literal["overlay", "native"]

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
CHUNK = 1 << 20
_XATTR_PAX = "SCHILY.xattr."
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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

    def entry(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        """Apply one member (its data is read from tar as it streams)."""
        parts = clean_path(member.name)
        base = parts[-1] if parts else ""
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        if not parts:  # "./": the root directory's own attributes
            if member.isdir():
                self._attributes(self.root.fd, None, member)
            return
        dir_fd, name = self.root.parent(parts)
        self._make_room(parts, dir_fd, name, member.isdir())
        if member.isdir():
            if self.root.lstat(dir_fd, name) is None:
                os.mkdir(name, 0o700, dir_fd=dir_fd)
                if parts in self.whited:  # deleted below, recreated here: hide the lower one
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

    def _make_room(self, parts: Parts, dir_fd: int, name: str, is_dir: bool) -> None:
        """Remove what is in the way of a new entry (an existing directory stays for a dir)."""
        st = self.root.lstat(dir_fd, name)
        if st is None or (is_dir and stat.S_ISDIR(st.st_mode)):
            return
        self.root.remove(parts)

    def _file(self, dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
        fd = os.open(name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            for chunk in self.chunks(member):
                _write_all(fd, chunk)
        finally:
            os.close(fd)

    def _hard_link(self, parts: Parts, dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
        target = clean_path(member.linkname, what=f"hard link {member.name!r} target")
        try:
            target_fd, target_name = self.root.parent(target, create=False)
            present = self.root.lstat(target_fd, target_name) is not None
        except FileNotFoundError:
            present = False
        if not present:
            self._copy_up(target)
            target_fd, target_name = self.root.parent(target)
        os.link(target_name, name, src_dir_fd=target_fd, dst_dir_fd=dir_fd, follow_symlinks=False)

    def _copy_up(self, target: Parts) -> None:
        """Copy a hard link's target from a lower layer into dest (what overlayfs would do)."""
        for lower in self.root.lowers:
            with Root(lower) as below:
                try:
                    below_fd, below_name = below.parent(target, create=False)
                except (FileNotFoundError, InvalidArgument):
                    continue
                st = below.lstat(below_fd, below_name)
                if st is None:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    break
                target_fd, target_name = self.root.parent(target)
                _copy_file(below_fd, below_name, target_fd, target_name, st)
                return
        raise InvalidArgument(f"hard link target {show(target)!r} is not in the layer or below it")

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
            data = value.encode("utf-8", "surrogateescape")
            os.setxattr(path, attr, data, follow_symlinks=False)
        mtime = int(member.mtime * 1_000_000_000)
        if member.isdir():
            self.dir_times.append((clean_path(member.name), mtime))
        else:
            os.utime(where, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)

    def _whiteout(self, parts: Parts) -> None:
        directory, base = parts[:-1], parts[-1]
        hidden_name = base[len(WHITEOUT_PREFIX) :]
        if hidden_name in ("", ".", ".."):
            raise InvalidArgument(f"whiteout {show(parts)!r} names no file")
        try:  # native: nothing below a missing directory to delete; overlay: make it
            dir_fd = self.root.directory(directory, create=self.whiteouts == "overlay", entry=parts)
        except FileNotFoundError:
            return
        if base == OPAQUE:
            if self.whiteouts == "overlay":
                os.setxattr(dir_fd, overlay_xattr("opaque"), b"y")
                return
            for child in os.listdir(dir_fd):
                if (*directory, child) not in self.written:
                    self.root.remove((*directory, child))
            return
        if base.startswith(WHITEOUT_PREFIX * 2):
            return  # other AUFS metadata (.wh..wh.plnk and the like): nothing to apply
        hidden = (*directory, hidden_name)
        if hidden in self.written:
            return  # a whiteout hides lower layers only, never its own layer's entries
        self.root.remove(hidden)
        if self.whiteouts == "overlay":
            os.mknod(hidden[-1], stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dir_fd)
            self.whited.add(hidden)

    def finish(self) -> None:
        """Set directory times, deepest first (children are all written by now)."""
        for parts, mtime in sorted(self.dir_times, key=lambda t: -len(t[0])):
            if not parts:
                os.utime(self.root.fd, ns=(mtime, mtime))
                continue
            dir_fd, name = self.root.parent(parts, create=False)
            os.utime(name, ns=(mtime, mtime), dir_fd=dir_fd, follow_symlinks=False)


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
