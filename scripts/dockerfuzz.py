#!/usr/bin/env python3
"""docker fuzzer: containers that docker configures, run by runc and by galley-runc.

podfuzz's option groups (scripts/podfuzz.py: a user, groups, cwd, a read-only root, tmpfs
mounts, binds, capabilities, seccomp and no-new-privileges, resources, sysctls, ulimits,
namespaces, devices, --init, /dev/shm's size), drawn from `random.Random(f"dockerfuzz-{seed}-
{case}")` and turned into docker's (docker_options), so that docker 20.10 writes config.json
as its users get it, and its containerd's runc v2 shim calls the runtime. Each case starts the
container detached from the busybox image (`sleep`), then runs podfuzz's probe in one to three
`docker exec`s (drawn -u, -w, -e, and apart from those -t). A case differs when a step ran
under one runtime and not the other, or printed something else (container ids and work paths
made alike first, and podfuzz's known differences).

    python scripts/dockerfuzz.py --seed 1 -n 30 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/dockerfuzz.py --seed 1 --case 7 ...        # replay one case, every step

Needs root and docker.io (scripts/setup.sh installs it). One private dockerd per runtime
(galley.fixtures.docker) serves every case of a run, and is stopped at its end.
"""

from __future__ import annotations

import atexit
import random
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from execfuzz import Step, differing, last_line, print_steps  # scripts/ is not a package
from podfuzz import PROBE, SLEEPER, VOLUME, Case, alike
from podfuzz import draw as draw_podman_options
from seqfuzz import Runner, fuzz_main

from galley.fixtures.busybox import make_rootfs  # seqfuzz put src/ on the path
from galley.fixtures.docker import Docker

IMAGE = "galley/busybox:dockerfuzz"
UNDER_TEST = "under-test"  # the runtime's name in each dockerd's daemon.json

# podman's options docker has under another name, or not at all (dropped):
# - unmask=ALL is docker's systempaths=unconfined; docker has no mask= of its own paths;
# - docker's --read-only adds no tmpfs, so there is no --read-only-tmpfs to turn off;
# - docker's --uts takes only "host";
# - --privileged and --cap-add ALL ask for every capability docker knows: runc 1.1.5 fails
#   when the caller's bounding set lacks one (this machine has no CAP_SYS_RESOURCE), so
#   there is nothing to compare (tests/oci/test_docker.py's test_privileged covers it).
RENAMED = {"unmask=ALL": "systempaths=unconfined"}
DROPPED = {"mask=/proc/cpuinfo", "--read-only-tmpfs=false", "--privileged"}
DROPPED_PAIRS = {("--uts", "private"), ("--cap-add", "ALL")}


def docker_options(options: list[str]) -> list[str]:
    """podman run's options as docker run's (RENAMED, DROPPED)."""
    out: list[str] = []
    i = 0
    while i < len(options):
        option = options[i]
        pair = tuple(options[i : i + 2])
        if pair in DROPPED_PAIRS or (option == "--security-opt" and pair[-1] in DROPPED):
            i += 2
            continue
        if option not in DROPPED:
            out.append(RENAMED.get(option, option))
        i += 1
    return out


# docker's own options, drawn apart (each with a fifth's chance): its volumes, shareable IPC,
# the host's pid namespace, cfs period and quota, no OOM killer, swappiness, cpuset mems,
# block I/O throttles, and what kubelet-style pods ask for (all caps dropped but one).
DOCKER_EXTRAS = [
    ["-v", "/anonymous"],
    ["--mount", "type=volume,dst=/named"],
    ["--ipc", "shareable"],
    ["--pid", "host"],
    ["--cpu-period", "50000", "--cpu-quota", "25000"],
    ["--memory", "48m", "--oom-kill-disable"],
    ["--memory", "48m", "--memory-swappiness", "10"],
    ["--cpuset-mems", "0"],
    ["--device-read-bps", "/dev/vda:1mb", "--device-write-iops", "/dev/vda:100"],
    ["--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"],
    ["--tmpfs", "/run:exec,mode=1777"],
    ["--sysctl", "net.core.somaxconn=1024", "--sysctl", "kernel.msgmax=65536"],
]


