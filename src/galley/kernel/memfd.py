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
    flags = posix.MFD_CLOEXEC | posix.MFD_ALLOW_SEALING
    try:
        fd = posix.memfd_create(name, flags | (MFD_EXEC if executable else 0))
    except OSError as err:
        if err.errno != errno.EINVAL or not executable:
            raise
        fd = posix.memfd_create(name, flags)  # a kernel before 6.3: executable by default
    try:
        view = memoryview(data)
        while view:
            view = view[posix.write(fd, view) :]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        if executable:
            posix.fchmod(fd, 0o111)
    except BaseException:
        posix.close(fd)
        raise
    return fd
