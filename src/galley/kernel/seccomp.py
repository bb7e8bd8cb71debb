"""libseccomp 2.5 through ffi: build a filter context, add rules, load or export it.

libseccomp returns negative errno values (not -1 with errno set); `_check` turns them into
OSError naming the call. A `Filter` owns one scmp_filter_ctx and releases it when closed. Rules
are added by syscall number for the native architecture; libseccomp translates them for every
architecture added to the filter.
"""

from __future__ import annotations

import io
import posix

from galley.kernel import ffi
from galley.kernel.libc import MACHINE, check, function

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from typing import Any

# Actions (seccomp.h).
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_ACT_TRACE = 0x7FF00000

# Comparison operators (enum scmp_compare).
CMP_NE = 1
CMP_LT = 2
CMP_LE = 3
CMP_EQ = 4
CMP_GE = 5
CMP_GT = 6
CMP_MASKED_EQ = 7

# Filter attributes (enum scmp_filter_attr); WAITKILL exists from libseccomp 2.6 only.
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_TSYNC = 4
ATTR_API_TSKIP = 5
ATTR_CTL_LOG = 6
ATTR_CTL_SSB = 7
ATTR_CTL_OPTIMIZE = 8
ATTR_API_SYSRAWRC = 9
ATTR_CTL_WAITKILL = 10

NR_SCMP_ERROR = -1


def act_errno(errno: int) -> int:
    """SCMP_ACT_ERRNO(errno)."""
    return _ACT_ERRNO | (errno & 0xFFFF)


def act_trace(msg: int) -> int:
    """SCMP_ACT_TRACE(msg)."""
    return _ACT_TRACE | (msg & 0xFFFF)


class ArgCmp(ffi.Structure):
    """struct scmp_arg_cmp: argument index, operator, two 64-bit operands."""

    _fields_ = (
        ("arg", ffi.c_uint),
        ("op", ffi.c_int),
        ("datum_a", ffi.c_uint64),
        ("datum_b", ffi.c_uint64),
    )


class _Version(ffi.Structure):
    _fields_ = (("major", ffi.c_uint), ("minor", ffi.c_uint), ("micro", ffi.c_uint))


_lib: ffi.CDLL | None = None


def _library() -> ffi.CDLL:
    global _lib  # noqa: PLW0603 - one handle per process, loaded lazily
    if _lib is None:
        lib = _open("libseccomp.so.2")
        _declare(lib)
        _lib = lib
    return _lib


def _open(soname: str) -> ffi.CDLL:
    """dlopen the library; only when that fails ask ctypes.util (it costs ~10 ms to import)."""
    try:
        return ffi.CDLL(soname, use_errno=True)
    except OSError:
        from ctypes import util  # noqa: PLC0415 - slow import, only on unusual hosts

        name = util.find_library("seccomp")
        try:
            return ffi.CDLL(name or soname, use_errno=True)
        except OSError as e:
            raise OSError(2, f"libseccomp: cannot load {name or soname}: {e}") from None


def _declare(lib: ffi.CDLL) -> None:
    vp, u32, c_int, c_char_p = ffi.c_void_p, ffi.c_uint32, ffi.c_int, ffi.c_char_p
    signatures: dict[str, tuple[Any, ...]] = {
        "seccomp_init": (vp, u32),
        "seccomp_release": (None, vp),
        "seccomp_arch_add": (c_int, vp, u32),
        "seccomp_arch_resolve_name": (u32, c_char_p),
        "seccomp_arch_native": (u32,),
        "seccomp_attr_set": (c_int, vp, c_int, u32),
        "seccomp_syscall_resolve_name": (c_int, c_char_p),
        "seccomp_syscall_resolve_name_arch": (c_int, u32, c_char_p),
        "seccomp_syscall_resolve_num_arch": (vp, u32, c_int),
        "seccomp_rule_add_array": (c_int, vp, u32, c_int, ffi.c_uint, ffi.POINTER(ArgCmp)),
        "seccomp_load": (c_int, vp),
        "seccomp_export_bpf": (c_int, vp, c_int),
        "seccomp_notify_fd": (c_int, vp),
        "seccomp_api_get": (ffi.c_uint,),
        "seccomp_version": (ffi.POINTER(_Version),),
    }
    for name, (restype, *argtypes) in signatures.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _check(result: int, what: str) -> int:
    if result < 0:
        raise OSError(-result, f"{what}: {posix.strerror(-result)}")
    return result


