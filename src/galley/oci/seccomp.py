"""linux.seccomp → a libseccomp filter, compiled early and loaded late, with runc's semantics.

    compile_filter(spec["linux"]["seccomp"])   in the init stage, before pivot_root: libseccomp is
        │                                      a host library, loaded now and kept in memory
        ▼
    SeccompFilter.load()                       just before execve (after prctl NO_NEW_PRIVS when
                                               noNewPrivileges; else before the uid switch, while
                                               CAP_SYS_ADMIN allows loading without NNP)

runc's rules, kept here: SCMP_ACT_ERRNO and SCMP_ACT_TRACE default to EPERM (errnoRet or
defaultErrnoRet overrides); a rule whose action equals the default action is skipped (libseccomp
refuses it); syscall names libseccomp does not know are skipped; the conditions of one rule are
ANDed unless two of them test the same argument index, in which case each becomes its own rule
(ORed); SCMP_FLTATR_CTL_NNP is off because the runtime sets no_new_privs itself; syscalls newer
than any the profile names get ENOSYS (galley.oci.seccomp_enosys).
"""

from __future__ import annotations

import errno
import posix
import sys

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import seccomp as scmp
from galley.oci import seccomp_cache as cache
from galley.oci import seccomp_enosys as enosys
from galley.oci.seccomp_rules import notify_misuse
from galley.oci.vocabulary import SECCOMP_ARCHES

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import Seccomp, SeccompArg, SeccompSyscall

ACTIONS = (
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
)
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": scmp.CMP_NE,
    "SCMP_CMP_LT": scmp.CMP_LT,
    "SCMP_CMP_LE": scmp.CMP_LE,
    "SCMP_CMP_EQ": scmp.CMP_EQ,
    "SCMP_CMP_GE": scmp.CMP_GE,
    "SCMP_CMP_GT": scmp.CMP_GT,
    "SCMP_CMP_MASKED_EQ": scmp.CMP_MASKED_EQ,
}
ARCHES = SECCOMP_ARCHES  # OCI name → libseccomp name
FLAG_TSYNC = "SECCOMP_FILTER_FLAG_TSYNC"
FLAG_LOG = "SECCOMP_FILTER_FLAG_LOG"
FLAG_SPEC_ALLOW = "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
FLAG_WAIT_KILLABLE_RECV = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
KNOWN_FLAGS = (FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW, FLAG_WAIT_KILLABLE_RECV)
_KERNEL_FLAGS = {
    FLAG_TSYNC: scmp.FILTER_FLAG_TSYNC,
    FLAG_LOG: scmp.FILTER_FLAG_LOG,
    FLAG_SPEC_ALLOW: scmp.FILTER_FLAG_SPEC_ALLOW,
    FLAG_WAIT_KILLABLE_RECV: scmp.FILTER_FLAG_WAIT_KILLABLE_RECV,
}

FEATURES: dict[str, object] = {
    "enabled": True,
    "actions": list(ACTIONS),
    "operators": sorted(OPERATORS),
    "archs": sorted(ARCHES),
    "knownFlags": list(KNOWN_FLAGS),
    "supportedFlags": [FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW],
}

_MAX_ARGS = 6
_FIELD = "linux.seccomp"


def _log(level: str, message: str, *args: object) -> None:
    """Log when `logging` is already loaded; never import it (init-stage speed and chroot)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        getattr(logging.getLogger(__name__), level)(message, *args)


def supported_flags() -> list[str]:
    """The flags this host's libseccomp and kernel can apply (for `features`)."""
    if not scmp.available():
        return []
    flags = [FLAG_TSYNC]
    level = scmp.api_level()
    if level >= 3:
        flags.append(FLAG_LOG)
    if level >= 4:
        flags.append(FLAG_SPEC_ALLOW)
    if level >= 7 and scmp.version() >= (2, 6, 0):
        flags.append(FLAG_WAIT_KILLABLE_RECV)
    return flags


