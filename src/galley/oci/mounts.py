"""config.json mount options as runc parses them, and performing one mount inside the root.

An option is one of: a mount(2) flag it sets or clears (`ro`, `nosuid`, `rw`, `suid`, ...), a
propagation change applied after the mount (`rshared`, `private`, ...), a recursive attribute
applied with mount_setattr(AT_RECURSIVE) (`rro`, `rnosuid`, ...), an extension (`tmpcopyup`,
`idmap`, `ridmap`), or else filesystem data passed through verbatim (`mode=755`, `size=64k`).

Performing a mount (MountContext.mount):

    destination ──openat2 RESOLVE_IN_ROOT──► O_PATH fd (created as dir, or file for a file bind)
    mount(source, /proc/self/fd/N, type, flags, data)
    reopen the destination (now the new mount's root) ──► mount_setattr: flags a bind cannot take
    at bind time (ro, nosuid, ...), recursive attributes, then each propagation change in order
"""

from __future__ import annotations

import posix

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import mount as k
from galley.kernel import pathnames

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from collections.abc import Callable

    from galley.oci.spec import Mount

# name -> (flags set, flags cleared)
FLAG_OPTIONS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (k.MS_RDONLY, 0),
    "rw": (0, k.MS_RDONLY),
    "suid": (0, k.MS_NOSUID),
    "nosuid": (k.MS_NOSUID, 0),
    "dev": (0, k.MS_NODEV),
    "nodev": (k.MS_NODEV, 0),
    "exec": (0, k.MS_NOEXEC),
    "noexec": (k.MS_NOEXEC, 0),
    "sync": (k.MS_SYNCHRONOUS, 0),
    "async": (0, k.MS_SYNCHRONOUS),
    "dirsync": (k.MS_DIRSYNC, 0),
    "remount": (k.MS_REMOUNT, 0),
    "mand": (k.MS_MANDLOCK, 0),
    "nomand": (0, k.MS_MANDLOCK),
    "atime": (0, k.MS_NOATIME),
    "noatime": (k.MS_NOATIME, 0),
    "diratime": (0, k.MS_NODIRATIME),
    "nodiratime": (k.MS_NODIRATIME, 0),
    "relatime": (k.MS_RELATIME, 0),
    "norelatime": (0, k.MS_RELATIME),
    "strictatime": (k.MS_STRICTATIME, 0),
    "nostrictatime": (0, k.MS_STRICTATIME),
    "lazytime": (k.MS_LAZYTIME, 0),
    "nolazytime": (0, k.MS_LAZYTIME),
    "symfollow": (0, k.MS_NOSYMFOLLOW),
    "nosymfollow": (k.MS_NOSYMFOLLOW, 0),
    "iversion": (1 << 23, 0),
    "noiversion": (0, 1 << 23),
    "acl": (1 << 16, 0),
    "noacl": (0, 1 << 16),
    "silent": (k.MS_SILENT, 0),
    "loud": (0, k.MS_SILENT),
    "bind": (k.MS_BIND, 0),
    "rbind": (k.MS_BIND | k.MS_REC, 0),
}