def available() -> bool:
    """Whether libseccomp can be loaded on this host."""
    try:
        _library()
    except OSError:
        return False
    return True


def version() -> tuple[int, int, int]:
    """libseccomp's (major, minor, micro)."""
    v = _library().seccomp_version().contents
    return (v.major, v.minor, v.micro)


def api_level() -> int:
    """libseccomp's API level for the running kernel (seccomp_api_get)."""
    return int(_library().seccomp_api_get())


def arch_token(name: str) -> int:
    """The AUDIT_ARCH token of a libseccomp arch name ("x86_64"), or 0 when unknown."""
    return int(_library().seccomp_arch_resolve_name(name.encode()))


def syscall_number(name: str) -> int:
    """The native syscall number of name (negative pseudo-numbers for other-arch-only calls),
    or NR_SCMP_ERROR when libseccomp does not know the name."""
    return int(_library().seccomp_syscall_resolve_name(name.encode()))


def syscall_number_arch(name: str, token: int) -> int:
    """The syscall number of name on the architecture token (x32 numbers carry bit 30)."""
    return int(_library().seccomp_syscall_resolve_name_arch(token, name.encode()))


def syscall_name(number: int, token: int = 0) -> str | None:
    """The name of syscall number on arch token (0: native), or None when unknown."""
    lib = _library()
    pointer = lib.seccomp_syscall_resolve_num_arch(token or lib.seccomp_arch_native(), number)
    if not pointer:
        return None
    name = ffi.string_at(pointer).decode()
    function("free", None, ffi.c_void_p)(pointer)  # libseccomp hands back a malloc'd copy
    return name


def native_arch() -> int:
    """The AUDIT_ARCH token of the running architecture."""
    return int(_library().seccomp_arch_native())


# Raw seccomp(2): BPF encoding (linux/filter.h, linux/bpf_common.h) and filter flags.
BPF_LD_W_ABS = 0x20
BPF_JMP_JEQ_K = 0x15
BPF_JMP_JGT_K = 0x25
BPF_JMP_JSET_K = 0x45
BPF_RET_K = 0x06
SECCOMP_DATA_NR = 0
SECCOMP_DATA_ARCH = 4
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_SET_MODE_FILTER = 1
FILTER_FLAG_TSYNC = 1
FILTER_FLAG_LOG = 2
FILTER_FLAG_SPEC_ALLOW = 4
FILTER_FLAG_NEW_LISTENER = 8
FILTER_FLAG_TSYNC_ESRCH = 16
FILTER_FLAG_WAIT_KILLABLE_RECV = 32
_NR_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "ppc64le": 358, "s390x": 348}


class Instruction(ffi.Structure):
    """struct sock_filter: one classic-BPF instruction."""

    _fields_ = (
        ("code", ffi.c_uint16),
        ("jt", ffi.c_uint8),
        ("jf", ffi.c_uint8),
        ("k", ffi.c_uint32),
    )


class _Program(ffi.Structure):
    _fields_ = (("len", ffi.c_ushort), ("filter", ffi.POINTER(Instruction)))


def raw_load_supported() -> bool:
    """Whether this module knows the seccomp(2) number of the running architecture."""
    return MACHINE in _NR_SECCOMP


