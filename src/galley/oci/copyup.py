"""tmpcopyup: a tmpfs mounted over a directory starts with a copy of what the directory held.

The copy runs on directory fds (the directory underneath, reached through the fd taken before
the mount, and the new tmpfs root), never on paths, so symlinks in the image are copied as
symlinks and never followed. Files, directories, symlinks, device nodes and fifos are copied
with their mode, owner and content; sockets are skipped.
"""

from __future__ import annotations

import os
import stat


def copy_tree(src_fd: int, dst_fd: int) -> None:
    """Copy the contents of directory src_fd into directory dst_fd (both O_RDONLY fds)."""
    for entry in os.scandir(src_fd):
        st = entry.stat(follow_symlinks=False)
        name, mode = entry.name, stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            _copy_subdir(src_fd, dst_fd, name)
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


def _copy_subdir(src_fd: int, dst_fd: int, name: str) -> None:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    src = os.open(name, flags, dir_fd=src_fd)
    try:
        dst = os.open(name, flags, dir_fd=dst_fd)
        try:
            copy_tree(src, dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_file(src_fd: int, dst_fd: int, name: str) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_fd)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(name, flags, 0o600, dir_fd=dst_fd)
        try:
            while os.sendfile(dst, src, None, 1 << 20):
                pass
        finally:
            os.close(dst)
    finally:
        os.close(src)
