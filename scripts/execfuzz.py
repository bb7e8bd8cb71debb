#!/usr/bin/env python3
"""Exec fuzzer: random `exec`s into a running container under runc and galley-runc.

difffuzz.py compares the process a config starts; this compares the processes `exec` starts
in a container that runs. Each case draws the container's process (user, capabilities,
noNewPrivileges, rlimits, environment), in a quarter of the cases a user namespace of its own,
and two to four execs, each either command-line flags
(-u, -g, -e, --cwd, --cap, --no-new-privs, in range, out of it and malformed) or a `-p`
process.json (user with additional gids, env, cwd, the five capability sets, rlimits,
noNewPrivileges; now and then a field of the wrong type), from
`random.Random(f"execfuzz-{seed}-{case}")`. Not drawn: umask and oomScoreAdj, which galley
applies to an exec (the exec's own, or the container's) and runc 1.1 does not (docs/history.md,
session 10). The program is a busybox shell that prints what it
runs as: its ids and groups, capability sets, no_new_privs and seccomp mode, umask, cwd,
environment, rlimits and oom_score_adj. The same case runs under both runtimes; a case differs
when at some exec one runtime ran the probe and the other refused, or both ran it and it
printed something else. Error wording (and runc's usage text) is printed, not compared.

    python scripts/execfuzz.py --seed 1 -n 60 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/execfuzz.py --seed 1 --case 17 ...         # replay one case, every step
    python scripts/execfuzz.py --mutate --seed 1 -n 60 ...    # process.json fields broken

--mutate breaks one or two fields of each `-p` process.json as scripts/mutfuzz.py breaks a
config's (another type, null, a number past a limit, a string made odd, an array or object
changed), and also reports an exec whose galley-runc error shows Python's words.

Needs root. Containers and bundles of a case are removed before the next.
"""

from __future__ import annotations

import difflib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from difffuzz import ALL_CAPS  # scripts/ is not a package
from seqfuzz import Container, Runner, compare_runtimes, fuzz_parser, in_user_namespace

from galley.fixtures.busybox import make_bundle  # difffuzz put src/ on the path

PROBE = (
    "grep -E '^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/$$/status;"
    " echo umask $(umask); echo cwd $(pwd); env | sort; cat /proc/$$/limits;"
    " echo oom $(cat /proc/$$/oom_score_adj)"
)
CAPS = [*ALL_CAPS[:8], "CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE"]
# Not RLIMIT_NOFILE: runc's init is Go, which raises its soft NOFILE to the hard limit at
# start, so runc's execs get hard/hard whatever the process asks (docs/testing.md).
LIMITS = {
    "RLIMIT_NPROC": [50, 1000],
    "RLIMIT_CORE": [0, 1, 65536],
    "RLIMIT_MEMLOCK": [0, 65536],
    "RLIMIT_FSIZE": [1 << 20, 18446744073709551615],
}


def subset(rnd: random.Random, items: list[str], p: float) -> list[str]:
    return [item for item in items if rnd.random() < p]


def draw_caps(rnd: random.Random) -> dict[str, list[str]]:
    bounding = subset(rnd, CAPS, 0.7)
    permitted = subset(rnd, bounding, 0.8)
    inheritable = subset(rnd, bounding, 0.3)
    sets = {
        "bounding": bounding,
        "permitted": permitted,
        "effective": subset(rnd, permitted, 0.8),
        "inheritable": inheritable,
        "ambient": [c for c in permitted if c in inheritable and rnd.random() < 0.6],
    }
    return {k: v for k, v in sets.items() if rnd.random() < 0.9}


def draw_limits(rnd: random.Random) -> list[dict[str, Any]]:
    limits = []
    for name in rnd.sample(sorted(LIMITS), rnd.randint(0, 3)):
        hard = rnd.choice(LIMITS[name])
        soft = rnd.choice([v for v in LIMITS[name] if v <= hard])
        limits.append({"type": name, "hard": hard, "soft": soft})
    return limits