def load_program(program: bytes, flags: int) -> int:
    """seccomp(SECCOMP_SET_MODE_FILTER, flags, program): install raw BPF (needs no_new_privs
    or CAP_SYS_ADMIN); returns the listener fd with FILTER_FLAG_NEW_LISTENER, else 0."""
    count = len(program) // ffi.sizeof(Instruction)
    instructions = (Instruction * count).from_buffer_copy(program)
    fprog = _Program(count, instructions)
    syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_uint, ffi.c_uint, ffi.c_void_p)
    nr = _NR_SECCOMP[MACHINE]
    result = syscall(nr, SECCOMP_SET_MODE_FILTER, flags, ffi.byref(fprog))
    return check(result, f"seccomp SECCOMP_SET_MODE_FILTER flags={flags:#x} ({count} instructions)")


_NR_PIDFD_GETFD = 438  # one number on every architecture (the unified syscall table)


def take_fd(pid: int, fd: int) -> int:
    """A copy of process pid's fd (pidfd_getfd(2)): how the runtime process fetches the seccomp
    notify fd from the container's init, which can only talk to it over pipes."""
    pidfd = posix.pidfd_open(pid)
    try:
        syscall = function("syscall", ffi.c_long, ffi.c_long, ffi.c_int, ffi.c_int, ffi.c_uint)
        return check(syscall(_NR_PIDFD_GETFD, pidfd, fd, 0), f"pidfd_getfd pid {pid} fd {fd}")
    finally:
        posix.close(pidfd)


class Filter:
    """One libseccomp filter context."""

    def __init__(self, default_action: int) -> None:
        lib = _library()
        ctx = lib.seccomp_init(default_action)
        if not ctx:
            raise OSError(22, f"seccomp_init: invalid default action {default_action:#x}")
        self._lib = lib
        self._ctx: int | None = ctx

    def _context(self) -> int:
        if self._ctx is None:
            raise ValueError("seccomp filter is closed")
        return self._ctx

    def add_arch(self, token: int, name: str) -> None:
        """Add an architecture; adding one already present (the native one) is fine."""
        result = self._lib.seccomp_arch_add(self._context(), token)
        if result != -17:  # EEXIST
            _check(result, f"seccomp_arch_add {name}")

    def set_attr(self, attr: int, value: int, what: str) -> None:
        """seccomp_attr_set."""
        _check(self._lib.seccomp_attr_set(self._context(), attr, value), f"seccomp_attr_set {what}")

    def add_rule(self, action: int, syscall: int, conditions: list[ArgCmp], name: str) -> None:
        """seccomp_rule_add_array: all conditions must hold (AND)."""
        array = (ArgCmp * max(len(conditions), 1))(*conditions)
        result = self._lib.seccomp_rule_add_array(
            self._context(), action, syscall, len(conditions), array
        )
        _check(result, f"seccomp_rule_add {name}")

    def load(self) -> None:
        """seccomp_load: install the filter on the calling thread (or all, with TSYNC)."""
        _check(self._lib.seccomp_load(self._context()), "seccomp_load")

    def notify_fd(self) -> int:
        """The user-notification listener fd of a loaded filter with SCMP_ACT_NOTIFY rules."""
        return _check(self._lib.seccomp_notify_fd(self._context()), "seccomp_notify_fd")

    def export_bpf(self, fd: int) -> None:
        """Write the filter's BPF program to fd."""
        _check(self._lib.seccomp_export_bpf(self._context(), fd), "seccomp_export_bpf")

    def program(self) -> bytes:
        """The filter's BPF program as bytes (exported through a memfd)."""
        fd = posix.memfd_create("galley-seccomp", posix.MFD_CLOEXEC)
        try:
            self.export_bpf(fd)
            size = posix.lseek(fd, 0, io.SEEK_CUR)
            return posix.pread(fd, size, 0)
        finally:
            posix.close(fd)

    def close(self) -> None:
        """Release the context (a loaded filter stays in the kernel)."""
        if self._ctx is not None:
            self._lib.seccomp_release(self._ctx)
            self._ctx = None
