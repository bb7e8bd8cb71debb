#!/usr/bin/env python3
"""podman fuzzer: containers that podman configures, run by runc and by galley-runc.

The other fuzzers write config.json themselves; this one lets podman 4.3 write it, from a
drawn set of `podman run` options (a user, groups, cwd, a read-only root, tmpfs mounts,
binds, capabilities, privileged, seccomp and no-new-privileges, masked paths, resources,
sysctls, ulimits, namespaces, a user namespace, devices, --init, /dev/shm's size), so that
the configs are the ones a podman user gets. Each case, from `random.Random(
f"podfuzz-{seed}-{case}")`, starts the container detached (`sleep`), then runs one to three
`podman exec`s (drawn -u, -w, -e, --privileged, and apart from those -t) of a probe that
prints what the process sees: its ids and groups, umask, cwd, hostname, terminal,
capabilities, no-new-privileges and seccomp mode, uid map, rlimits, oom_score_adj, sysctls,
cgroups and their limits, its mounts, /dev and its environment. A case differs when a step
ran under one runtime and not the other, or printed something else (container ids and work
paths made alike first).

    python scripts/podfuzz.py --seed 1 -n 30 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/podfuzz.py --seed 1 --case 7 ...          # replay one case, every step

Needs root and podman (scripts/setup.sh installs it). Each case has its own podman
(galley.fixtures.podman) and root filesystem, removed before the next.
"""

from __future__ import annotations

import random
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from execfuzz import Step, differing, last_line, print_steps  # scripts/ is not a package
from seqfuzz import Runner, fuzz_main

from galley.fixtures.busybox import make_rootfs  # seqfuzz put src/ on the path
from galley.fixtures.podman import Podman

PROBE = (
    "id; umask; pwd; hostname; tty; grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status;"
    " cat /proc/self/uid_map /proc/self/oom_score_adj; ulimit -a | sort; ulimit -Hn;"
    " for k in net/ipv4/ip_forward kernel/shm_rmid_forced kernel/msgmax; do"
    " echo $k $(cat /proc/sys/$k 2>&1); done;"
    " cat /proc/self/cgroup;"
    " for f in memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes"
    " memory/memory.memsw.limit_in_bytes pids/pids.max cpu/cpu.shares cpu/cpu.cfs_quota_us"
    " cpuset/cpuset.cpus; do echo $f $(cat /sys/fs/cgroup/$f 2>&1); done;"
    " cut -d' ' -f5,6,9- /proc/self/mountinfo | sort;"
    " stat -c '%A %u %g %t:%T %n' /dev/* /dev/*/*; env | sort"
)
SLEEPER = ["sleep", "1000"]
T = TypeVar("T")


def _one(rnd: random.Random, *choices: list[str]) -> list[str]:
    return list(rnd.choice(choices))


def _some(rnd: random.Random, items: list[T], p: float) -> list[T]:
    return [item for item in items if rnd.random() < p]


# option groups: each is drawn on its own, with its chance
def _user(rnd: random.Random) -> list[str]:
    options = _one(rnd, ["--user", "1000"], ["--user", "1000:100"], ["--user", "0:10"])
    return options + (["--group-add", "10"] if rnd.random() < 0.4 else [])


def _caps(rnd: random.Random) -> list[str]:
    caps = ["SYS_ADMIN", "NET_ADMIN", "CHOWN", "SETUID", "SYS_PTRACE", "ALL", "KILL"]
    options: list[str] = []
    for cap in _some(rnd, caps, 0.25):
        options += ["--cap-add" if rnd.random() < 0.5 else "--cap-drop", cap]
    return options


def _security(rnd: random.Random) -> list[str]:
    opts = ["no-new-privileges", "seccomp=unconfined", "mask=/proc/cpuinfo", "unmask=ALL"]
    return [o for opt in _some(rnd, opts, 0.3) for o in ("--security-opt", opt)]


def _resources(rnd: random.Random) -> list[str]:
    menu = [
        ["--memory", "64m"],
        ["--memory", "64m", "--memory-swap", "128m"],
        ["--memory-reservation", "32m"],
        ["--cpus", "0.5"],
        ["--cpu-shares", "512"],
        ["--cpuset-cpus", "0"],
        ["--pids-limit", "50"],
        ["--oom-score-adj", "100"],
    ]
    return [o for group in _some(rnd, menu, 0.3) for o in group]


def _mounts(rnd: random.Random, volume: Path) -> list[str]:
    menu = [
        ["--read-only"],
        ["--read-only", "--read-only-tmpfs=false"],
        ["--tmpfs", "/scratch"],
        ["--tmpfs", "/scratch:size=1m,mode=0700"],
        ["-v", f"{volume}:/vol:ro"],
        ["--mount", f"type=bind,src={volume},dst=/vol,bind-propagation=rslave"],
        ["--mount", "type=tmpfs,dst=/t,tmpfs-size=2m"],
        ["--shm-size", "8m"],
        ["--device", "/dev/zero:/dev/z:r"],
        ["--device-cgroup-rule", "c 1:9 rwm"],
    ]
    return [o for group in _some(rnd, menu, 0.25) for o in group]


def _namespaces(rnd: random.Random) -> list[str]:
    menu = [
        ["--ipc", "private"],
        ["--ipc", "none"],
        ["--cgroupns", "private"],
        ["--cgroupns", "host"],
        ["--uts", "private"],
        ["--init"],
        ["--sysctl", "net.ipv4.ip_forward=1"],
        ["--sysctl", "kernel.shm_rmid_forced=1"],
        ["--ulimit", "nofile=512:1024", "--ulimit", "nproc=1000:1000"],
        ["--ulimit", "core=0:0", "--ulimit", "nproc=1000:1000", "--ulimit", "nofile=64:64"],
    ]
    return [o for group in _some(rnd, menu, 0.2) for o in group]


