"""runc's -ENOSYS prologue: syscalls newer than any a seccomp profile names fail with ENOSYS.

A profile written before a syscall existed cannot name it, so its default action (often
SCMP_ACT_ERRNO, EPERM) applies; libcs that probe a new syscall and fall back only on ENOSYS
(clone3, fchmodat2, ...) then break. As runc 1.1 does, a short classic-BPF prologue runs before
libseccomp's program: for each architecture in the filter, a syscall number above the highest one
the profile names returns ENOSYS; everything else falls through to libseccomp's program.

    ld   [arch]
    jeq  #ARCH, 0, <next arch>        one block per kernel architecture
    ld   [nr]
    jgt  #LAST, <enosys>, <filter>    (x86-64 and x32 share AUDIT_ARCH_X86_64: `jset #bit30`
    ...                                 chooses which LAST applies)
    ja   <filter>                     an architecture without a block
    ret  ERRNO(ENOSYS)                <enosys>
    <libseccomp's program>            <filter>

Not added when the default action already lets unknown calls through (ALLOW, LOG, TRACE: a
tracer handles new calls itself) or already answers ENOSYS.
"""

from __future__ import annotations

import errno

from galley.kernel import seccomp as scmp

TYPE_CHECKING = False  # not `from typing`: typing costs ~10 ms in the init stage
if TYPE_CHECKING:
    from galley.oci.spec import Seccomp

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_X32 = 0x4000003E  # libseccomp's token; the kernel reports x32 as X86_64 | bit 30
X32_SYSCALL_BIT = 0x40000000
_PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")
_BPF_JA = 0x05

# One instruction before label resolution: (code, jt, jf, k); jumps name labels.
_Op = tuple[int, "int | str", "int | str", "int | str"]


def wanted(seccomp: Seccomp) -> bool:
    """Whether the profile's default action makes the prologue useful (runc's rule)."""
    default = seccomp.get("defaultAction", "")
    if default in _PERMISSIVE:
        return False
    return not (default == "SCMP_ACT_ERRNO" and seccomp.get("defaultErrnoRet") == errno.ENOSYS)


def last_syscalls(seccomp: Seccomp, arch_tokens: list[int]) -> dict[int, int]:
    """For each libseccomp arch token, the highest syscall number the profile names there."""
    names = {name for rule in seccomp.get("syscalls") or [] for name in rule.get("names") or []}
    last: dict[int, int] = {}
    for token in arch_tokens:
        numbers = [scmp.syscall_number_arch(name, token) for name in names]
        valid = [n for n in numbers if n >= 0]
        if valid:
            last[token] = max(valid)
    return last


def prologue(last: dict[int, int]) -> bytes:
    """The BPF prologue for these per-arch last numbers (empty when there is nothing to check)."""
    if not last:
        return b""
    ops: list[_Op] = [(scmp.BPF_LD_W_ABS, 0, 0, scmp.SECCOMP_DATA_ARCH)]
    labels: dict[str, int] = {}
    blocks = _kernel_arches(last)
    for i, (kernel_arch, native_last, x32_last) in enumerate(blocks):
        ops.append((scmp.BPF_JMP_JEQ_K, 0, f"arch{i + 1}", kernel_arch))
        ops.append((scmp.BPF_LD_W_ABS, 0, 0, scmp.SECCOMP_DATA_NR))
        if kernel_arch == AUDIT_ARCH_X86_64:
            ops.append((scmp.BPF_JMP_JSET_K, f"x32_{i}", 0, X32_SYSCALL_BIT))
            ops.append(_above(native_last))
            labels[f"x32_{i}"] = len(ops)
            ops.append(_above(x32_last))
        else:
            ops.append(_above(native_last))
        labels[f"arch{i + 1}"] = len(ops)
    ops.append((_BPF_JA, 0, 0, "filter"))
    labels["enosys"] = len(ops)
    ops.append((scmp.BPF_RET_K, 0, 0, scmp.SECCOMP_RET_ERRNO | errno.ENOSYS))
    labels["filter"] = len(ops)
    return _assemble(ops, labels)


def _kernel_arches(last: dict[int, int]) -> list[tuple[int, int | None, int | None]]:
    """(kernel arch, last native number, last x32 number) with x86-64 and x32 merged."""
    merged: dict[int, tuple[int | None, int | None]] = {}
    for token, number in sorted(last.items()):
        if token == AUDIT_ARCH_X32:
            native, _ = merged.get(AUDIT_ARCH_X86_64, (None, None))
            merged[AUDIT_ARCH_X86_64] = (native, number)
        elif token == AUDIT_ARCH_X86_64:
            _, x32 = merged.get(AUDIT_ARCH_X86_64, (None, None))
            merged[AUDIT_ARCH_X86_64] = (number, x32)
        else:
            merged[token] = (number, None)
    return [(arch, native, x32) for arch, (native, x32) in merged.items()]


def _above(last: int | None) -> _Op:
    """nr > last → ENOSYS, else the filter; no known last (arch absent) → the filter."""
    if last is None:
        return (_BPF_JA, 0, 0, "filter")
    return (scmp.BPF_JMP_JGT_K, "enosys", "filter", last)


def _assemble(ops: list[_Op], labels: dict[str, int]) -> bytes:
    program = bytearray()
    for index, (code, jt, jf, k) in enumerate(ops):

        def offset(target: int | str, index: int = index) -> int:
            if isinstance(target, int):
                return target
            distance = labels[target] - (index + 1)
            if not 0 <= distance <= 255:
                raise ValueError(f"seccomp prologue: jump to {target} out of range")
            return distance

        k_value = labels[k] - (index + 1) if isinstance(k, str) else k
        instruction = scmp.Instruction(code, offset(jt), offset(jf), k_value)
        program += bytes(instruction)
    return bytes(program)