class SeccompFilter:
    """A compiled filter, ready to load; `notify` when it has SCMP_ACT_NOTIFY rules.

    `program` is set when the ENOSYS prologue applies (galley.oci.seccomp_enosys) or the filter
    comes from or goes to the cache (galley.oci.seccomp_cache): the whole BPF program, loaded
    with seccomp(2) and `kernel_flags` instead of libseccomp; a cached one has no `context`.
    """

    def __init__(
        self, context: scmp.Filter | None, notify: bool, listener_path: str | None, metadata: str
    ) -> None:
        self.context = context
        self.notify = notify
        self.listener_path = listener_path
        self.listener_metadata = metadata
        self.program: bytes | None = None
        self.kernel_flags = 0

    def load(self) -> int | None:
        """Install the filter on this process; returns the notify listener fd when it has one."""
        try:
            if self.program is not None:
                flags = self.kernel_flags
                if self.notify:  # the kernel refuses TSYNC with a listener unless TSYNC_ESRCH
                    flags |= scmp.FILTER_FLAG_NEW_LISTENER
                    flags |= scmp.FILTER_FLAG_TSYNC_ESRCH if flags & scmp.FILTER_FLAG_TSYNC else 0
                fd = scmp.load_program(self.program, flags)
                return fd if self.notify else None
            assert self.context is not None  # a filter without a program has a context
            self.context.load()
        except OSError as e:
            raise FailedPrecondition(
                f"seccomp: loading the filter failed: {os_error_text(e)}"
            ) from None
        return self.context.notify_fd() if self.notify else None

    def export_bpf(self, fd: int) -> None:
        """Write libseccomp's BPF program (or the cached whole program) to fd."""
        if self.context is None:
            posix.write(fd, self.program or b"")
        else:
            self.context.export_bpf(fd)

    def raw(self) -> tuple[bytes, int]:
        """The whole BPF program and its seccomp(2) flags, for a loader other than libseccomp."""
        if self.program is None:
            assert self.context is not None  # a filter without a program has a context
            self.program = self.context.program()
        return self.program, self.kernel_flags

    def close(self) -> None:
        """Free libseccomp's copy (the loaded filter stays in the kernel)."""
        if self.context is not None:
            self.context.close()


def compile_filter(seccomp: Seccomp, cache_dir: str | None = None) -> SeccompFilter:
    """Build the filter for linux.seccomp; InvalidArgument names the bad field.

    With cache_dir (e.g. under the runtime's --root), a profile compiled before on this host is
    taken from there instead of libseccomp (see galley.oci.seccomp_cache).
    """
    if not scmp.available():
        raise FailedPrecondition(f"{_FIELD}: libseccomp is not available on this host")
    key = b""
    if cache_dir is not None and scmp.raw_load_supported():
        key = cache.key_of(seccomp)
        entry = cache.lookup(cache_dir, key)
        if entry is not None:
            return _from_cache(seccomp, entry)
    default = _action(
        seccomp.get("defaultAction", ""), seccomp.get("defaultErrnoRet"), f"{_FIELD}.defaultAction"
    )
    misuse = notify_misuse(seccomp)
    if misuse is not None:
        raise InvalidArgument(f"{_FIELD}{misuse[0]}: {misuse[1]}")
    context = scmp.Filter(default)
    try:
        filt = _build(context, seccomp, default)
        if key:
            filt.program = filt.program or context.program()
        if filt.program is not None:  # else libseccomp loads it, and refuses it there
            _check_size(filt.program)
        if key:
            cache.store(cache_dir or "", key, filt.program or b"", filt.kernel_flags, filt.notify)
        return filt
    except BaseException:
        context.close()
        raise


BPF_MAXINSNS = 4096  # the most instructions the kernel takes in one filter
_INSTRUCTION = 8  # bytes of a struct sock_filter


def _check_size(program: bytes) -> None:
    """Refuse at create a filter the kernel would refuse at start (the late filter is loaded
    only by the trampoline, after `start`)."""
    count = len(program) // _INSTRUCTION
    if count > BPF_MAXINSNS:
        raise InvalidArgument(
            f"{_FIELD}: the filter compiles to {count} BPF instructions;"
            f" the kernel loads at most {BPF_MAXINSNS}"
        )


def _from_cache(seccomp: Seccomp, entry: dict[str, object]) -> SeccompFilter:
    listener = seccomp.get("listenerPath") or None
    notify = bool(entry["notify"])
    filt = SeccompFilter(None, notify, listener, seccomp.get("listenerMetadata", ""))
    filt.program = entry["program"]  # type: ignore[assignment]
    filt.kernel_flags = entry["flags"]  # type: ignore[assignment]
    return filt


def _build(context: scmp.Filter, seccomp: Seccomp, default: int) -> SeccompFilter:
    tokens = _add_arches(context, seccomp.get("architectures") or [])
    kernel_flags = _set_flags(context, seccomp.get("flags") or [])
    notify = False
    for i, rule in enumerate(seccomp.get("syscalls") or []):
        notify |= _add_syscall_rule(context, rule, default, f"{_FIELD}.syscalls[{i}]")
    listener = seccomp.get("listenerPath") or None
    filt = SeccompFilter(context, notify, listener, seccomp.get("listenerMetadata", ""))
    filt.kernel_flags = kernel_flags
    if enosys.wanted(seccomp) and scmp.raw_load_supported():
        stub = enosys.prologue(enosys.last_syscalls(seccomp, [scmp.native_arch(), *tokens]))
        if stub:
            filt.program = stub + context.program()
    return filt