def _exec(rnd: random.Random) -> list[str]:
    options: list[str] = []
    if rnd.random() < 0.4:
        options += _one(rnd, ["-u", "1000"], ["-u", "65534:65534"], ["-u", "0"])
    if rnd.random() < 0.3:
        options += _one(rnd, ["-w", "/tmp"], ["-w", "/"])
    if rnd.random() < 0.3:
        options += ["-e", "B=2"]
    if rnd.random() < 0.15:
        options += ["--privileged"]
    return options


@dataclass
class Case:
    options: list[str]  # podman run's, but the name, cgroup parent and root
    userns: bool  # --uidmap/--gidmap 0:100000:65536, the root chowned to match
    execs: list[list[str]] = field(default_factory=list)


VOLUME = Path("<volume>")  # replaced by the case's own directory when it runs


def draw(seed: int, number: int, prefix: str = "podfuzz") -> Case:
    rnd = random.Random(f"{prefix}-{seed}-{number}")
    options = ["--hostname", "box", "--env", "A=1"]
    if rnd.random() < 0.4:
        options += _user(rnd)
    if rnd.random() < 0.3:
        options += _one(rnd, ["--workdir", "/tmp"], ["--workdir", "/var"])
    if rnd.random() < 0.1:
        options += ["--privileged"]
    options += _caps(rnd) + _security(rnd) + _resources(rnd)
    options += _mounts(rnd, VOLUME) + _namespaces(rnd)
    userns = rnd.random() < 0.2
    execs = [_exec(rnd) for _ in range(rnd.randint(1, 3))]
    # Drawn apart, so that a seed's cases stay what they were before it: a terminal (`podman
    # exec -t`: conmon's console socket, the pty inside the container) for some execs.
    other = random.Random(f"{prefix}-tty-{seed}-{number}")
    execs = [["-t", *chosen] if other.random() < 0.25 else chosen for chosen in execs]
    return Case(options, userns, execs)


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    del runner, tag  # podman starts and reaps its own processes
    name = Path(runtime).name
    top = work / name
    (top / "podman").mkdir(parents=True)
    volume = top / "volume"
    volume.mkdir()
    (volume / "f").write_text("v\n")
    rootfs = make_rootfs(top / "rootfs")
    options = [o.replace(str(VOLUME), str(volume)) for o in case.options]
    if case.userns:
        subprocess.run(["chown", "-R", "100000:100000", str(rootfs)], check=True)
        options += ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"]
    podman = Podman(top / "podman")
    container = "podfuzz"
    steps: list[Step] = []
    try:
        run = ["run", "-d", "--name", container, *options, *podman.run_options(rootfs)]
        result = podman(runtime, *run, *SLEEPER, check=False, timeout=120)
        # Whether the container runs, not podman's exit status: when a start fails, podman
        # 4.3 says so but exits 0 or 12x at random, whatever the runtime.
        inspect = ["inspect", "--format", "{{.State.Status}}", container]
        running = podman(runtime, *inspect, check=False).stdout.strip() == "running"
        steps.append(Step("run -d", 0 if running else 1, "", last_line(result.stderr)))
        if not running:
            return steps
        cid = result.stdout.strip()
        for chosen in case.execs:
            result = podman(runtime, "exec", *chosen, container, "sh", "-c", PROBE, check=False)
            output = alike(result.stdout, cid, top)
            steps.append(
                Step(shlex.join(chosen), result.returncode, output, last_line(result.stderr))
            )
    finally:
        podman.stop()
    return steps


# Known differences (docs/status.md), made alike so that a new one stands out: galley mounts
# the tmpfs at /sys/fs/cgroup read-only (runc read-write); mqueue's group in a user namespace;
# runc 1.1.5's exec'd process gets its soft RLIMIT_NOFILE raised to the hard limit (Go's own
# raise at start, kept by its execve: fixed in runc 1.2; `ulimit -Hn` shows the hard one).
KNOWN = [
    (re.compile(r"^(/sys/fs/cgroup) r[ow],", re.M), r"\1 <ro|rw>,"),
    (re.compile(r"^(\S+ \d+) \d+ (\S+ /dev/mqueue)$", re.M), r"\1 <gid> \2"),
    (re.compile(r"^(open files +\(-n\)) \d+$", re.M), r"\1 <soft>"),
]


def alike(output: str, cid: str, top: Path) -> str:
    """The output with what differs between the runs of a case by name only made alike, and
    the known differences (KNOWN)."""
    output = output.replace(str(top), "<work>")
    if cid:
        output = output.replace(cid, "<id>").replace(cid[:12], "<id>")
    output = re.sub(r"galley-(podman|docker)-[0-9a-f]{8}", "<parent>", output)
    for pattern, replacement in KNOWN:
        output = pattern.sub(replacement, output)
    return output


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    userns = " (own user namespace)" if case.userns else ""
    print(f"== case {number}{userns} podman run {shlex.join(case.options)}")
    print_steps(runc, galley, every)


def main(argv: list[str] | None = None) -> int:
    functions = {"draw": draw, "run_case": run_case, "differing": differing, "report": report}
    return fuzz_main(argv, __doc__, **functions)


if __name__ == "__main__":
    sys.exit(main())