def draw_user(rnd: random.Random) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": rnd.choice([0, 0, 1000, 65534]), "gid": rnd.choice([0, 100])}
    if rnd.random() < 0.4:
        user["additionalGids"] = rnd.sample([5, 10, 100, 1000], rnd.randint(0, 2))
    return user  # no umask: galley's execs take the container's or their own; runc 1.1 neither


def draw_process(rnd: random.Random) -> dict[str, Any]:
    """An exec's process.json (args and defaults filled in by the runner)."""
    process: dict[str, Any] = {}
    if rnd.random() < 0.7:
        process["user"] = draw_user(rnd)
    if rnd.random() < 0.6:
        process["capabilities"] = draw_caps(rnd)
    if rnd.random() < 0.5:
        process["rlimits"] = draw_limits(rnd)
    if rnd.random() < 0.3:
        process["noNewPrivileges"] = rnd.random() < 0.5
    process["cwd"] = rnd.choice(["/", "/", "/tmp", "/etc", "/nonexistent"])
    env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    if rnd.random() < 0.5:
        env += rnd.sample(["A=1", "HOME=/h", "TERM=dumb", "B=x=y", "EMPTY="], rnd.randint(1, 3))
    process["env"] = env
    if rnd.random() < 0.05:
        process[rnd.choice(["user", "cwd", "env"])] = 7  # the wrong type
    return process


def draw_flags(rnd: random.Random) -> list[str]:
    flags: list[str] = []
    if rnd.random() < 0.5:
        flags += ["-u", rnd.choice(["0", "1000", "1000:1000", "65534:100", "0:5", "x", "1000:"])]
    for _ in range(rnd.choice([0, 0, 1, 2])):
        flags += ["-g", rnd.choice(["5", "10", "1000", "x"])]
    for _ in range(rnd.choice([0, 1, 2])):
        flags += ["-e", rnd.choice(["A=1", "PATH=/bin", "HOME=/x", "NOEQUALS", "B="])]
    if rnd.random() < 0.3:
        flags += ["--cwd", rnd.choice(["/tmp", "/", "/nonexistent", "tmp"])]
    for _ in range(rnd.choice([0, 0, 1, 2])):
        flags += ["--cap", rnd.choice(["CAP_NET_ADMIN", "CAP_SYS_ADMIN", "NET_RAW", "CAP_BOGUS"])]
    if rnd.random() < 0.2:
        flags.append("--no-new-privs")
    return flags


@dataclass
class Case:
    process: dict[str, Any]  # the container's process, but args
    execs: list[list[str] | dict[str, Any]]  # flags, or a process.json's fields
    user_namespace: bool  # root is host 100000 (group 200000); proc, tmpfs, devpts only