# podfuzz's probe, and the cgroup files docker's own options set
PROBE_DOCKER = (
    f"{PROBE}; for f in blkio/blkio.throttle.read_bps_device"
    " blkio/blkio.throttle.write_iops_device memory/memory.oom_control memory/memory.swappiness"
    " cpu/cpu.cfs_period_us cpuset/cpuset.mems; do echo $f $(cat /sys/fs/cgroup/$f 2>&1); done"
)


def draw(seed: int, number: int) -> Case:
    """podfuzz's draw under this fuzzer's own seed, with docker's own options; docker has no
    per-container user namespace (only the daemon's --userns-remap), so none is drawn."""
    case = draw_podman_options(seed, number, prefix="dockerfuzz")
    extra = random.Random(f"dockerfuzz-extra-{seed}-{number}")
    options = docker_options(case.options)
    options += [o for group in DOCKER_EXTRAS if extra.random() < 0.2 for o in group]
    execs = [[o for o in chosen if o != "--privileged"] for chosen in case.execs]
    return Case(options, userns=False, execs=execs)


# After a `docker exec -t` the shim closes the pty's master a moment after the client returns,
# so the next exec may or may not see it (on either runtime): its stat line is dropped, and
# the number of a -t exec's own pty (the probe's `tty`) made alike.
PTYS_LISTED = re.compile(r"^\S+ \d+ \d+ 88:\d+ /dev/pts/\d+\n", re.M)
PTY_NUMBER = re.compile(r"^/dev/pts/\d+$", re.M)

_DAEMONS: dict[str, Docker] = {}


def _daemon(runtime: str) -> Docker:
    """This run's dockerd for runtime, started (with the busybox image) at its first case."""
    if runtime not in _DAEMONS:
        top = Path(tempfile.mkdtemp(prefix="dockerfuzz-"))
        daemon = Docker(top, {UNDER_TEST: runtime})
        atexit.register(_stop, daemon)
        _DAEMONS[runtime] = daemon
        daemon.import_rootfs(make_rootfs(top / "rootfs"), IMAGE)
    return _DAEMONS[runtime]


def _stop(daemon: Docker) -> None:
    daemon.stop()
    shutil.rmtree(daemon.workdir, ignore_errors=True)


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    del runner  # docker starts and reaps its own processes
    docker = _daemon(runtime)
    top = work / Path(runtime).name
    volume = top / "volume"
    volume.mkdir(parents=True)
    (volume / "f").write_text("v\n")
    options = [o.replace(str(VOLUME), str(volume)) for o in case.options]
    name = f"dockerfuzz-{tag}"
    steps: list[Step] = []
    try:
        run = ["run", "-d", "--name", name, *docker.run_options(UNDER_TEST), *options, IMAGE]
        result = docker(*run, *SLEEPER, check=False, timeout=120)
        inspect = ["inspect", "--format", "{{.State.Status}}", name]
        running = docker(*inspect, check=False).stdout.strip() == "running"
        steps.append(Step("run -d", 0 if running else 1, "", last_line(result.stderr)))
        if not running:
            return steps
        cid = result.stdout.strip()
        for chosen in case.execs:
            result = docker("exec", *chosen, name, "sh", "-c", PROBE_DOCKER, check=False)
            output = PTYS_LISTED.sub("", alike(result.stdout, cid, top))
            output = PTY_NUMBER.sub("/dev/pts/<n>", output)
            steps.append(
                Step(shlex.join(chosen), result.returncode, output, last_line(result.stderr))
            )
    finally:
        docker("rm", "--force", name, check=False)
    return steps


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    print(f"== case {number} docker run {shlex.join(case.options)}")
    print_steps(runc, galley, every)


def main(argv: list[str] | None = None) -> int:
    functions = {"draw": draw, "run_case": run_case, "differing": differing, "report": report}
    return fuzz_main(argv, __doc__, **functions)


if __name__ == "__main__":
    sys.exit(main())
