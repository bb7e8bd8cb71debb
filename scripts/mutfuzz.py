#!/usr/bin/env python3
"""Mutation fuzzer: difffuzz's configs with one or two fields broken, under runc and galley-runc.

difffuzz.py draws configs that are valid; the issue also asks that a malformed or
contradictory config gets one line naming the field, exit status 1, and leaves nothing
behind. Each case here takes difffuzz's case of the same seed and number and, from
`random.Random(f"mutfuzz-{seed}-{case}")`, changes one or two of its fields: a value of
another type (null, a boolean, a number, a string, an array, an object), a number at or past
a limit (-1, 2^31, 2^32, 2^63, 2^64, a fraction, NaN), a string made empty, relative,
climbing (`../`), long, or holding a NUL, an array emptied, shortened, doubled or given a
stray element, an object given an unknown member or losing one. Then it runs the config
under both runtimes, as difffuzz runs one, and reports a case when:

- galley-runc refused it and its stderr is not one error line (a traceback, Python's words
  such as "NoneType"), or its status is not 1;
- galley-runc's error is about the config (not about running the container: a mount, a
  hook, the kernel) and does not start with a field's path;
- galley-runc's `run` left a state directory, cgroup or mount behind, or made a file in the
  bundle outside the root filesystem;
- one runtime ran the container and the other refused it, or both ran it and the probe saw
  something else (difffuzz's comparison), unless the unbroken case differs alike.

A case where galley-runc refused, naming the broken field, what runc ran is printed as
"stricter", not counted: runc reads what it can of a field (a relative masked path, an
empty read-only one) where galley-runc holds it to the runtime spec.

    python scripts/mutfuzz.py --seed 1 -n 100 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/mutfuzz.py --seed 1 --case 17 ...        # replay one case
    python scripts/mutfuzz.py --seed 1 --case 17 --print-config
    python scripts/mutfuzz.py --seed 1 -n 100 --rootless 62117 ...   # difffuzz's rootless cases
    python scripts/mutfuzz.py --seed 1 -n 100 --spec-fields ...       # the spec's rarer fields

--spec-fields sets, in each case, one of the spec's fields difffuzz never draws (ioPriority,
scheduler, memoryPolicy, timeOffsets, cgroup v2's unified, rdma, blockIO devices, umask ...),
with a value that is valid or one that is not (SPEC_FIELDS), and breaks another field in a
third of the cases.

Not broken, so that no case can reach the host: linux.namespaces (a config without a mount
or network namespace acts on the host's), process.args (the probe) and linux.cgroupsPath (set
per runtime). The script re-runs itself in a private mount namespace, so that a mount either
runtime makes outside the container's own namespace goes when it ends.

Needs root. Everything a case creates is removed after it, as in difffuzz.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import difffuzz

Config = dict[str, Any]
JsonPath = tuple[str | int, ...]

# Subtrees never broken (see the docstring).
PROTECTED: list[JsonPath] = [("linux", "namespaces"), ("process", "args"), ("linux", "cgroupsPath")]

NUMBERS: list[object] = [
    -1,
    0,
    1,
    2**31,
    2**32,
    2**32 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    1.5,
    float("nan"),
]
STRINGS = ["", " ", "x", "../../mutfuzz-escape", "/nonexistent/mutfuzz", "a\0b", "é☃", "x" * 5000]
OTHER_TYPES: list[object] = [None, True, False, 0, "", "x", [], {}]

# Python's words in an error: a message that shows them was never meant for a person.
PYTHONISMS = re.compile(
    r"Traceback|NoneType|object is not|has no attribute|unhashable|KeyError|TypeError|"
    r"IndexError|AttributeError|ValueError|list index|not subscriptable|invalid literal"
)


# An error from running the container (a mount, a hook, the kernel), not from reading the
# config: it says what failed, which need not be a field.
RUNTIME_PHASE = re.compile(r"unable to start container process|error running hook|.*hook |cgroup /")
# A config error starts with the field's path: "process.user.uid: ...", "mounts[2].type: ...".
FIELD_FIRST = re.compile(r"^[A-Za-z][\w.\[\]-]*: ")


@dataclass
class Mutation:
    path: JsonPath
    what: str

    def field(self) -> str:
        """The path as galley-runc names fields: process.user.uid, mounts[2].options[0]."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text


