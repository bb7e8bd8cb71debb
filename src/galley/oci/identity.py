"""process.user → supplementary groups, gid, uid and umask of the container process (runc's order).

    setgroups(additionalGids)      each once; skipped (as runc) where the user namespace denies it
    PR_SET_KEEPCAPS                keeps the permitted set across the uid switch
    setresgid, setresuid           all three ids; an unmapped id fails with a clear error
    clear keepcaps, umask          umask 0022 when unset

The kernel empties the effective set when uid leaves 0; apply_capabilities restores it, so the
init stage calls apply_user and then apply_capabilities, always both.
"""

from __future__ import annotations

import errno
import posix
import stat

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import caps as kcaps
from galley.oci.paths import open_in_root

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import User

DEFAULT_UMASK = 0o022


def apply_user(user: User) -> None:
    """Switch to user's groups, gid and uid keeping permitted caps, then set the umask."""
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    groups = list(dict.fromkeys(user.get("additionalGids") or []))  # once each, as runc
    fix_stdio_ownership(uid)
    # Where a user namespace denies setgroups (EPERM with CAP_SETGID), additionalGids are not
    # applied, as runc does; the kernel is asked, not the container's /proc, which a container
    # with CAP_SYS_ADMIN could fake for an exec. The stage dropped the caller's groups before
    # it entered any user namespace (galley.oci.namespaces.enter).
    field = "process.user.additionalGids"
    _call(posix.setgroups, groups, field=field, value=groups, denied_ok=True)
    kcaps.set_keepcaps(True)
    _call(posix.setresgid, gid, gid, gid, field="process.user.gid", value=gid)
    _call(posix.setresuid, uid, uid, uid, field="process.user.uid", value=uid)
    kcaps.set_keepcaps(False)
    umask = user.get("umask")
    posix.umask(DEFAULT_UMASK if umask is None else umask & 0o777)  # all the kernel keeps


def _call(fn: object, *args: object, field: str, value: object, denied_ok: bool = False) -> None:
    try:
        fn(*args)  # type: ignore[operator]
    except PermissionError as e:
        if not denied_ok:
            raise FailedPrecondition(f"{field}: {value}: {e.strerror}") from None
    except OverflowError:
        raise InvalidArgument(f"{field}: {value} is out of range") from None
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise FailedPrecondition(
                f"{field}: {value} is not mapped in the container's user namespace"
            ) from None
        raise FailedPrecondition(f"{field}: {value}: {e.strerror}") from None


NULL_DEVICE = posix.makedev(1, 3)  # /dev/null on every Linux


def fix_stdio_ownership(uid: int) -> None:
    """Give fds 0-2 to the container user, unless /dev/null or already theirs. As runc, only the
    owner changes (the group may be the devpts "tty" group), and failures are ignored.

    /dev/null is known by its device number, not by the container's /dev/null: a container can
    remove or replace that, and the host's /dev/null, given as stdio, would go to the user."""
    for fd in (0, 1, 2):
        try:
            st = posix.fstat(fd)
        except OSError:
            continue
        if st.st_uid == uid or (stat.S_ISCHR(st.st_mode) and st.st_rdev == NULL_DEVICE):
            continue
        try:
            posix.fchown(fd, uid, -1)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EPERM, errno.EROFS, errno.EBADF):
                raise FailedPrecondition(
                    f"process.user: chown of stdio fd {fd}: {os_error_text(e)}"
                ) from None


PASSWD_LIMIT = 1 << 20  # bytes of the container's /etc/passwd read at most


def home_dir(uid: int, passwd: str = "/etc/passwd") -> str:
    """The home directory of uid in passwd, else "/" (runc's default).

    The stage reads the container's file (after pivot_root, or exec's setns) as the host's
    root: resolved inside the root with no magic links (no /proc/self/fd/N to a host file),
    only a regular file, never blocking on a FIFO, at most PASSWD_LIMIT bytes.
    """
    try:
        root = posix.open("/", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            fd = open_in_root(root, passwd, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_NOCTTY)
        finally:
            posix.close(root)
        try:
            if not stat.S_ISREG(posix.fstat(fd).st_mode):
                return "/"
            data = posix.read(fd, PASSWD_LIMIT)
        finally:
            posix.close(fd)
    except OSError:
        return "/"
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and _decimal(fields[2]) == uid:
            return fields[5] or "/"
    return "/"


def _decimal(text: str) -> int | None:
    """A passwd id read as runc reads it (Go's Atoi: "01000" is 1000), or None."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    return int(text) if digits.isascii() and digits.isdigit() else None
