#!/usr/bin/env python3
"""Update fuzzer: random `update`s of a running container under runc and galley-runc.

difffuzz.py compares the cgroup values a config gives at create; this compares what `update`
does to them afterwards. Each case draws the container's starting linux.resources and one to
four updates, each either command-line flags (every flag runc 1.1 has, with values in range,
out of it, at the kernel's edges and malformed) or a `-r` resources file (a random part of
linux.resources, sometimes with a value of the wrong type), from
`random.Random(f"updatefuzz-{seed}-{case}")`. The same case runs under both runtimes, each
with its own bundle, --root and absolute cgroupsPath. After each update it records the exit
status and the container's v1 cgroup files (memory, cpu, cpuset, pids, blkio); a case differs
when at some step one runtime succeeded and the other did not, or a file's value differs.
Error wording is printed, not compared.

    python scripts/updatefuzz.py --seed 1 -n 100 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/updatefuzz.py --seed 1 --case 17 ...       # replay one case, every step

Needs root and the v1 hierarchy this machine has (on a v2 host it stops with a message).
Containers, bundles and cgroups of a case are removed before the next.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from execfuzz import last_line  # scripts/ is not a package
from seqfuzz import Container, Runner, compare_runtimes, fuzz_parser

from galley.fixtures.busybox import make_bundle  # seqfuzz put src/ on the path

V1 = Path("/sys/fs/cgroup")
FILES = {
    "memory": [
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.kmem.limit_in_bytes",
        "memory.kmem.tcp.limit_in_bytes",
        "memory.swappiness",
        "memory.oom_control",
    ],
    "cpu": [
        "cpu.shares",
        "cpu.cfs_quota_us",
        "cpu.cfs_period_us",
        "cpu.rt_runtime_us",
        "cpu.rt_period_us",
        "cpu.idle",
    ],
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "pids": ["pids.max"],
    "blkio": [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_iops_device",
    ],
}

# Values per flag: in range, at the kernel's edges, out of range, malformed.
FLAGS: dict[str, list[str]] = {
    "--memory": ["100M", "50m", "209715200", "0", "-1", "1g", "4096", "abc", "10b", "1.5M"],
    "--memory-swap": ["200M", "-1", "0", "100M", "300000000", "50M", "x"],
    "--memory-reservation": ["50M", "0", "-1", "1G", "300M"],
    "--cpu-share": ["512", "2", "1", "0", "262144", "300000", "-1", "x"],
    "--cpu-period": ["100000", "50000", "0", "1000", "999", "1000001", "-5"],
    "--cpu-quota": ["50000", "-1", "0", "1000", "999", "200000", "x", "-2"],
    "--cpu-rt-period": ["1000000", "0", "500000"],
    "--cpu-rt-runtime": ["0", "10000", "-1"],
    "--cpuset-cpus": ["0", "1", "0-1", "", "5", "0,1", "x"],
    "--cpuset-mems": ["0", "", "1"],
    "--pids-limit": ["100", "0", "-1", "1", "x", "-5"],
    "--blkio-weight": ["500", "0", "5", "2000"],
}

MEMORY: dict[str, list[int | bool]] = {
    "limit": [104857600, 52428800, 0, -1, 4096, 1 << 40],
    "reservation": [52428800, 0, -1, 1 << 30],
    "swap": [209715200, -1, 0, 104857600, 52428800],
    "kernel": [104857600, -1],
    "kernelTCP": [104857600, -1],
    "swappiness": [0, 60, 100, -1],  # 101: refused by galley, ignored by runc's update
    "disableOOMKiller": [True, False],
}
CPU: dict[str, list[Any]] = {
    "shares": [512, 2, 1, 0, 262144, 300000],
    "quota": [50000, -1, 0, 1000, 999],
    "period": [100000, 50000, 0, 1000, 999, 1000001],
    "realtimeRuntime": [0, 10000, -1],
    "realtimePeriod": [1000000, 0],
    "cpus": ["0", "1", "0-1", "", "5"],
    "mems": ["0", "", "1"],
    "idle": [0, 1],
}


@dataclass
class Case:
    resources: dict[str, Any]  # linux.resources at create
    updates: list[list[str] | dict[str, Any]]  # flags, or a -r file's JSON


def draw_resources(rnd: random.Random, p: float) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    memory = {k: rnd.choice(v) for k, v in MEMORY.items() if rnd.random() < p}
    cpu = {k: rnd.choice(v) for k, v in CPU.items() if rnd.random() < p}
    if memory:
        resources["memory"] = memory
    if cpu:
        resources["cpu"] = cpu
    if rnd.random() < p:
        resources["pids"] = {"limit": rnd.choice([100, 0, -1, 1])}
    if rnd.random() < p / 2:
        resources["blockIO"] = {"weight": rnd.choice([500, 0, 5])}
    if rnd.random() < 0.1:  # a value of the wrong type
        section = rnd.choice(["memory", "cpu", "pids"])
        resources.setdefault(section, {})[rnd.choice(["limit", "shares"])] = "lots"
    return resources


def draw(seed: int, number: int) -> Case:
    rnd = random.Random(f"updatefuzz-{seed}-{number}")
    start = draw_resources(rnd, 0.2) if rnd.random() < 0.6 else {}
    start.pop("blockIO", None)  # no weight file on this host: create would fail in both
    start.get("cpu", {}).pop("idle", None)  # runc 1.1 ignores it; galley sets it, and an
    # idle group refuses cpu.shares: every later --cpu-share would differ
    start = {k: v for k, v in start.items() if "lots" not in json.dumps(v)}
    updates: list[list[str] | dict[str, Any]] = []
    for _ in range(rnd.randint(1, 4)):
        if rnd.random() < 0.35:
            updates.append(draw_resources(rnd, 0.3))
        else:
            flags = rnd.sample(sorted(FLAGS), rnd.randint(1, 4))
            updates.append([x for f in flags for x in (f, rnd.choice(FLAGS[f]))])
    return Case(start, updates)


@dataclass
class Step:
    update: str
    status: int | str
    values: dict[str, str]
    error: str


def cgroup_values(cgroup: str) -> dict[str, str]:
    values = {}
    for controller, names in FILES.items():
        for name in names:
            try:
                values[name] = " ".join(
                    (V1 / controller / cgroup.lstrip("/") / name).read_text().split()
                )
            except OSError as e:
                values[name] = f"<{e.strerror}>"
    return values


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    name = Path(runtime).name
    bundle = work / f"bundle-{name}"
    cgroup = f"/updatefuzz-{tag}-{name}"
    make_bundle(bundle, ["sleep", "1000"])
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["linux"]["cgroupsPath"] = cgroup
    config["linux"]["resources"] = case.resources
    (bundle / "config.json").write_text(json.dumps(config))
    container = Container(runner, runtime, work / f"root-{name}", f"uf-{tag}")
    steps = []
    try:
        code, _, err = container("run", "-d", "--bundle", str(bundle), container.cid)
        steps.append(Step("run -d", code, cgroup_values(cgroup), last_line(err)))
        if code != 0:
            return steps
        for number, update in enumerate(case.updates):
            if isinstance(update, dict):
                path = bundle / f"resources-{number}.json"
                path.write_text(json.dumps(update))
                args, shown = ["-r", str(path)], f"-r {json.dumps(update)}"
            else:
                args, shown = update, " ".join(a or repr(a) for a in update)
            code, _, err = container("update", *args, container.cid)
            steps.append(Step(shown, code, cgroup_values(cgroup), last_line(err)))
    finally:
        container("delete", "-f", container.cid)
        for controller in FILES:
            try:
                (V1 / controller / cgroup.lstrip("/")).rmdir()
            except OSError:
                pass
    return steps


# What runc 1.1 leaves alone (`update` takes none of it; create ignores kernel memory): galley
# sets these from linux.resources as crun does, so their values are not compared.
RUNC_IGNORES = {
    "memory.kmem.limit_in_bytes",
    "memory.kmem.tcp.limit_in_bytes",
    "memory.swappiness",
    "memory.oom_control",
    "cpu.idle",
    "cpu.shares",  # cpu.idle=1 reads as shares 3
}


def differing(runc: list[Step], galley: list[Step]) -> list[tuple[int, list[str]]]:
    """(step, what differs): where one runtime succeeded and the other did not, or a file
    runc manages has another value, until the runtimes part (one's update fails where the
    other's succeeds, or runc's fails leaving what it wrote before failing, or galley's
    sets cpu.idle: from there on they start from other values); and each failed update of
    galley's that changed a file (galley's updates are all or nothing), whenever it comes."""
    found = []
    comparable = True
    for i, (a, b) in enumerate(zip(runc, galley, strict=False)):
        if i and a.status != 0 and a.values != runc[i - 1].values:
            comparable = False  # runc's failed update left what it wrote before failing
        files = [
            f
            for f in a.values
            if comparable and f not in RUNC_IGNORES and a.values[f] != b.values.get(f)
        ]
        if i and b.status != 0:
            changed = [f for f in b.values if b.values[f] != galley[i - 1].values[f]]
            files += [f"<galley's failed update changed {f}>" for f in changed]
        parted = (a.status == 0) != (b.status == 0)
        if (comparable and parted) or files or "timeout" in (a.status, b.status):
            found.append((i, files))
        # From here on they start from other values; so too once galley's cgroup is idle
        # (runc 1.1 ignores cpu.idle; an idle cgroup refuses cpu.shares).
        comparable = comparable and not parted and b.values.get("cpu.idle") != "1"
    if len(runc) != len(galley):
        found.append((min(len(runc), len(galley)), ["<one runtime stopped earlier>"]))
    return found


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    print(f"== case {number} resources={json.dumps(case.resources)}")
    steps = (
        [(i, []) for i in range(max(len(runc), len(galley)))] if every else differing(runc, galley)
    )
    for i, files in steps:
        for who, run in (("runc", runc), ("galley", galley)):
            if i >= len(run):
                continue
            step = run[i]
            print(f"  {i} {who:<6} {step.status!s:>7} {step.update[:120]}")
            if step.error:
                print(f"      {step.error[:200]}")
            for f in files:
                print(f"      {f} = {step.values.get(f.split()[-1].rstrip('>'))}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = fuzz_parser(__doc__.split("\n")[0]).parse_args(argv)
    if not (V1 / "memory").is_dir():
        print("updatefuzz compares v1 cgroup files: this host has no v1 memory hierarchy")
        return 2
    return compare_runtimes(
        args, Runner(), draw=draw, run_case=run_case, differing=differing, report=report
    )


if __name__ == "__main__":
    sys.exit(main())
