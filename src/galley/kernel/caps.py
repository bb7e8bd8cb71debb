"""Capabilities: names and numbers, capget/capset, the bounding set, ambient caps, keepcaps.

A process has five capability sets. Three live in one capset(2) call (effective, permitted,
inheritable: 64-bit masks split into two 32-bit words, _LINUX_CAPABILITY_VERSION_3); the bounding
set can only shrink (prctl PR_CAPBSET_DROP, which needs CAP_SETPCAP in the *effective* set); the
ambient set is raised one capability at a time (PR_CAP_AMBIENT_RAISE) and only for capabilities
already in both permitted and inheritable.

Changing uid from 0 to non-zero clears permitted and effective unless PR_SET_KEEPCAPS is set; even
then effective is cleared, so the caller re-raises effective from permitted with capset afterwards.
"""

from __future__ import annotations

from galley.kernel import ffi, pathnames
from galley.kernel.libc import check, function

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from collections.abc import Callable

# Index = capability number (linux/capability.h), up to CAP_CHECKPOINT_RESTORE = 40.
CAPABILITY_NAMES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
CAPABILITY_NUMBERS: dict[str, int] = {name: i for i, name in enumerate(CAPABILITY_NAMES)}

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_KEEPCAPS = 8
PR_GET_KEEPCAPS = 7
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


class _Header(ffi.Structure):
    _fields_ = (("version", ffi.c_uint32), ("pid", ffi.c_int))


class _Data(ffi.Structure):
    _fields_ = (
        ("effective", ffi.c_uint32),
        ("permitted", ffi.c_uint32),
        ("inheritable", ffi.c_uint32),
    )


class CapSets:
    """The effective, permitted and inheritable sets as bit masks (bit n = capability n).

    A plain class, not a dataclass: the container's init stage imports this module and every
    millisecond of imports there is paid per container.
    """

    __slots__ = ("effective", "inheritable", "permitted")

    def __init__(self, effective: int, permitted: int, inheritable: int) -> None:
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapSets):
            return NotImplemented
        return (self.effective, self.permitted, self.inheritable) == (
            other.effective,
            other.permitted,
            other.inheritable,
        )

    def __hash__(self) -> int:
        return hash((self.effective, self.permitted, self.inheritable))

    def __repr__(self) -> str:
        return (
            f"CapSets(effective={self.effective:#x}, permitted={self.permitted:#x},"
            f" inheritable={self.inheritable:#x})"
        )


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number the running kernel knows (/proc/sys/kernel/cap_last_cap),
    read once: after pivot_root the container may have no /proc."""
    global _last_cap  # noqa: PLW0603 - read once per process
    if _last_cap is None:
        try:
            text = pathnames.read_bytes("/proc/sys/kernel/cap_last_cap")
            _last_cap = min(int(text), len(CAPABILITY_NAMES) - 1)
        except (OSError, ValueError):
            _last_cap = len(CAPABILITY_NAMES) - 1
    return _last_cap


def mask_of(names: list[str] | tuple[str, ...] | set[str]) -> int:
    """The bit mask of capability names known to this table (unknown names are ignored)."""
    mask = 0
    for name in names:
        number = CAPABILITY_NUMBERS.get(name)
        if number is not None:
            mask |= 1 << number
    return mask


def names_of(mask: int) -> list[str]:
    """The capability names whose bits are set in mask, in number order."""
    return [name for i, name in enumerate(CAPABILITY_NAMES) if mask >> i & 1]


def capget(pid: int = 0) -> CapSets:
    """capget(2) for pid (0: the calling thread)."""
    header = _Header(_LINUX_CAPABILITY_VERSION_3, pid)
    data = (_Data * 2)()
    check(_libc_fn("capget")(ffi.byref(header), data), f"capget pid {pid}")
    return CapSets(
        effective=data[0].effective | data[1].effective << 32,
        permitted=data[0].permitted | data[1].permitted << 32,
        inheritable=data[0].inheritable | data[1].inheritable << 32,
    )


def capset(sets: CapSets) -> None:
    """capset(2) on the calling thread: effective ⊆ permitted, permitted can only shrink."""
    header = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for word in (0, 1):
        shift = 32 * word
        data[word].effective = sets.effective >> shift & 0xFFFFFFFF
        data[word].permitted = sets.permitted >> shift & 0xFFFFFFFF
        data[word].inheritable = sets.inheritable >> shift & 0xFFFFFFFF
    fn = _libc_fn("capset")
    what = (
        f"capset effective={sets.effective:#x} permitted={sets.permitted:#x}"
        f" inheritable={sets.inheritable:#x}"
    )
    check(fn(ffi.byref(header), data), what)


_bound: dict[str, Callable[..., int]] = {}


def _libc_fn(name: str) -> Callable[..., int]:
    """capget, capset or prctl, declared once (the bounding drop calls prctl ~40 times)."""
    fn = _bound.get(name)
    if fn is None:
        if name == "prctl":
            ulong = ffi.c_ulong
            fn = function("prctl", ffi.c_int, ffi.c_int, ulong, ulong, ulong, ulong)
        else:
            fn = function(name, ffi.c_int, ffi.POINTER(_Header), ffi.POINTER(_Data))
        _bound[name] = fn
    return fn


def _prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "prctl") -> int:
    return check(_libc_fn("prctl")(option, arg2, arg3, 0, 0), what)


def bounding_has(cap: int) -> bool:
    """Whether capability number cap is in the calling thread's bounding set."""
    return _prctl(PR_CAPBSET_READ, cap, what=f"prctl PR_CAPBSET_READ {_name(cap)}") == 1


def bounding_drop(cap: int) -> None:
    """Remove capability number cap from the bounding set (needs effective CAP_SETPCAP)."""
    _prctl(PR_CAPBSET_DROP, cap, what=f"prctl PR_CAPBSET_DROP {_name(cap)}")


def ambient_clear() -> None:
    """Empty the ambient set."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="prctl PR_CAP_AMBIENT_CLEAR_ALL")


def ambient_raise(cap: int) -> None:
    """Add capability number cap to the ambient set (it must be permitted and inheritable)."""
    what = f"prctl PR_CAP_AMBIENT_RAISE {_name(cap)}"
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, what=what)


def ambient_has(cap: int) -> bool:
    """Whether capability number cap is in the ambient set."""
    what = f"prctl PR_CAP_AMBIENT_IS_SET {_name(cap)}"
    return _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, what=what) == 1


def set_keepcaps(keep: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across a setuid from 0 to non-zero."""
    _prctl(PR_SET_KEEPCAPS, int(keep), what=f"prctl PR_SET_KEEPCAPS {int(keep)}")


def _name(cap: int) -> str:
    return CAPABILITY_NAMES[cap] if 0 <= cap < len(CAPABILITY_NAMES) else f"capability {cap}"
