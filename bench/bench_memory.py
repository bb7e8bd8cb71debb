"""Memory: what galley-runc holds against runc (and crun where it runs), in the same run.

    python -m bench.bench_memory [-n RUNS] [--compare CHECKOUT]...

Four measures per runtime, interleaved round by round (the order rotated each round):
- "run of true, peak": the largest resident set any process of a `run` of `true` reached
  (ru_maxrss as GNU time reports it): the most a node must have free for one container start.
- "run in the foreground, held": what a `run` holds while its container runs, the container's
  own processes left out (`runc run` without --detach, as podman's and ctr's foreground
  modes and many scripts call it).
- "exec in the foreground, held": the same for `exec` of a long-running process: each open
  `kubectl exec` session or exec probe pays it for as long as the process runs.
- "created, held": a created container's init before `start`. runc's is `runc init`, a Go
  process waiting on the exec fifo; galley's is its 2 KiB trampoline (galley.oci.trampoline).

The three "held" measures start two alike and take the mean: what one more costs where
others already run, as on a node. Each is read from /proc/<pid>/smaps_rollup and summed over
the processes: RSS, and USS (Private_Clean + Private_Dirty: pages no other process maps,
what one more container costs the node; the interpreter's or runc's text is paid once per
node, not per container). Prints medians in MiB, and each runtime's USS median over
galley-runc's. Needs GNU time (/usr/bin/time, scripts/setup.sh installs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.bench_runtime import (
    GALLEY,
    build_code_cache,
    make_bench_bundle,
    other_runtimes,
    runnable,
    sleeper_id,
)
from galley.kernel.proc import descendants

SETTLE = 0.2  # seconds a waiting runtime gets to reach its wait before it is read
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Footprint:
    """Resident memory of some processes, in KiB (uss None: not known)."""

    rss: int
    uss: int | None

    def __add__(self, other: Footprint) -> Footprint:
        uss = None if self.uss is None or other.uss is None else self.uss + other.uss
        return Footprint(self.rss + other.rss, uss)


NOTHING = Footprint(0, 0)


def footprint(pid: int) -> Footprint:
    """One process's RSS and USS, from its smaps_rollup (a process gone meanwhile: nothing)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return NOTHING
    fields = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        fields[name] = int(rest.split()[0])
    return Footprint(fields["Rss"], fields["Private_Clean"] + fields["Private_Dirty"])


def held_by(runtime_pid: int, workload_pid: int) -> Footprint:
    """What runtime_pid and its descendants hold, the workload's process tree left out."""
    workload = set(descendants(workload_pid))
    total = NOTHING
    for pid in descendants(runtime_pid):
        if pid not in workload:
            total += footprint(pid)
    return total


@dataclass(frozen=True)
class Setup:
    """One runtime's place in a round."""

    binary: str
    root: str
    bundles: dict[str, str]  # "true", "sleep"
    cid: str

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    def call(self, *args: str) -> None:
        subprocess.run(self.argv(*args), check=True, stdin=subprocess.DEVNULL)


@dataclass
class Waiting:
    """A container process with what its runtime holds for it: a command still waiting for
    it (runtime), or nothing but the created container's init (runtime None)."""

    setup: Setup
    cid: str
    pid_file: Path
    runtime: subprocess.Popen[bytes] | None

    def workload(self) -> int:
        """The container process's pid, once it runs `sleep` (a created init: once the pid
        file is there, as create has returned)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.runtime is not None and self.runtime.poll() is not None:
                raise RuntimeError(f"{self.setup.binary}: exit status {self.runtime.returncode}")
            try:
                pid = int(self.pid_file.read_text())
                if self.runtime is None:
                    return pid
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "sleep":
                        return pid
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.005)
        raise RuntimeError(f"{self.setup.binary}: {self.cid} did not start in {START_TIMEOUT} s")

    def held(self) -> Footprint:
        pid = self.workload()
        return footprint(pid) if self.runtime is None else held_by(self.runtime.pid, pid)

    def end(self) -> None:
        """Kill the container process; wait for the runtime, or delete the created one."""
        if self.runtime is None:
            self.setup.call("delete", "--force", self.cid)
            return
        try:
            os.kill(int(self.pid_file.read_text()), signal.SIGKILL)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            self.runtime.kill()
        self.runtime.wait(START_TIMEOUT)


def _foreground(s: Setup, cid: str, *args: str) -> Waiting:
    pid_file = Path(s.root) / f"{cid}.pid"
    argv = s.argv(args[0], "--pid-file", str(pid_file), *args[1:])
    runtime = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return Waiting(s, cid, pid_file, runtime)


def run_waiting(s: Setup, cid: str) -> Waiting:
    """A foreground `run` of sleep."""
    return _foreground(s, cid, "run", "--bundle", s.bundles["sleep"], cid)


def exec_waiting(s: Setup, cid: str) -> Waiting:
    """A foreground `exec` of sleep in the runtime's running container."""
    return _foreground(s, cid, "exec", sleeper_id(s.root), "sleep", "1000")


