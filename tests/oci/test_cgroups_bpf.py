"""The v2 device filter's bytecode, run by a small interpreter against the rule semantics.

The real kernel runs it in test_cgroups_v2; here every request shape is checked against
"newest matching rule decides, no match denies" without root.
"""

from __future__ import annotations

import itertools
import random
import struct

from galley.errors import InvalidArgument
from galley.kernel import bpf
from galley.oci.cgroups.bpfdevices import compile_rules, program_for
from galley.oci.cgroups.devices import DEFAULT_ALLOWED, Rule, plan

TYPES = {"b": bpf.DEVCG_DEV_BLOCK, "c": bpf.DEVCG_DEV_CHAR}
ACCESS = {"m": bpf.DEVCG_ACC_MKNOD, "r": bpf.DEVCG_ACC_READ, "w": bpf.DEVCG_ACC_WRITE}


def run(program: bytes, kind: int, access: int, major: int, minor: int) -> int:
    """Interpret the opcodes compile_rules emits; the context is bpf_cgroup_dev_ctx."""
    ctx = struct.pack("<III", (access << 16) | kind, major, minor)
    regs = [0] * 11
    pc, steps = 0, 0
    while True:
        steps += 1
        assert steps < 10_000 and 0 <= pc < len(program) // 8, "ran off the program"
        code, regbyte, off, imm = struct.unpack_from("<BBhi", program, pc * 8)
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == bpf.LDX_MEM_W:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == bpf.ALU64_AND_K:
            regs[dst] &= imm
        elif code == bpf.ALU64_RSH_K:
            regs[dst] >>= imm
        elif code == bpf.ALU64_MOV_K:
            regs[dst] = imm
        elif code == bpf.ALU64_MOV_X:
            regs[dst] = regs[src]
        elif code == bpf.JMP_JNE_K:
            pc += off if regs[dst] != imm else 0
        elif code == bpf.JMP_JEQ_K:
            pc += off if regs[dst] == imm else 0
        elif code == bpf.JMP_EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def expected(rules: list[Rule], kind: str, access: str, major: int, minor: int) -> int:
    asked = set(access)
    for rule in reversed(rules):
        if rule.type not in {"a", kind} or rule.major not in {-1, major}:
            continue
        if rule.minor not in {-1, minor}:
            continue
        if (asked <= set(rule.access)) if rule.allow else (asked & set(rule.access)):
            return int(rule.allow)
    return 0


def _random_rule(rng: random.Random) -> Rule:
    access = "".join(c for c in "rwm" if rng.random() < 0.6) or "r"
    return Rule(
        rng.random() < 0.6,
        rng.choice("abcc"),
        rng.choice([-1, 1, 5]),
        rng.choice([-1, 3, 9]),
        access,
    )


def test_random_rule_lists_match_the_semantics() -> None:
    rng = random.Random(4)
    requests = list(itertools.product("bc", ["r", "w", "m", "rw"], [1, 5, 7], [3, 9, 4]))
    for _ in range(150):
        rules = [_random_rule(rng) for _ in range(rng.randint(0, 6))]
        program = compile_rules(rules)
        for kind, access, major, minor in requests:
            mask = sum(ACCESS[c] for c in access)
            got = run(program, TYPES[kind], mask, major, minor)
            assert got == expected(rules, kind, access, major, minor), (rules, kind, access)


def test_a_rule_matching_everything_ends_the_program() -> None:
    everything = Rule(True, "a", -1, -1, "rwm")
    program = compile_rules([Rule(False, "c", 1, 3, "rwm"), everything])
    assert len(program) // 8 == 6 + 2  # the loads, then "allow": no unreachable code after
    assert run(program, TYPES["c"], ACCESS["r"], 1, 3) == 1


def v1_decides(rules: list[Rule], kind: str, access: str, major: int, minor: int) -> int:
    """What v1's kernel decides once the rules are written (devices.plan): an allow default
    denies a request any exception shares access with, a deny default allows one an
    exception holds whole."""
    default_allow, exceptions = plan(rules)
    asked = set(access)
    for rule in exceptions:
        if rule.type != kind or rule.major not in {-1, major} or rule.minor not in {-1, minor}:
            continue
        if (asked & set(rule.access)) if default_allow else (asked <= set(rule.access)):
            return int(not default_allow)
    return int(default_allow)


def test_a_rule_list_means_on_v2_what_it_means_on_v1() -> None:
    """The container's program (program_for) against v1's model of the same list, on random
    lists and on those a review found v2 read otherwise: "a" rules with some access or
    numbers (a reset on v1, compiled as a narrow rule), allows of one device that add up,
    and runc's trailing defaults after "allow a" (which took back the spec's denies)."""
    rng = random.Random(39)
    requests = list(itertools.product("bc", ["r", "w", "m", "rw", "rwm"], [1, 5, 7], [3, 9, 4]))
    found = [
        [Rule(True, "a", -1, -1, "rwm"), Rule(False, "a", -1, -1, "w")],
        [Rule(True, "a", -1, -1, "rwm"), Rule(False, "a", 7, 3, "rwm")],
        [Rule(False, "a", -1, -1, "rwm"), Rule(True, "c", 1, 5, "rw"), Rule(False, "a", 1, 5, "r")],
        [Rule(False, "a", -1, -1, "rwm"), Rule(True, "c", 1, 9, "r"), Rule(True, "c", 1, 9, "w")],
        [Rule(True, "a", -1, -1, "rwm"), Rule(False, "c", 10, 229, "rwm"), *DEFAULT_ALLOWED],
    ]
    lists = found + [[_random_rule(rng) for _ in range(rng.randint(0, 6))] for _ in range(300)]
    checked = 0
    for rules in lists:
        try:
            program = program_for(rules)
        except InvalidArgument:  # "cannot punch hole": refused on both
            continue
        checked += 1
        for kind, access, major, minor in requests:
            mask = sum(ACCESS[c] for c in access)
            got = run(program, TYPES[kind], mask, major, minor)
            assert got == v1_decides(rules, kind, access, major, minor), (rules, kind, access)
    assert checked > 200
    # the lists the review found: v2 had allowed the first two reads, refused the third
    assert run(program_for(found[0]), TYPES["b"], ACCESS["r"], 7, 3) == 0
    assert run(program_for(found[1]), TYPES["c"], ACCESS["r"], 1, 9) == 0
    assert run(program_for(found[3]), TYPES["c"], ACCESS["r"] | ACCESS["w"], 1, 9) == 1
    assert run(program_for(found[4]), TYPES["c"], ACCESS["m"], 10, 229) == 0