def nodes(value: object, path: JsonPath = ()) -> list[JsonPath]:
    """Every path in the document under value, containers before their members."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += nodes(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += nodes(item, (*path, i))
    return found


def protected(path: JsonPath) -> bool:
    for prefix in PROTECTED:
        if path[: len(prefix)] == prefix:
            # A namespace's path may be broken: a bad one is refused, never the host's.
            return not (prefix == ("linux", "namespaces") and path[-1:] == ("path",))
        if prefix[: len(path)] == path and len(path) < len(prefix):
            # A container of a protected member (linux, process) may lose other members
            # or get new ones, but is not replaced whole.
            return True
    return False


def get(doc: object, path: JsonPath) -> Any:
    for part in path:
        doc = doc[part]  # type: ignore[index]
    return doc


# --spec-fields: the spec's rarer fields (difffuzz draws none of them), each with values that
# are valid and values that are not. Never linux.netDevices (it moves host interfaces) nor
# sysctls (a case without a network namespace would set the host's).
SPEC_FIELDS: list[tuple[JsonPath, list[object]]] = [
    (
        ("process", "ioPriority"),
        [
            {"class": "IOPRIO_CLASS_BE", "priority": 4},
            {"class": "IOPRIO_CLASS_RT", "priority": 9},
            {"class": "X"},
            {"priority": 1},
        ],
    ),
    (
        ("process", "scheduler"),
        [
            {"policy": "SCHED_BATCH", "nice": 5},
            {"policy": "SCHED_IDLE"},
            {"policy": "SCHED_OTHER", "priority": 3},
            {
                "policy": "SCHED_DEADLINE",
                "runtime": 10**6,
                "deadline": 2 * 10**6,
                "period": 2 * 10**6,
            },
            {"policy": "SCHED_FIFO"},
            {"policy": "X"},
        ],
    ),
    (("process", "oomScoreAdj"), [0, 500, -1000, 1001, "5"]),
    (("process", "consoleSize"), [{"height": 10, "width": 20}, {"height": -1, "width": 1}]),
    (
        ("process", "execCPUAffinity"),
        [{"initial": "0"}, {"final": "0-1"}, {"initial": "99999"}, {"final": "x"}],
    ),
    (("process", "apparmorProfile"), ["", "unconfined", "x"]),
    (("process", "selinuxLabel"), ["", "system_u:system_r:container_t:s0"]),
    (("process", "user", "umask"), [0, 0o777, 0o1000, -1, 2**32]),
    (("process", "user", "username"), ["root", ""]),
    (
        ("process", "rlimits"),
        [
            [{"type": "RLIMIT_NOFILE", "soft": 2**64 - 1, "hard": 2**64 - 1}],
            [{"type": "RLIMIT_NOFILE", "soft": 2**64, "hard": 2**64}],
            [{"type": "RLIMIT_CPU", "soft": 5}],
        ],
    ),
    (
        ("linux", "memoryPolicy"),
        [
            {"mode": "MPOL_DEFAULT"},
            {"mode": "MPOL_BIND", "nodes": "0"},
            {"mode": "MPOL_INTERLEAVE", "nodes": "5"},
            {"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]},
            {"mode": "X"},
        ],
    ),
    (
        ("linux", "timeOffsets"),
        [
            {"monotonic": {"secs": 10}},
            {"boottime": {"secs": 1, "nanosecs": 10**9}},
            {"realtime": {}},
        ],
    ),
    (("linux", "intelRdt"), [{"closID": "x"}, {}]),
    (("linux", "mountLabel"), ["", "system_u:object_r:container_file_t:s0"]),
    (
        ("linux", "resources", "unified"),
        [{"memory.max": "100000000"}, {"x": "1"}, {"../cpu.max": "1"}, {"memory.high": "x"}],
    ),
    (("linux", "resources", "rdma"), [{"mlx4_0": {"hcaHandles": 1}}]),
    (
        ("linux", "resources", "hugepageLimits"),
        [[{"pageSize": "2MB", "limit": 0}], [{"pageSize": "3MB", "limit": 1}]],
    ),
    (
        ("linux", "resources", "network"),
        [
            {"classID": 5, "priorities": [{"name": "lo", "priority": 1}]},
            {"priorities": [{"name": "a/b", "priority": 1}]},
        ],
    ),
    (
        ("linux", "resources", "blockIO"),
        [
            {"weightDevice": [{"major": 8, "minor": 0, "weight": 100}]},
            {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1000}]},
            {"weight": 5},
        ],
    ),
    (("linux", "resources", "memory", "checkBeforeUpdate"), [True, "yes"]),
    # Not idle 1: runc 1.1 ignores it, and an idle group reads cpu.shares 3 (known).
    (("linux", "resources", "cpu", "idle"), [0, 2]),
    (("linux", "resources", "cpu", "burst"), [1000, -1]),
    (("linux", "resources", "pids"), [{"limit": 0}, {"limit": -1}, {}]),
    (
        ("linux", "resources", "devices"),
        [[{"allow": True, "type": "z"}], [{"allow": False, "access": "rwm"}]],
    ),
    (("domainname",), ["x.example", "a" * 65]),
    (("annotations",), [{"a": "b"}, {"org.opencontainers.x": 5}, {"": "x"}]),
    (("hooks", "createContainer"), [[{"path": "/bin/true"}], [{"path": "/nonexistent"}]]),
    (("hooks", "prestart"), [[{"path": "/bin/true", "timeout": 0}], [{"path": "bin/true"}]]),
    (("root", "readonly"), [True, "true"]),
    (("vm",), [{"hypervisor": {"path": "/x"}}]),
]


def add_spec_field(r: random.Random, config: Config) -> Mutation | None:
    """Set one of SPEC_FIELDS (its parents made where missing); None where a parent is not an
    object."""
    path, values = r.choice(SPEC_FIELDS)
    node: Any = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return None
    node[path[-1]] = value = json.loads(json.dumps(r.choice(values)))
    return Mutation(path, f"set to {_short(value)}")


def mutate(r: random.Random, config: Config) -> Mutation | None:
    """Break one field of config in place; what was done, or None when nothing was left."""
    candidates = [p for p in nodes(config) if not protected(p)]
    containers = [p for p in nodes(config) if isinstance(get(config, p), dict | list)]
    containers = [p for p in containers if not protected(p) or p in {("linux",), ("process",)}]
    if not candidates:
        return None
    if containers and r.random() < 0.3:
        path = r.choice(containers)
        return _mutate_container(r, config, path)
    path = r.choice(candidates)
    parent, key = get(config, path[:-1]), path[-1]
    old = parent[key]
    choice = r.random()
    if choice < 0.35:
        new: object = r.choice([v for v in OTHER_TYPES if type(v) is not type(old)])
    elif isinstance(old, bool):
        new = r.choice([0, 1, "true", None])
    elif isinstance(old, int | float):
        new = r.choice(NUMBERS)
    elif isinstance(old, str):
        new = r.choice([*STRINGS, old.upper(), old[1:], old + "x"])
    else:
        new = r.choice(OTHER_TYPES)
    parent[key] = new = copy.deepcopy(new)  # OTHER_TYPES' [] and {} are shared: never in place
    return Mutation(path, f"{_short(old)} -> {_short(new)}")


def _mutate_container(r: random.Random, config: Config, path: JsonPath) -> Mutation:
    value = get(config, path)
    if isinstance(value, dict):
        keys = [k for k in value if not protected((*path, k))]
        if keys and r.random() < 0.5:
            key = r.choice(keys)
            del value[key]
            return Mutation((*path, key), "removed")
        value["mutfuzzUnknown"] = r.choice([1, "x", None, {}])
        return Mutation(path, "an unknown member added")
    roll = r.random()
    if value and roll < 0.25:
        del value[r.randrange(len(value))]
        return Mutation(path, "an element removed")
    if value and roll < 0.5:
        value.append(json.loads(json.dumps(r.choice(value))))
        return Mutation(path, "an element repeated")
    if roll < 0.75:
        stray: object = r.choice([None, "", 0, {}, [], "x"])
        value.insert(r.randint(0, len(value)), stray)
        return Mutation(path, f"{_short(stray)} inserted")
    value.clear()
    return Mutation(path, "emptied")


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def make_case(
    seed: int, number: int, rootless: int | None = None, spec_fields: bool = False
) -> tuple[difffuzz.Case, list[Mutation]]:
    """difffuzz's case number of seed (its rootless variant for a uid), broken in one or two
    fields; with spec_fields, one of the spec's rarer fields set first instead of the first
    break, from a Random of its own."""
    case = difffuzz.make_case(argparse.Namespace(seed=seed, rootless=rootless), number)
    r = random.Random(f"mutfuzz-{seed}-{number}")
    mutations = []
    if spec_fields:
        added = add_spec_field(random.Random(f"mutfuzz-spec-{seed}-{number}"), case.config)
        mutations += [added] if added is not None else []
    for _ in range(1 if r.random() < 0.7 or spec_fields else 2):
        mutation = mutate(r, case.config) if not spec_fields or r.random() < 0.3 else None
        if mutation is not None:
            mutations.append(mutation)
    return case, mutations


def refusal_problems(result: difffuzz.Result, runc: difffuzz.Result) -> list[str]:
    """What is wrong with galley-runc's refusal (when it refused): runc's result shows what
    its words may look like."""
    if difffuzz.started(result) or result.timed_out or result.status == 0:
        return []
    if result.status > 128 and "level=error" not in result.stderr:  # the probe killed
        return []
    problems = []
    # Not counted: the poststop hooks' errors (galley runs each, as the spec says; runc 1.1
    # stops at the first that fails).
    lines = _counted_lines(result.stderr)
    errors = [line for line in lines if "level=error" in line]
    if result.status != 1:
        problems.append(f"refused with status {result.status}, not 1")
    runc_lines = _counted_lines(runc.stderr)  # counted alike: a hook's words as runc's are
    runc_errors = [line for line in runc_lines if "level=error" in line]
    # One error line, a warning or two before it; or no more lines and errors than runc's
    # refusal (a hook's error before it, a startContainer hook's words alone).
    warnings = sum("level=warning" in line for line in lines)
    alike = len(errors) == len(runc_errors) and len(lines) - warnings <= len(runc_lines)
    if (len(errors) != 1 or len(lines) - len(errors) > 2) and not alike:
        problems.append(f"refused in {len(lines)} lines, {len(errors)} errors")
    if PYTHONISMS.search(result.stderr):
        problems.append("the error shows Python's words: " + _last(result.stderr))
    message = _message(errors[-1]) if errors else ""
    message = message.removeprefix("invalid configuration: ")  # runc's words, then the field
    if message and not RUNTIME_PHASE.match(message) and not FIELD_FIRST.match(message):
        problems.append("a config error that names no field: " + message[:300])
    return problems


def _counted_lines(stderr: str) -> list[str]:
    """A refusal's lines, less the hooks' errors that do not end the command."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [line for line in lines if "error running hook" not in line or "failed:" in line]


