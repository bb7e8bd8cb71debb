"""tmpcopyup: a tmpfs mounted over a directory starts with a copy of what the directory held.

The copy runs on directory fds (the directory underneath, reached through the fd taken before
the mount, and the new tmpfs root), never on paths, so symlinks in the image are copied as
symlinks and never followed. Files, directories, symlinks, device nodes and fifos are copied
with their mode, owner and content; sockets are skipped. The walk keeps its own stack (an
image's tree may be deeper than Python's recursion limit), and a file is opened without
blocking and checked to be a regular file once open (a fifo put in its place meanwhile must
not hang the create).
"""

from __future__ import annotations

import os
import stat

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy the contents of directory src_fd into directory dst_fd (both O_RDONLY fds)."""
    pending = [(src_fd, dst_fd, False)]  # (source, destination, whether to close them)
    try:
        while pending:
            src, dst, own = pending.pop()
            try:
                pending.extend(_copy_entries(src, dst))
            finally:
                if own:
                    os.close(src)
                    os.close(dst)
    finally:
        for src, dst, own in pending:
            if own:
                os.close(src)
                os.close(dst)


def _copy_entries(src_fd: int, dst_fd: int) -> list[tuple[int, int, bool]]:
    """Copy one directory's entries; the subdirectories made, opened, for their contents."""
    subdirectories: list[tuple[int, int, bool]] = []
    try:
        for entry in os.scandir(src_fd):
            st = entry.stat(follow_symlinks=False)
            name, mode = entry.name, stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(name, 0o700, dir_fd=dst_fd)
                src = os.open(name, _DIRECTORY, dir_fd=src_fd)
                try:
                    dst = os.open(name, _DIRECTORY, dir_fd=dst_fd)
                except BaseException:
                    os.close(src)
                    raise
                subdirectories.append((src, dst, True))
            elif stat.S_ISREG(st.st_mode):
                _copy_file(src_fd, dst_fd, name)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                os.mknod(name, st.st_mode, st.st_rdev, dir_fd=dst_fd)
            else:
                continue
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(name, mode, dir_fd=dst_fd)
    except BaseException:
        for src, dst, _ in subdirectories:
            os.close(src)
            os.close(dst)
        raise
    return subdirectories


def _copy_file(src_fd: int, dst_fd: int, name: str) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    src = os.open(name, flags, dir_fd=src_fd)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise OSError(22, f"tmpcopyup: {name!r} changed while it was copied")  # EINVAL
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=dst_fd)
        try:
            while os.sendfile(dst, src, None, 1 << 20):
                pass
        finally:
            os.close(dst)
    finally:
        os.close(src)