def created(s: Setup, cid: str) -> Waiting:
    """A created container of sleep."""
    pid_file = Path(s.root) / f"{cid}.pid"
    s.call("create", "--pid-file", str(pid_file), "--bundle", s.bundles["sleep"], cid)
    return Waiting(s, cid, pid_file, None)


def each_of_two(start: Callable[[Setup, str], Waiting]) -> Callable[[Setup], Footprint]:
    """A measure that starts two alike and reads each once settled: the mean of the two is
    what one more costs where others run, as on a node. A lone runc's text pages count as
    its own (USS) while the interpreter's are shared with this Python; with two of each,
    both runtimes' shared pages leave USS alike."""

    def measure(s: Setup) -> Footprint:
        waiting: list[Waiting] = []
        try:
            for k in "ab":
                waiting.append(start(s, f"{s.cid}{k}"))
            for w in waiting:
                w.workload()
            time.sleep(SETTLE)
            total = sum((w.held() for w in waiting), NOTHING)
        finally:
            for w in waiting:
                w.end()
        return Footprint(total.rss // 2, None if total.uss is None else total.uss // 2)

    return measure


def run_peak(s: Setup) -> Footprint:
    """The largest resident set of a `run` of true's processes, as GNU time reports wait4's
    ru_maxrss (no USS: the kernel keeps no peak of it). Through time(1), a small process: a child's
    ru_maxrss starts at its parent's when spawned by vfork, so this Python's own would
    show."""
    with tempfile.NamedTemporaryFile("r") as out:
        argv = s.argv("run", "--bundle", s.bundles["true"], s.cid)
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *argv],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        peak = int(out.read().split()[-1])
    return Footprint(peak, None)


MEASURES: dict[str, Callable[[Setup], Footprint]] = {
    "run of true, peak": run_peak,
    "run in the foreground, held": each_of_two(run_waiting),
    "exec in the foreground, held": each_of_two(exec_waiting),
    "created, held": each_of_two(created),
}


def bench(
    runtimes: dict[str, str], bundles: dict[str, str], runs: int
) -> dict[str, dict[str, list[Footprint]]]:
    """Footprints: measure -> runtime -> samples, interleaved."""
    roots = {name: tempfile.mkdtemp(prefix="bench-memory-") for name in runtimes}
    found: dict[str, dict[str, list[Footprint]]] = {m: {n: [] for n in runtimes} for m in MEASURES}
    sleepers = {
        name: Setup(b, roots[name], bundles, sleeper_id(roots[name]))
        for name, b in runtimes.items()
    }
    try:
        for sleeper in sleepers.values():
            sleeper.call("run", "--detach", "--bundle", bundles["sleep"], sleeper.cid)
        names = list(runtimes)
        for i in range(runs):
            order = names[i % len(names) :] + names[: i % len(names)]
            for measure, fn in MEASURES.items():
                for name in order:
                    setup = Setup(runtimes[name], roots[name], bundles, f"m{i}")
                    found[measure][name].append(fn(setup))
    finally:
        for sleeper in sleepers.values():
            subprocess.run(sleeper.argv("delete", "--force", sleeper.cid), check=False)
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
    return found


def _median(values: list[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) / 1024 if known and len(known) == len(values) else None


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(found: dict[str, dict[str, list[Footprint]]]) -> None:
    """Medians in MiB per runtime and measure, and each median over galley-runc's: of USS
    where it is known, else of RSS (the peak)."""
    for measure, per_runtime in found.items():
        base_samples = per_runtime["galley-runc"]
        by = "USS" if _median([f.uss for f in base_samples]) is not None else "RSS"
        print(f"\n{measure} (MiB, {len(base_samples)} runs each)")
        print(f"{'runtime':<20}{'RSS':>9}{'USS':>9}{by + ' vs galley':>15}")
        base = _median([f.uss if by == "USS" else f.rss for f in base_samples])
        for name, samples in per_runtime.items():
            rss = _median([f.rss for f in samples])
            uss = _median([f.uss for f in samples])
            value = uss if by == "USS" else rss
            ratio = _shown(value / base if value is not None and base else None)
            print(f"{name:<20}{_shown(rss):>9}{_shown(uss):>9}{ratio:>15}")


def main() -> int:
    """Build the bundles, probe the runtimes, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=10)
    parser.add_argument(
        "--compare", action="append", default=[], metavar="CHECKOUT", help="another galley tree"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        bundles = {
            "true": make_bench_bundle(work / "true", ["true"]),
            "sleep": make_bench_bundle(work / "sleep", ["sleep", "100000"]),
        }
        candidates = {"galley-runc": GALLEY}
        for checkout in args.compare:
            candidates[f"galley@{Path(checkout).name}"] = str(
                Path(checkout) / "bin" / "galley-runc"
            )
        for binary in candidates.values():
            build_code_cache(Path(binary).resolve().parent.parent)
        runtimes = runnable({**candidates, **other_runtimes()}, bundles["true"])
        if "galley-runc" not in runtimes:
            return 1
        report(bench(runtimes, bundles, args.runs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