def _message(line: str) -> str:
    """The error's own words: the msg of a logfmt line, after "<command> failed: "."""
    found = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
    return re.sub(r"^\S+ \S+ failed: ", "", found.group(1)) if found else line


def _last(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:300] if lines else ""


def differences(
    args: argparse.Namespace, number: int, runc: difffuzz.Result, galley: difffuzz.Result
) -> list[str]:
    """difffuzz's comparison of the two, less what the case shows unbroken too (difffuzz's
    known differences: the base case is run only when the broken one differs)."""
    found = difffuzz.compare(runc, galley)
    if not found or _poststart_race(runc, galley) or _null_element(galley):
        return []
    base = difffuzz.make_case(argparse.Namespace(seed=args.seed, rootless=args.rootless), number)
    unbroken = difffuzz.run_both(args, base, f"mfz{os.getpid()}-{number}-base")
    return [] if difffuzz.compare(unbroken.runc, unbroken.galley) == found else found


def _poststart_race(runc: difffuzz.Result, galley: difffuzz.Result) -> bool:
    """runc 1.1 runs poststart hooks before the process (their state says "created"): when one
    fails the probe never ran, where under galley-runc (as the spec orders it) it may have
    printed already."""
    return (
        not difffuzz.started(runc)
        and "error running hook" in _last(runc.stderr)
        and "error running hook" in _last(galley.stderr)
    )