def draw(seed: int, number: int) -> Case:
    rnd = random.Random(f"execfuzz-{seed}-{number}")
    process: dict[str, Any] = {"env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "C=container"]}
    if rnd.random() < 0.4:
        process["user"] = draw_user(rnd)
    if rnd.random() < 0.5:
        process["capabilities"] = draw_caps(rnd)
    if rnd.random() < 0.4:
        process["rlimits"] = draw_limits(rnd)
    if rnd.random() < 0.2:
        process["noNewPrivileges"] = True
    execs: list[list[str] | dict[str, Any]] = []
    for _ in range(rnd.randint(2, 4)):
        execs.append(draw_process(rnd) if rnd.random() < 0.4 else draw_flags(rnd))
    return Case(process, execs, rnd.random() < 0.25)


@dataclass
class Step:
    exec: str
    status: int | str
    output: str
    error: str


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    name = Path(runtime).name
    bundle = work / f"bundle-{name}"
    make_bundle(bundle, ["sleep", "1000"])
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(case.process, terminal=False)
    config["linux"]["cgroupsPath"] = cgroup = f"/execfuzz-{tag}-{name}"
    if case.user_namespace:
        in_user_namespace(config)
    (bundle / "config.json").write_text(json.dumps(config))
    container = Container(runner, runtime, work / f"root-{name}", f"ef-{tag}")
    steps = []
    try:
        code, _, err = container("run", "-d", "--bundle", str(bundle), container.cid)
        steps.append(Step("run -d", code, "", last_line(err)))
        if code != 0:
            return steps
        for number, chosen in enumerate(case.execs):
            if isinstance(chosen, dict):
                process = {"args": ["sh", "-c", PROBE], "terminal": False, **chosen}
                process.setdefault("user", {"uid": 0, "gid": 0})
                path = bundle / f"process-{number}.json"
                path.write_text(json.dumps(process))
                args, shown = ["-p", str(path), container.cid], f"-p {json.dumps(chosen)}"
            else:
                args, shown = [*chosen, container.cid, "sh", "-c", PROBE], " ".join(chosen)
            code, out, err = container("exec", *args)
            steps.append(Step(shown, code, out, last_line(err)))
    finally:
        container.remove(cgroup)
    return steps


def last_line(err: str) -> str:
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


def differing(runc: list[Step], galley: list[Step]) -> list[int]:
    return [
        i
        for i, (a, b) in enumerate(zip(runc, galley, strict=False))
        if (a.status == 0) != (b.status == 0) or (a.status == 0 and a.output != b.output)
    ] + ([min(len(runc), len(galley))] if len(runc) != len(galley) else [])


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    userns = " (own user namespace)" if case.user_namespace else ""
    print(f"== case {number}{userns} process={json.dumps(case.process)}")
    print_steps(runc, galley, every)


def print_steps(runc: list[Step], galley: list[Step], every: bool) -> None:
    """Each step (every) or the differing ones: what each runtime ran and said, and how the
    outputs differ where both ran it."""
    for i in range(max(len(runc), len(galley))) if every else differing(runc, galley):
        for who, run in (("runc", runc), ("galley", galley)):
            if i < len(run):
                step = run[i]
                print(f"  {i} {who:<6} {step.status!s:>7} {step.exec[:300]}")
                if step.error:
                    print(f"      {step.error[:200]}")
        if i < min(len(runc), len(galley)) and runc[i].status == galley[i].status == 0:
            diff = difflib.unified_diff(
                runc[i].output.splitlines(), galley[i].output.splitlines(), "runc", "galley", n=0
            )
            print("\n".join(f"      {line}" for line in list(diff)[2:]))
    sys.stdout.flush()


def draw_mutated(seed: int, number: int) -> Case:
    """The case, each -p process.json with one or two fields broken as mutfuzz breaks a
    config's, from a Random of their own (so a case's execs are those --mutate-less)."""
    import mutfuzz  # noqa: PLC0415 - --mutate only

    case = draw(seed, number)
    rnd = random.Random(f"execfuzz-mutate-{seed}-{number}")
    for chosen in case.execs:
        if isinstance(chosen, dict):
            chosen.setdefault("user", {"uid": 0, "gid": 0})
            for _ in range(1 if rnd.random() < 0.7 else 2):
                mutfuzz.mutate(rnd, chosen)
    return case


def differing_or_pythonic(runc: list[Step], galley: list[Step]) -> list[int]:
    """differing's steps, and those where galley-runc's error shows Python's words."""
    import mutfuzz  # noqa: PLC0415 - --mutate only

    worded = [i for i, step in enumerate(galley) if mutfuzz.PYTHONISMS.search(step.error)]
    return sorted(set(differing(runc, galley)) | set(worded))


def main(argv: list[str] | None = None) -> int:
    parser = fuzz_parser(__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--mutate", action="store_true", help="break fields of the -p execs")
    args = parser.parse_args(argv)
    return compare_runtimes(
        args,
        Runner(),
        draw=draw_mutated if args.mutate else draw,
        run_case=run_case,
        differing=differing_or_pythonic if args.mutate else differing,
        report=report,
    )


if __name__ == "__main__":
    sys.exit(main())