def _action(name: str, errno_ret: int | None, field: str) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return scmp.ACT_KILL_THREAD
    fixed = {
        "SCMP_ACT_KILL_PROCESS": scmp.ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": scmp.ACT_TRAP,
        "SCMP_ACT_ALLOW": scmp.ACT_ALLOW,
        "SCMP_ACT_LOG": scmp.ACT_LOG,
        "SCMP_ACT_NOTIFY": scmp.ACT_NOTIFY,
    }
    if name in fixed:
        return fixed[name]
    code = errno.EPERM if errno_ret is None else errno_ret
    if name == "SCMP_ACT_ERRNO":
        return scmp.act_errno(code)
    if name == "SCMP_ACT_TRACE":
        return scmp.act_trace(code)
    raise InvalidArgument(f"{field}: unknown seccomp action {name!r}")


def _add_arches(context: scmp.Filter, arches: list[str]) -> list[int]:
    """Add the architectures; their libseccomp tokens."""
    tokens = []
    for i, name in enumerate(arches):
        libname = ARCHES.get(name)
        if libname is None:
            raise InvalidArgument(f"{_FIELD}.architectures[{i}]: unknown architecture {name!r}")
        token = scmp.arch_token(libname)
        if token == 0:
            _log("warning", "seccomp: architecture %s is unknown to libseccomp; ignored", name)
            continue
        try:
            context.add_arch(token, name)
        except OSError as e:
            raise InvalidArgument(
                f"{_FIELD}.architectures[{i}]: {name}: {os_error_text(e)}"
            ) from None
        tokens.append(token)
    return tokens


def _set_flags(context: scmp.Filter, flags: list[str]) -> int:
    """Set the flags as libseccomp attributes; the same flags as seccomp(2) bits."""
    context.set_attr(scmp.ATTR_CTL_NNP, 0, "SCMP_FLTATR_CTL_NNP")
    supported = supported_flags()
    bits = 0
    for i, flag in enumerate(flags):
        field = f"{_FIELD}.flags[{i}]"
        if flag not in KNOWN_FLAGS:
            raise InvalidArgument(f"{field}: unknown seccomp flag {flag!r}")
        if flag not in supported:
            raise InvalidArgument(f"{field}: {flag} is not supported by this libseccomp or kernel")
        attr = {
            FLAG_TSYNC: scmp.ATTR_CTL_TSYNC,
            FLAG_LOG: scmp.ATTR_CTL_LOG,
            FLAG_SPEC_ALLOW: scmp.ATTR_CTL_SSB,
            FLAG_WAIT_KILLABLE_RECV: scmp.ATTR_CTL_WAITKILL,
        }[flag]
        try:
            context.set_attr(attr, 1, flag)
        except OSError as e:
            raise InvalidArgument(f"{field}: {os_error_text(e)}") from None
        bits |= _KERNEL_FLAGS[flag]
    return bits


def _add_syscall_rule(context: scmp.Filter, rule: SeccompSyscall, default: int, field: str) -> bool:
    """Add one syscalls[] entry; True when its action is SCMP_ACT_NOTIFY."""
    name = rule.get("action", "")
    action = _action(name, rule.get("errnoRet"), f"{field}.action")
    names = rule.get("names") or []
    groups = _condition_groups(rule.get("args") or [], f"{field}.args")
    if action == default:
        _log("debug", "seccomp: %s has the default action; skipped", field)
        return False
    for syscall in names:
        number = scmp.syscall_number(syscall)
        if number == scmp.NR_SCMP_ERROR:
            _log("debug", "seccomp: unknown syscall %r in %s; skipped", syscall, field)
            continue
        for conditions in groups:
            try:
                context.add_rule(action, number, conditions, syscall)
            except OSError as e:
                raise InvalidArgument(f"{field}: syscall {syscall!r}: {os_error_text(e)}") from None
    return name == "SCMP_ACT_NOTIFY"


def _condition_groups(args: list[SeccompArg], field: str) -> list[list[scmp.ArgCmp]]:
    """One AND-group of all conditions, or (an index repeats) one group per condition."""
    conditions = [_condition(arg, f"{field}[{i}]") for i, arg in enumerate(args)]
    indexes = [c.arg for c in conditions]
    if len(set(indexes)) < len(indexes):
        return [[c] for c in conditions]
    return [conditions]


def _condition(arg: SeccompArg, field: str) -> scmp.ArgCmp:
    index = arg.get("index", 0)
    if not 0 <= index < _MAX_ARGS:
        raise InvalidArgument(f"{field}.index: {index} is not an argument index 0-5")
    op = OPERATORS.get(arg.get("op", ""))
    if op is None:
        raise InvalidArgument(f"{field}.op: unknown seccomp operator {arg.get('op')!r}")
    value, value_two = arg.get("value", 0), arg.get("valueTwo", 0)
    for v in (value, value_two):
        if not 0 <= v < 1 << 64:
            raise InvalidArgument(f"{field}: value {v} is not a 64-bit unsigned integer")
    if op != scmp.CMP_MASKED_EQ:
        value_two = 0
    return scmp.ArgCmp(index, op, value, value_two)
