"""AppArmor profiles and SELinux labels, applied where the host has them.

`process.apparmorProfile` and `process.selinuxLabel` are what the container's process becomes
at its execve: written to the process's "exec" attribute under /proc (runc writes
"exec <profile>" to attr/apparmor/exec, or attr/exec on kernels without per-LSM directories,
and the SELinux label to attr/exec). With an SELinux label, the key the session keyring is
made with carries it too (attr/keycreate), and `linux.mountLabel` becomes the `context=`
option of the fresh filesystems the container gets, as runc does. Where the host lacks the
LSM, validate.check_host_security refuses the config, as runc does.

The attribute files are reached through the host's procfs, opened before the stage sees any
of the container's files, with openat2 confined to that mount (RESOLVE_BENEATH | NO_XDEV |
NO_MAGICLINKS): a container whose image or mounts put something else at /proc cannot turn
the write into one to another file, and so cannot drop its confinement (CVE-2025-52881).

An SELinux transition checks that the file exec'd is an entrypoint of the new domain; the
trampoline's sealed memfd is not, so a container with an SELinux label execs its program
from the stage itself (galley.oci.stage: the stage is then the re-executed, read-only
interpreter). An AppArmor profile is attached at the trampoline's execve instead; the
trampoline then reads the exec fifo and execs the program under it. The usual container
profiles (docker-default, containerd's cri-containerd.apparmor.d) allow that: they grant all
file access. A profile that denies reading the state directory's exec fifo, or exec'ing the
program, would fail where runc (which attaches it at the program's execve) does not.
Untested on a host with either LSM (this project's test host has neither).
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition
from galley.kernel import mount as k

TYPE_CHECKING = False
if TYPE_CHECKING:
    from galley.oci.spec import Process

_RESOLVE = k.RESOLVE_BENEATH | k.RESOLVE_NO_XDEV | k.RESOLVE_NO_MAGICLINKS


class Labels:
    """The labels of one process, and the host's procfs to write them through."""

    __slots__ = ("_proc", "apparmor", "selinux")

    def __init__(self, process: Process) -> None:
        """Call while the host's /proc is in view (before any namespace is joined)."""
        self.apparmor = process.get("apparmorProfile") or ""
        self.selinux = process.get("selinuxLabel") or ""
        self._proc = -1
        if self.apparmor or self.selinux:
            self._proc = posix.open("/proc", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)

    @property
    def exec_needs_own_file(self) -> bool:
        """Whether the process must be exec'd directly (an SELinux entrypoint check)."""
        return bool(self.selinux)

    def key_label(self, on: bool) -> None:
        """The SELinux label new keys get (on), or the default again (off)."""
        if self.selinux:
            self._write("process.selinuxLabel", ("keycreate",), self.selinux if on else "")

    def apply(self) -> None:
        """Set what the next execve makes of this thread."""
        if self.apparmor:
            value = f"exec {self.apparmor}"
            self._write("process.apparmorProfile", ("apparmor/exec", "exec"), value)
        if self.selinux:
            self._write("process.selinuxLabel", ("exec",), self.selinux)

    def _write(self, field: str, names: tuple[str, ...], value: str) -> None:
        """value into the first of thread-self/attr/<names> that exists."""
        for i, name in enumerate(names):
            path = f"thread-self/attr/{name}"
            try:
                fd = k.openat2(self._proc, path, posix.O_WRONLY, _RESOLVE)
            except FileNotFoundError:
                if i + 1 < len(names):
                    continue
                raise FailedPrecondition(f"{field}: /proc/{path} does not exist") from None
            try:
                posix.write(fd, value.encode())
            except OSError as e:
                raise FailedPrecondition(f"{field}: writing /proc/{path}: {e.strerror}") from None
            finally:
                posix.close(fd)
            return

    def close(self) -> None:
        if self._proc >= 0:
            posix.close(self._proc)
            self._proc = -1


def mount_data(data: str, kind: str, label: str) -> str:
    """A fresh filesystem's mount data with linux.mountLabel as its SELinux context, for the
    kinds runc labels (not proc, sysfs, mqueue or cgroup, which keep their own)."""
    if not label or kind in {"proc", "sysfs", "mqueue", "cgroup", "cgroup2", "bind"}:
        return data
    context = f'context="{label}"'
    return f"{data},{context}" if data else context