PROPAGATION_OPTIONS: dict[str, int] = {
    "private": k.MS_PRIVATE,
    "rprivate": k.MS_PRIVATE | k.MS_REC,
    "shared": k.MS_SHARED,
    "rshared": k.MS_SHARED | k.MS_REC,
    "slave": k.MS_SLAVE,
    "rslave": k.MS_SLAVE | k.MS_REC,
    "unbindable": k.MS_UNBINDABLE,
    "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}

_ATIME = k.MOUNT_ATTR__ATIME
# name -> (MOUNT_ATTR_* set, MOUNT_ATTR_* cleared), applied with AT_RECURSIVE
RECURSIVE_OPTIONS: dict[str, tuple[int, int]] = {
    "rro": (k.MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, k.MOUNT_ATTR_RDONLY),
    "rnosuid": (k.MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, k.MOUNT_ATTR_NOSUID),
    "rnodev": (k.MOUNT_ATTR_NODEV, 0),
    "rdev": (0, k.MOUNT_ATTR_NODEV),
    "rnoexec": (k.MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, k.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (k.MOUNT_ATTR_NODIRATIME, 0),
    "rdiratime": (0, k.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (k.MOUNT_ATTR_RELATIME, _ATIME),
    "rnorelatime": (0, 0),
    "rnoatime": (k.MOUNT_ATTR_NOATIME, _ATIME),
    "ratime": (0, k.MOUNT_ATTR_NOATIME),
    "rstrictatime": (k.MOUNT_ATTR_STRICTATIME, _ATIME),
    "rnostrictatime": (0, k.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (k.MOUNT_ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, k.MOUNT_ATTR_NOSYMFOLLOW),
}

EXTENSION_OPTIONS = ("tmpcopyup", "idmap", "ridmap")

MOUNT_OPTIONS = sorted(
    [*FLAG_OPTIONS, *PROPAGATION_OPTIONS, *RECURSIVE_OPTIONS, *EXTENSION_OPTIONS]
)

# mount(2) flags a bind mount only takes on a second step, as mount_setattr attributes
_BIND_ATTRS = (
    (k.MS_RDONLY, k.MOUNT_ATTR_RDONLY),
    (k.MS_NOSUID, k.MOUNT_ATTR_NOSUID),
    (k.MS_NODEV, k.MOUNT_ATTR_NODEV),
    (k.MS_NOEXEC, k.MOUNT_ATTR_NOEXEC),
    (k.MS_NODIRATIME, k.MOUNT_ATTR_NODIRATIME),
    (k.MS_NOSYMFOLLOW, k.MOUNT_ATTR_NOSYMFOLLOW),
)
# Lowest precedence first (the last one set wins): mount(2) given several atime flags, as runc
# passes them whatever their order, takes strictatime over noatime over relatime.
_ATIME_ATTRS = (
    (k.MS_RELATIME, k.MOUNT_ATTR_RELATIME),
    (k.MS_NOATIME, k.MOUNT_ATTR_NOATIME),
    (k.MS_STRICTATIME, k.MOUNT_ATTR_STRICTATIME),
)

# Entries under /proc that may be bind-mounted over (what LXCFS emulates), as runc allows.
PROC_ALLOWED = frozenset(
    "/proc/" + name
    for name in (
        *("cpuinfo", "diskstats", "meminfo", "stat", "swaps", "uptime", "loadavg", "slabinfo"),
        *("net/dev", "sys/kernel/ns_last_pid"),
    )
)


class MountOptions:
    """A parsed options list: flags to set and to clear, propagation, recursive attrs, data."""

    __slots__ = ("clear", "data", "extensions", "flags", "propagation", "rec_clr", "rec_set")

    def __init__(self, options: list[str]) -> None:
        self.flags = self.clear = self.rec_set = self.rec_clr = 0
        self.propagation: list[int] = []
        self.extensions: set[str] = set()
        data: list[str] = []
        for option in options:
            if option in FLAG_OPTIONS:
                set_, clear = FLAG_OPTIONS[option]
                self.flags = (self.flags | set_) & ~clear
                self.clear = (self.clear | clear) & ~set_
            elif option in PROPAGATION_OPTIONS:
                self.propagation.append(PROPAGATION_OPTIONS[option])
            elif option in RECURSIVE_OPTIONS:
                set_, clear = RECURSIVE_OPTIONS[option]
                if clear & _ATIME == _ATIME:  # an atime mode: one of them, the last one given
                    self.rec_set &= ~_ATIME
                # The rest gathered, whatever their order, as runc's: the kernel clears, then
                # sets, so a restriction wins ("rro" then "rrw" is read-only; galley let the
                # last one win and left the tree writable, submounts and all).
                self.rec_set |= set_
                self.rec_clr |= clear
            elif option in EXTENSION_OPTIONS:
                self.extensions.add(option)
            else:
                data.append(option)
        self.data = ",".join(data)

    @property
    def is_bind(self) -> bool:
        """Whether this is a bind mount (bind or rbind)."""
        return bool(self.flags & k.MS_BIND)

    def bind_attrs(self) -> tuple[int, int]:
        """(attr_set, attr_clr) for mount_setattr: what a bind takes only after it is made."""
        return bind_attrs(self.flags, self.clear)


def bind_attrs(flags: int, clear: int = 0) -> tuple[int, int]:
    """mount(2) flags set and cleared as mount_setattr (attr_set, attr_clr)."""
    attr_set = attr_clr = 0
    for flag, attr in _BIND_ATTRS:
        if flags & flag:
            attr_set |= attr
        elif clear & flag:
            attr_clr |= attr
    for flag, attr in _ATIME_ATTRS:
        if flags & flag:
            attr_set = (attr_set & ~k.MOUNT_ATTR__ATIME) | attr
            attr_clr |= k.MOUNT_ATTR__ATIME
    if clear & k.MS_NOATIME and not attr_clr & k.MOUNT_ATTR__ATIME:
        attr_clr |= k.MOUNT_ATTR__ATIME  # "atime": back to the default, relatime
    return attr_set, attr_clr


def source_path(bundle: str, source: str) -> str:
    """A bind source: absolute, or relative to the bundle directory."""
    return source if source.startswith("/") else pathnames.join(bundle, source)


def set_attrs(fd: int, attr_set: int, attr_clr: int, *, recursive: bool = False) -> None:
    """mount_setattr on the mount whose root fd names (nothing to do when both are 0)."""
    if attr_set or attr_clr:
        flags = k.AT_EMPTY_PATH | (k.AT_RECURSIVE if recursive else 0)
        k.mount_setattr(fd, "", flags, attr_set=attr_set, attr_clr=attr_clr)


def propagate(fd: int, changes: list[int]) -> None:
    """Apply propagation changes (MS_SHARED, MS_SLAVE|MS_REC, ...) in order to fd's mount."""
    for change in changes:
        recursive = k.AT_RECURSIVE if change & k.MS_REC else 0
        k.mount_setattr(fd, "", k.AT_EMPTY_PATH | recursive, propagation=change & ~k.MS_REC)


def bind(
    source: str | int,
    target: int,
    options: MountOptions,
    *,
    recursive: bool,
    prepare: Callable[[int], None] | None = None,
) -> None:
    """Bind source (a host path, or an fd) onto the target fd: clone_tree, then attach it onto
    exactly the target inode."""
    tree = clone_tree(source, options, recursive=recursive, prepare=prepare)
    try:
        attach_tree(tree, target, options)
    finally:
        posix.close(tree)


def clone_tree(
    source: str | int,
    options: MountOptions,
    *,
    recursive: bool,
    prepare: Callable[[int], None] | None = None,
) -> int:
    """A detached clone (open_tree) of source with the bind's attributes set — so it is never
    visible writable when `ro` was asked — then prepare(tree) (idmapping); its fd."""
    flags = k.OPEN_TREE_CLONE | k.OPEN_TREE_CLOEXEC | (k.AT_RECURSIVE if recursive else 0)
    if isinstance(source, int):
        tree = k.open_tree(source, "", flags | k.AT_EMPTY_PATH)
    else:
        tree = k.open_tree(k.AT_FDCWD, source, flags)
    try:
        set_attrs(tree, *options.bind_attrs())
        set_attrs(tree, options.rec_set, options.rec_clr, recursive=True)
        if prepare is not None:
            prepare(tree)
    except BaseException:
        posix.close(tree)
        raise
    return tree


# Superblock flags a new mount takes as fsconfig flags (the rest of mount(2)'s are per mount).
_SB_FLAGS = (
    (k.MS_RDONLY, "ro"),
    (k.MS_SYNCHRONOUS, "sync"),
    (k.MS_DIRSYNC, "dirsync"),
    (k.MS_LAZYTIME, "lazytime"),
    (k.MS_MANDLOCK, "mand"),
)


def new_filesystem(kind: str, source: str, flags: int, data: str) -> int:
    """A detached fresh filesystem (fsopen, fsconfig, fsmount), as mount(2) would make it
    with flags and data: its fd. For what must be done to a new mount before anyone can
    reach it (tmpcopyup's copy, recursive attributes, propagation), and after it is attached
    without looking its destination up again: a process sharing a parent directory could
    have put something else there meanwhile. (mount(2)'s iversion and silent have no
    equivalent here: a tmpfs keeps i_version anyway, and silent only quiets the log.)"""
    config: dict[str, str | None] = {"source": source}
    config.update(data_options(data))
    config.update((name, None) for flag, name in _SB_FLAGS if flags & flag)
    attrs, _ = bind_attrs(flags)
    return k.fsmount(kind, config, attrs)


def data_options(data: str) -> dict[str, str | None]:
    """Mount data ("mode=755,size=64k,context=\"a:b:c0,c1\"") as fsconfig keys and values
    (None: a flag); a double-quoted value keeps its commas and loses its quotes."""
    options: dict[str, str | None] = {}
    part, quoted = "", False
    for char in data + ",":
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            if part:
                key, eq, value = part.partition("=")
                options[key] = value if eq else None
            part = ""
        else:
            part += char
    return options


def attach_tree(tree: int, target: int, options: MountOptions) -> None:
    """Attach a tree made by clone_tree onto the target fd, with the bind's propagation."""
    attach(tree, target)
    propagate(tree, options.propagation)


def attach(tree: int, target: int) -> None:
    """move_mount a detached tree (open_tree or fsmount fd) onto the target fd's inode."""
    k.move_mount(tree, "", target, "", k.MOVE_MOUNT_F_EMPTY_PATH | k.MOVE_MOUNT_T_EMPTY_PATH)


def check_proc_target(container_dest: str, kind: str, source: str) -> None:
    """Refuse mounts over /proc or inside it, except procfs itself and runc's LXCFS files."""
    if container_dest != "/proc" and not container_dest.startswith("/proc/"):
        return
    if container_dest in PROC_ALLOWED:
        return
    if container_dest == "/proc" and (kind == "proc" or _is_procfs(source)):
        return
    where = "inside /proc" if container_dest != "/proc" else "over /proc: it is not of type proc"
    raise InvalidArgument(f"mount destination {container_dest!r} cannot be mounted {where}")


def _is_procfs(source: str) -> bool:
    try:
        fd = posix.open(source, posix.O_PATH | posix.O_CLOEXEC)
    except OSError:
        return False
    try:
        return (
            posix.readlink(k.fd_path(fd)) == "/proc"
            and posix.stat("/proc").st_dev == posix.fstat(fd).st_dev
        )
    finally:
        posix.close(fd)


def describe(index: int, mount: Mount) -> str:
    """How error messages name a mount: its index and destination."""
    return f"mounts[{index}] {mount.get('destination', '')!r}"


def failure(index: int, mount: Mount, err: OSError) -> FailedPrecondition:
    """A mount failure as a one-line error naming the mount and the kernel's answer."""
    return FailedPrecondition(f"{describe(index, mount)}: {os_error_text(err)}")
