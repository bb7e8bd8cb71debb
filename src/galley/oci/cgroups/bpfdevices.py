"""cgroup v2 device rules as an eBPF program (BPF_CGROUP_DEVICE) attached to the cgroup.

cgroup v2 has no devices.allow file: the kernel runs the cgroup's device programs on every
open/mknod of a device node and allows it only if each returns 1. The program built here
reads the request (type, access, major, minor) from struct bpf_cgroup_dev_ctx and walks the
rules from the LAST to the first; the first rule that matches decides, no match denies. The
rules compiled are what the container's list leaves on v1's model (program_for): the default
first, its exceptions after it, so that a list means on v2 what it means on v1.

An allow rule matches when the requested access is a subset of the rule's ("rw" allows an
"r" open); a deny rule when they share any bit ("w" denies an "rw" open).

    r2 = ctx.access_type & 0xffff      (1 block, 2 char)
    r3 = ctx.access_type >> 16         (1 mknod, 2 read, 4 write)
    r4 = ctx.major;  r5 = ctx.minor
    per rule, newest first:  [type?] [access?] [major?] [minor?]  r0 = allow; exit
    r0 = 0; exit
"""

from __future__ import annotations

import posix

from galley.errors import InvalidArgument
from galley.kernel import bpf
from galley.kernel.bpf import insn
from galley.oci.cgroups.devices import Rule, effective_rules, plan

TYPE_CHECKING = False  # typing, and re, enum and collections with it: ~8 ms of a v2 create
if TYPE_CHECKING:
    from typing import Any

_TYPES = {"b": bpf.DEVCG_DEV_BLOCK, "c": bpf.DEVCG_DEV_CHAR}
_ACCESS = {"m": bpf.DEVCG_ACC_MKNOD, "r": bpf.DEVCG_ACC_READ, "w": bpf.DEVCG_ACC_WRITE}


def _rule_block(rule: Rule) -> list[bytes]:
    """Instructions that return rule.allow when the request matches, else fall through."""
    tests: list[tuple[int, int, int]] = []  # (register-loading insns, jump code, imm) per check
    body: list[list[bytes]] = []
    if rule.type != "a":
        body.append([])
        tests.append((2, bpf.JMP_JNE_K, _TYPES[rule.type]))
    mask = sum(_ACCESS[c] for c in rule.access)
    if mask != 7:
        inverse = (~mask & 7) if rule.allow else mask
        body.append([insn(bpf.ALU64_MOV_X, 1, 3), insn(bpf.ALU64_AND_K, 1, imm=inverse)])
        tests.append((1, bpf.JMP_JNE_K if rule.allow else bpf.JMP_JEQ_K, 0))
    if rule.major != -1:
        body.append([])
        tests.append((4, bpf.JMP_JNE_K, rule.major))
    if rule.minor != -1:
        body.append([])
        tests.append((5, bpf.JMP_JNE_K, rule.minor))
    verdict = [insn(bpf.ALU64_MOV_K, 0, imm=int(rule.allow)), insn(bpf.JMP_EXIT)]
    size = sum(len(b) + 1 for b in body) + len(verdict)
    out: list[bytes] = []
    for prep, (register, code, imm) in zip(body, tests, strict=True):
        out.extend(prep)
        out.append(insn(code, register, off=size - len(out) - 1, imm=imm))
    return out + verdict


def compile_rules(rules: list[Rule]) -> bytes:
    """The whole program for the rules (later rules take precedence)."""
    program = [
        insn(bpf.LDX_MEM_W, 2, 1, 0),
        insn(bpf.ALU64_AND_K, 2, imm=0xFFFF),
        insn(bpf.LDX_MEM_W, 3, 1, 0),
        insn(bpf.ALU64_RSH_K, 3, imm=16),
        insn(bpf.LDX_MEM_W, 4, 1, 4),
        insn(bpf.LDX_MEM_W, 5, 1, 8),
    ]
    for rule in reversed(rules):
        block = _rule_block(rule)
        program.extend(block)
        if len(block) == 2:  # matches every request: what follows is dead code, which
            return b"".join(program)  # the verifier rejects
    program += [insn(bpf.ALU64_MOV_K, 0, imm=0), insn(bpf.JMP_EXIT)]
    return b"".join(program)


def program_for(rules: list[Rule]) -> bytes:
    """The program for a container's rule list: what the list leaves on v1's model
    (devices.plan, as runc compiles its emulator's result), the default then the exceptions.
    Compiled as listed, a rule of type "a" with some access or numbers would match only those
    (v1 reads it as a reset of everything), and an allow after "allow a" would not keep the
    denies it covers."""
    default_allow, exceptions = plan(rules)
    return compile_rules([Rule(default_allow, "a", -1, -1, "rwm"), *exceptions])


def attach(directory: str, rules: list[Any], implied: list[Rule]) -> None:
    """Compile the spec's rules plus the implied ones and make it the cgroup's only filter."""
    program = program_for(effective_rules(rules, implied))
    try:
        prog_fd = bpf.load_device_program(program)
    except OSError as e:
        raise InvalidArgument(f"cgroup {directory}: loading the device filter: {e.strerror}") from e
    cgroup_fd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    try:
        bpf.replace_device_program(cgroup_fd, prog_fd)
    except OSError as e:
        raise InvalidArgument(
            f"cgroup {directory}: attaching the device filter: {e.strerror}"
        ) from e
    finally:
        posix.close(cgroup_fd)
        posix.close(prog_fd)
