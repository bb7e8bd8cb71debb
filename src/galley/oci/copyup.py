"""tmpcopyup: a tmpfs mounted over a directory starts with a copy of what the directory held.

The copy runs below two directory fds (the directory underneath, reached through the fd taken
before the mount, and the new tmpfs root), on paths opened beneath them with openat2 and no
symlink followed, so symlinks in the image are copied as symlinks and never followed. Files,
directories, symlinks, device nodes and fifos are copied with their mode, owner and content;
sockets are skipped. The walk keeps its own stack (an image's tree may be deeper than Python's
recursion limit) of paths below the two roots, and a file is opened without blocking and
checked to be a regular file once open (a fifo put in its place meanwhile must not hang the
create).
"""

from __future__ import annotations

import posix
import stat

from galley.kernel import mount

_DIRECTORY = posix.O_RDONLY | posix.O_DIRECTORY | posix.O_NOFOLLOW | posix.O_CLOEXEC
_BENEATH = mount.RESOLVE_BENEATH | mount.RESOLVE_NO_SYMLINKS | mount.RESOLVE_NO_MAGICLINKS


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy the contents of directory src_fd into directory dst_fd (both O_RDONLY fds).

    A directory is opened when its turn comes, by its path below the two roots (openat2
    beneath them, following no symlink), and closed once its entries are copied: four fds
    open at the most, whatever the tree's width or depth (a directory of a few thousand
    subdirectories ran out of descriptors while each waited its turn open). A tree deeper
    than PATH_MAX fails, as runc's copy does."""
    pending = [_copy_entries(src_fd, dst_fd, "")]
    while pending:
        for path in pending.pop():
            src = mount.openat2(src_fd, path, _DIRECTORY, _BENEATH)
            try:
                dst = mount.openat2(dst_fd, path, _DIRECTORY, _BENEATH)
                try:
                    pending.append(_copy_entries(src, dst, path))
                finally:
                    posix.close(dst)
            finally:
                posix.close(src)


def _copy_entries(src_fd: int, dst_fd: int, path: str) -> list[str]:
    """Copy the entries of one directory (path below the roots); the paths of the
    subdirectories made, for their contents."""
    subdirectories: list[str] = []
    for entry in posix.scandir(src_fd):
        st = entry.stat(follow_symlinks=False)
        name, mode = entry.name, stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            posix.mkdir(name, 0o700, dir_fd=dst_fd)
            subdirectories.append(f"{path}/{name}" if path else name)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(src_fd, dst_fd, name)
        elif stat.S_ISLNK(st.st_mode):
            posix.symlink(posix.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            posix.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_fd)
        else:
            continue
        posix.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            posix.chmod(name, mode, dir_fd=dst_fd)
    return subdirectories


def _copy_file(src_fd: int, dst_fd: int, name: str) -> None:
    flags = posix.O_RDONLY | posix.O_NOFOLLOW | posix.O_NONBLOCK | posix.O_CLOEXEC
    src = posix.open(name, flags, dir_fd=src_fd)
    try:
        if not stat.S_ISREG(posix.fstat(src).st_mode):
            raise OSError(22, f"tmpcopyup: {name!r} changed while it was copied")  # EINVAL
        flags = posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_NOFOLLOW | posix.O_CLOEXEC
        dst = posix.open(name, flags, 0o600, dir_fd=dst_fd)
        try:
            while posix.sendfile(dst, src, None, 1 << 20):
                pass
        finally:
            posix.close(dst)
    finally:
        posix.close(src)
