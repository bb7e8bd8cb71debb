"""End to end through tools written for runc: docker and podman on galley-runc and on runc.

    python -m bench.bench_tools [-n RUNS]

What a user of those tools waits for, runtime included: `docker run --rm` and `docker exec`
of `true` (a private dockerd, galley.fixtures.docker: its containerd and runc v2 shim call the
runtime), and `podman run --rm` and `podman exec` of `true` (a private podman, conmon calls
the runtime). Interleaved run by run, the runtimes' order rotated each run; printed as
bench_runtime prints (medians, p90s, the ratio to galley-runc's median and the per-round
difference with its ~95% interval). A tool that is not installed is left out. The runtime is
a small part of these: the tool's own work (an API call, containerd's task service, image
and network setup, conmon) is most of the time.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.bench_runtime import GALLEY, report
from galley.fixtures.busybox import make_rootfs
from galley.fixtures.docker import TOOLS as DOCKER_TOOLS
from galley.fixtures.docker import Docker
from galley.fixtures.podman import TOOLS as PODMAN_TOOLS
from galley.fixtures.podman import Podman

IMAGE = "galley/busybox:bench"
SLEEPER = ["sleep", "100000"]
Measure = Callable[[str], object]  # one measured call, on the runtime of that name (raises
# when the tool fails)


def _installed(tools: tuple[str, ...]) -> bool:
    return all(shutil.which(tool) for tool in tools)


def docker_measures(docker: Docker, work: Path, runtimes: dict[str, str]) -> dict[str, Measure]:
    """`docker run --rm` and `docker exec` of true."""
    docker.import_rootfs(make_rootfs(work / "docker-rootfs"), IMAGE)
    sleepers = {}
    for name in runtimes:
        run = ["run", "-d", *docker.run_options(name), IMAGE, *SLEEPER]
        sleepers[name] = docker(*run).stdout.strip()
    return {
        "docker run --rm true": lambda name: docker(
            "run", "--rm", *docker.run_options(name), IMAGE, "true"
        ),
        "docker exec true": lambda name: docker("exec", sleepers[name], "true"),
    }


def podman_measures(podman: Podman, work: Path, runtimes: dict[str, str]) -> dict[str, Measure]:
    """`podman run --rm` and `podman exec` of true (each runtime with a root of its own)."""
    roots = {name: make_rootfs(work / f"podman-rootfs-{name}") for name in runtimes}
    sleepers = {}
    for name, binary in runtimes.items():
        run = ["run", "-d", *podman.run_options(roots[name]), *SLEEPER]
        sleepers[name] = podman(binary, *run).stdout.strip()
    return {
        "podman run --rm true": lambda name: podman(
            runtimes[name], "run", "--rm", *podman.run_options(roots[name]), "true"
        ),
        "podman exec true": lambda name: podman(runtimes[name], "exec", sleepers[name], "true"),
    }


Times = dict[str, dict[str, list[float]]]  # in ms: measure -> runtime -> samples


def bench(measures: dict[str, Measure], names: list[str], runs: int) -> Times:
    """Each measure on each runtime, runs times, interleaved."""
    times: Times = {m: {n: [] for n in names} for m in measures}
    for i in range(runs):
        order = names[i % len(names) :] + names[: i % len(names)]
        for measure, call in measures.items():
            for name in order:
                t0 = time.perf_counter()
                call(name)
                times[measure][name].append((time.perf_counter() - t0) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    args = parser.parse_args()
    runc = shutil.which("runc")
    if runc is None:
        parser.error("runc is not installed: there is nothing to compare with")
    runtimes = {"galley-runc": GALLEY, "runc": runc}
    work = Path(tempfile.mkdtemp(prefix="bench-tools-"))
    work.chmod(0o755)
    stops: list[Callable[[], None]] = []
    measures: dict[str, Measure] = {}
    try:
        if _installed(DOCKER_TOOLS):
            (work / "docker").mkdir()
            docker = Docker(work / "docker", runtimes)
            stops.append(docker.stop)
            measures.update(docker_measures(docker, work, runtimes))
        if _installed(PODMAN_TOOLS):
            (work / "podman").mkdir()
            podman = Podman(work / "podman")
            stops.append(podman.stop)
            measures.update(podman_measures(podman, work, runtimes))
        if not measures:
            parser.error("neither docker.io nor podman is installed")
        times = bench(measures, list(runtimes), args.runs)
    finally:
        for stop in stops:
            stop()
        shutil.rmtree(work, ignore_errors=True)
    report(times)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