def _stricter(runc: difffuzz.Result, galley: difffuzz.Result, mutations: list[Mutation]) -> bool:
    """Whether galley-runc refused, naming the broken field, what runc ran (a relative masked
    path, an empty readonly path ...: runc reads what it can and drops the rest). Printed as
    "stricter" for a person to read, not counted."""
    if not difffuzz.started(runc) or difffuzz.started(galley) or galley.status == 0:
        return False
    message = _message(_last(galley.stderr)).removeprefix("unable to start container process: ")
    field = message.partition(": ")[0]  # the kernel's refusal of a field runc 1.1 ignores too
    return any(field.startswith(m.field()) or m.field().startswith(field) for m in mutations)


def _null_element(galley: difffuzz.Result) -> bool:
    """Accepted: a null element of an array is refused, naming it. Go reads one as the
    element type's zero value (runc takes `"bounding": [null]` as an unknown capability ""),
    but no Go program writes one: runtime-spec's arrays hold no pointers."""
    return bool(re.search(r"\[\d+\]: must be an? \w+, not null", _message(_last(galley.stderr))))


def run_case(args: argparse.Namespace, number: int, out: Path) -> tuple[bool, str]:
    case, mutations = make_case(args.seed, number, args.rootless, args.spec_fields)
    pair = difffuzz.run_both(args, case, f"mfz{os.getpid()}-{number}")
    runc, galley = pair.runc, pair.galley
    problems = refusal_problems(galley, runc)
    if pair.strays:
        problems.append("galley-runc made files outside the root: " + ", ".join(pair.strays))
    stricter = _stricter(runc, galley, mutations)
    if not stricter:
        problems += differences(args, number, runc, galley)
    broken = "; ".join(f"{m.field()}: {m.what}" for m in mutations)
    message = _message(_last(galley.stderr))[:160]
    summary = f"case {number} (--seed {args.seed} --case {number}) [{broken}]: " + (
        "DIFF " + problems[0]
        if problems
        else f"stricter ({message})"
        if stricter
        else f"same ({difffuzz.outcome(runc)}: {message})"
    )
    if problems:
        dest = out / f"seed{args.seed}-case{number}"
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "config.json").write_text(json.dumps(case.config, indent=2) + "\n")
        (dest / "mutations.txt").write_text(broken + "\n")
        for name, res in (("runc", runc), ("galley", galley)):
            (dest / f"{name}.stdout").write_text(res.stdout)
            (dest / f"{name}.stderr").write_text(res.stderr)
            (dest / f"{name}.status").write_text(f"{res.status} {difffuzz.outcome(res)}\n")
        (dest / "diff.txt").write_text("\n".join(problems) + "\n")
    return bool(problems), summary


def in_private_mount_namespace(argv: list[str]) -> None:
    """Re-run this script in a mount namespace of its own (see the docstring)."""
    if os.environ.get("MUTFUZZ_PRIVATE_MOUNTS") == "1":
        return
    os.environ["MUTFUZZ_PRIVATE_MOUNTS"] = "1"
    command = ["unshare", "--mount", "--propagation", "private", sys.executable, __file__, *argv]
    os.execvp("unshare", command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = difffuzz.case_parser(__doc__, "/tmp/mutfuzz-report")
    parser.add_argument("--spec-fields", action="store_true", help="set the spec's rarer fields")
    args = difffuzz.parse_case_args(parser, argv)
    if args.print_config:
        for number in args.numbers:
            case, mutations = make_case(args.seed, number, args.rootless, args.spec_fields)
            print("; ".join(f"{m.field()}: {m.what}" for m in mutations))
            print(json.dumps(case.config, indent=2))
        return 0
    in_private_mount_namespace(argv)
    return difffuzz.run_cases(args, run_case, "reported")


if __name__ == "__main__":
    sys.exit(main())
