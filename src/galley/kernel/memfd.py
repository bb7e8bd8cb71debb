"""Sealed memory files: an image that no process can change once it is made (memfd_create(2))."""

from __future__ import annotations

import errno
import fcntl
import posix

MFD_EXEC = 0x0010  # Linux 6.3+: this memfd may be executed, whatever vm.memfd_noexec says
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def sealed(name: str, data: bytes, *, executable: bool = False) -> int:
    """A close-on-exec memfd holding data, sealed against every write, resize and new seal.

    An executable one is execute-only (0111): a process that runs it without the right to
    read it is not dumpable from its first instruction (the kernel's would_dump at execve).
    """
    fd = _create(name, executable=executable)
    try:
        seal(fd, data)
        if executable:
            posix.fchmod(fd, 0o111)
    except BaseException:
        posix.close(fd)
        raise
    return fd


def reserved(name: str, owner: tuple[int, int]) -> int:
    """An empty, execute-only (0111) memfd for seal() to fill later, given to owner (uid,
    gid) where this process may give it away (root; elsewhere it stays ours).

    Made before a process enters a user namespace that maps neither id: one that executes
    it there cannot read it (no DAC override over ids its namespace does not map), so at
    execve the kernel ties the new memory to the nearest ancestor namespace that maps them
    (would_dump), where capabilities held in the container's namespace count for nothing:
    CAP_SYS_PTRACE there then opens neither /proc/<pid>/mem nor /proc/<pid>/fd.
    """
    fd = _create(name, executable=True)
    if fd < 3:  # never a standard fd: the stage sets those up later (a caller may close them)
        fd, low = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3), fd
        posix.close(low)
    try:
        posix.fchmod(fd, 0o111)
        try:
            posix.fchown(fd, *owner)
        except OSError as err:  # not root, or an id our own user namespace does not map
            if err.errno not in (errno.EPERM, errno.EINVAL):
                raise
    except BaseException:
        posix.close(fd)
        raise
    return fd


def seal(fd: int, data: bytes) -> None:
    """Write data to an empty memfd and seal it against every write, resize and new seal.
    The fd's own write access is all it takes: not its owner's or mode's."""
    view = memoryview(data)
    while view:
        view = view[posix.write(fd, view) :]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)


def _create(name: str, *, executable: bool) -> int:
    flags = posix.MFD_CLOEXEC | posix.MFD_ALLOW_SEALING
    try:
        return posix.memfd_create(name, flags | (MFD_EXEC if executable else 0))
    except OSError as err:
        if err.errno != errno.EINVAL or not executable:
            raise
        return posix.memfd_create(name, flags)  # a kernel before 6.3: executable by default
