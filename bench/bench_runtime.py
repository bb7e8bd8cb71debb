"""galley-runc against runc (and crun where it runs) on one busybox bundle running `true`.

    python -m bench.bench_runtime [-n RUNS] [--idle MS] [--compare CHECKOUT]... [--measure M]...

Eight measures per runtime, interleaved run by run (the runtimes' order rotated each run) so
that machine noise hits all alike:
`run` (create + start + wait + delete in one command), the same after 150 ms of quiet (see
--idle), the three-command sequence
`create` → `start` → `delete` that containerd's shim drives, `exec` of `true` in a running
container (what a kubelet's exec probes cost), `run` under a Docker-style seccomp profile
(what most Kubernetes containers get), `state` of a running container, and four `run`s
started together (a node starting several pods: on 2 cores it weighs each runtime's CPU
time, which a lone command's wall time hides; reported per container), and `--version`
(the start-up under every command, before any work). Prints medians,
p90s, the ratio of each runtime's median to galley-runc's, and the median of their per-round
differences with its ~95% interval (bench.stats: the column to read for an A/B). A runtime
that cannot run here (crun refuses the hybrid cgroup layout) is reported with its error
instead. --compare adds another
galley checkout (say a `git worktree` of the previous commit) to the same interleaved run: the
way to see what a change gains on this noisy machine. Each checkout's code cache
(galley.codecache) is built first, as scripts/setup.sh builds it. --measure keeps only the
measures whose names contain M ("run", "exec", "seccomp", ...): a 1 ms change needs a few
hundred runs here, which all five measures would take long to give.

--idle MS waits that long before every measured command. Back to back (the default), each
command comes within milliseconds of the previous one's cgroup migrations; after 150 ms of
quiet, the first migration waits for an RCU grace period again (galley.oci.cgroupwarm), as
for a container started on a node that has not moved a process for a while, the usual case.
The quiet `run` measure shows that case in every run of the bench; --idle makes every
measure wait.

"galley (library)" runs the same commands through galley.oci.cli.main in one warm process
(bench/library_worker.py): what galleyd's shim will pay per container, with no interpreter
start, imports or teardown per command, against what containerd pays running runc.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.stats import paired_difference
from galley.fixtures.busybox import make_bundle
from galley.fixtures.processes import cgroup_mounts

REPO = Path(__file__).resolve().parent.parent
GALLEY = str(REPO / "bin" / "galley-runc")


LIBRARY = "galley (library)"  # galley.oci in one warm process (bench/library_worker.py)


class LibraryWorker:
    """The warm process that runs galley-runc's commands in-process, one at a time."""

    def __init__(self) -> None:
        request_r, self._request = os.pipe()
        self._reply, reply_w = os.pipe()
        worker = str(REPO / "bench" / "library_worker.py")
        self._proc = subprocess.Popen(
            ["/usr/bin/python3", "-IS", worker, str(request_r), str(reply_w)],
            pass_fds=(request_r, reply_w),
        )
        os.close(request_r)
        os.close(reply_w)
        self._replies = os.fdopen(self._reply, "r")

    def __call__(self, *args: str) -> int:
        os.write(self._request, (json.dumps(list(args)) + "\n").encode())
        reply = self._replies.readline()
        if not reply:
            raise RuntimeError("the library worker exited")
        return int(reply)

    def close(self) -> None:
        os.close(self._request)
        self._replies.close()
        self._proc.wait()


_library: LibraryWorker | None = None


def _cli(binary: str) -> str:
    """The command-line program for a runtime (the library's state is galley-runc's)."""
    return GALLEY if binary == LIBRARY else binary


def _call(binary: str, root: str, *args: str) -> None:
    """Run one runtime command. Its stderr goes to a file, not a pipe: a created container
    inherits the runtime's stdio and would hold a pipe open until it exits. No timeout:
    subprocess waits for a timeout by polling with doubling sleeps, which rounds every
    measure up to the next step (63.5 ms, 113.5 ms, ...)."""
    if binary == LIBRARY:
        if _library is None:
            raise RuntimeError("no library worker")
        status = _library("--root", root, *args)
        if status != 0:
            raise RuntimeError(f"{LIBRARY} {args[0]}: exit status {status}")
        return
    with tempfile.TemporaryFile() as err:
        result = subprocess.run(
            [binary, "--root", root, *args],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        if result.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{binary} {args[0]}: {err.read().decode(errors='replace').strip()}")


def run_once(binary: str, root: str, bundle: str, cid: str) -> None:
    """`run` of the bundle (foreground: returns when the container has exited and is gone)."""
    _call(binary, root, "run", "--bundle", bundle, cid)


def create_start_delete(binary: str, root: str, bundle: str, cid: str) -> None:
    """create, start, then delete once `true` has exited (watched through --pid-file, as a
    shim would, rather than by retrying delete)."""
    pid_file = os.path.join(root, f"{cid}.pid")
    _call(binary, root, "create", "--bundle", bundle, "--pid-file", pid_file, cid)
    with open(pid_file) as f:
        pid = int(f.read())
    _call(binary, root, "start", cid)
    while _running(pid):
        time.sleep(0.0005)
    _call(binary, root, "delete", cid)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in {b"Z", b"X"}
    except FileNotFoundError:
        return False


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def sleeper_id(root: str) -> str:
    """The running container exec goes into, one per runtime: named after its state root, so
    that two runtimes' containers never share a cgroup."""
    return "sleeper-" + os.path.basename(root).rsplit("-", 1)[-1].replace("_", "-")


SECCOMP = "seccomp"  # the bundle under a Docker-style allow-list profile


def allow_list_profile() -> dict[str, object]:
    """~350 syscalls allowed, the rest EPERM: the shape of Docker's and containerd's defaults."""
    from galley.kernel import seccomp as kseccomp  # noqa: PLC0415

    denied = {"mount", "umount2", "unshare", "setns", "keyctl", "ptrace", "reboot", "bpf"}
    names = (kseccomp.syscall_name(nr) for nr in range(435))
    allowed = sorted(n for n in names if n and n not in denied)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }


def run_seccomp(binary: str, root: str, bundle: str, cid: str) -> None:
    """`run` of the bundle beside the main one that has the allow-list profile."""
    run_once(binary, root, str(Path(bundle).parent / SECCOMP), cid)


def exec_once(binary: str, root: str, _bundle: str, _cid: str) -> None:
    """`exec` of true in the running container, waiting for it."""
    _call(binary, root, "exec", sleeper_id(root), "true")


def state_once(binary: str, root: str, _bundle: str, _cid: str) -> None:
    """`state` of the running container (what a shim asks most)."""
    _call(binary, root, "state", sleeper_id(root))


VERSION = "--version (start-up alone)"


def version_once(binary: str, root: str, _bundle: str, _cid: str) -> None:
    """`--version`: the floor under every command, before any work (an interpreter's start
    and the entry's imports for galley-runc, a Go program's start for runc)."""
    _call(binary, root, "--version")


AT_ONCE = 4
PARALLEL = f"{AT_ONCE} at once, per container"


def run_at_once(binary: str, root: str, bundle: str, cid: str) -> None:
    """AT_ONCE `run`s started together, as a node starting several pods: the batch's time,
    which bench() divides by AT_ONCE. On this 2-core machine they share the cores, so a
    runtime's CPU time per container shows here, where a lone command on an idle machine
    hides all but its critical path."""
    with ThreadPoolExecutor(AT_ONCE) as pool:
        ids = [f"{cid}-{k}" for k in range(AT_ONCE)]
        list(pool.map(lambda one: run_once(binary, root, bundle, one), ids))


QUIET_RUN = "run after 150 ms of quiet"
QUIET_BEFORE = {QUIET_RUN: 0.150}  # seconds of quiet a measure takes before each command

MEASURES: dict[str, Callable[[str, str, str, str], None]] = {
    "run": run_once,
    QUIET_RUN: run_once,
    "create+start+delete": create_start_delete,
    "exec": exec_once,
    "run with a seccomp profile": run_seccomp,
    "state": state_once,
    PARALLEL: run_at_once,
    VERSION: version_once,
}
PER_CALL = {PARALLEL: AT_ONCE}  # containers a measure's call makes
# measures the library worker does not take: one at a time, it cannot start several; in
# process there is no start-up to measure
NO_LIBRARY = {PARALLEL, VERSION}


def build_code_cache(checkout: Path) -> None:
    """What scripts/setup.sh does: compile galley-runc's modules into one file, with the
    interpreter galley-runc runs on (a checkout from before galley.codecache has none)."""
    builder = checkout / "src" / "galley" / "codecache.py"
    if builder.exists():
        subprocess.run(
            ["/usr/bin/python3", "-IS", str(builder)], check=True, stdout=subprocess.DEVNULL
        )


def probe(name: str, binary: str, root: str, bundle: str) -> str | None:
    """None if the runtime can run the bundle here, else its error message."""
    cid = "probe-" + _safe(name)
    try:
        run_once(binary, root, bundle, cid)
    except RuntimeError as e:
        subprocess.run([_cli(binary), "--root", root, "delete", "--force", cid], check=False)
        _remove_cgroup(cid)
        return str(e).splitlines()[-1]
    return None


def _remove_cgroup(cid: str) -> None:
    """The empty cgroup a runtime that failed to start left at its default path, /<id>
    (crun refused by this host leaves one, and has no state for delete to find it)."""
    for mount in cgroup_mounts():
        try:
            os.rmdir(os.path.join(mount, cid))
        except OSError:  # absent, or not empty: not ours to empty
            pass


def make_bench_bundle(path: Path, args: list[str], seccomp: dict[str, object] | None = None) -> str:
    """A busybox bundle running args, in a form every runtime here takes."""
    made = make_bundle(path, args)
    config = json.loads((made / "config.json").read_text())
    config["ociVersion"] = "1.0.2"  # crun 1.8 refuses versions above 1.1.x
    if seccomp is not None:
        config["linux"]["seccomp"] = seccomp
    (made / "config.json").write_text(json.dumps(config))
    return str(made)


def other_runtimes() -> dict[str, str]:
    """runc and crun, those installed."""
    return {name: path for name in ("runc", "crun") if (path := shutil.which(name))}


def runnable(candidates: dict[str, str], bundle: str) -> dict[str, str]:
    """The candidates that run the bundle here; the others are named with their error."""
    runtimes = {}
    for name, binary in candidates.items():
        root = tempfile.mkdtemp(prefix=f"probe-{_safe(name)}-")
        error = probe(name, binary, root, bundle)
        shutil.rmtree(root, ignore_errors=True)
        if error is None:
            runtimes[name] = binary
        else:
            print(f"{name}: cannot run here: {error}")
    return runtimes


def bench(
    runtimes: dict[str, str],
    bundle: str,
    sleeper: str,
    runs: int,
    idle: float = 0.0,
    measures: Sequence[str] = tuple(MEASURES),
) -> dict[str, dict[str, list[float]]]:
    """Times in ms: measure -> runtime -> samples, interleaved."""
    roots = {name: tempfile.mkdtemp(prefix=f"bench-{_safe(name)}-") for name in runtimes}
    times: dict[str, dict[str, list[float]]] = {
        m: {n: [] for n in runtimes if not (n == LIBRARY and m in NO_LIBRARY)} for m in measures
    }
    try:
        for name, binary in runtimes.items():
            _call(
                binary, roots[name], "run", "--detach", "--bundle", sleeper, sleeper_id(roots[name])
            )
        names = list(runtimes)
        for i in range(runs):
            # Rotated each run: the kernel finishes tearing down the previous container (its
            # cgroups, its namespaces) while the next command runs, which costs whoever
            # comes first after another measure's last delete.
            order = names[i % len(names) :] + names[: i % len(names)]
            for measure in measures:
                fn = MEASURES[measure]
                for name in (n for n in order if n in times[measure]):
                    binary = runtimes[name]
                    time.sleep(max(idle, QUIET_BEFORE.get(measure, 0.0)))
                    t0 = time.perf_counter()
                    fn(binary, roots[name], bundle, f"b{i}")
                    elapsed = (time.perf_counter() - t0) * 1000
                    times[measure][name].append(elapsed / PER_CALL.get(measure, 1))
    finally:
        for name, binary in runtimes.items():
            subprocess.run(
                [_cli(binary), "--root", roots[name], "delete", "--force", sleeper_id(roots[name])],
                check=False,
            )
        for root in roots.values():
            shutil.rmtree(root, ignore_errors=True)
    return times


def report(times: dict[str, dict[str, list[float]]]) -> None:
    """Print median / p90 per runtime and measure, the ratio of medians to galley-runc's,
    and the median per-round difference from galley-runc with its ~95% interval (bench.stats:
    what an A/B can claim; an interval that spans 0 shows no difference)."""
    for measure, per_runtime in times.items():
        base_samples = per_runtime["galley-runc"]
        base = statistics.median(base_samples)
        print(f"\n{measure} (ms, {len(base_samples)} runs each)")
        print(f"{'runtime':<20}{'median':>9}{'p90':>9}{'vs galley':>11}   per-round diff [95%]")
        for name, samples in per_runtime.items():
            med = statistics.median(samples)
            p90 = sorted(samples)[int(0.9 * (len(samples) - 1))]
            diff = "" if samples is base_samples else str(paired_difference(base_samples, samples))
            print(f"{name:<20}{med:>9.1f}{p90:>9.1f}{med / base:>11.2f}   {diff}".rstrip())


def main() -> int:
    """Build the bundle, probe the runtimes, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument(
        "--idle", type=float, default=0.0, metavar="MS", help="quiet before each command"
    )
    parser.add_argument(
        "--compare", action="append", default=[], metavar="CHECKOUT", help="another galley tree"
    )
    parser.add_argument(
        "--measure", action="append", default=[], metavar="M", help="only measures naming M"
    )
    args = parser.parse_args()
    measures = [m for m in MEASURES if not args.measure or any(w in m for w in args.measure)]
    if not measures:
        parser.error(f"--measure: none of {', '.join(MEASURES)} matches")
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        bundle = make_bench_bundle(work / "bundle", ["true"])
        sleeper = make_bench_bundle(work / "sleeper", ["sleep", "100000"])
        make_bench_bundle(work / SECCOMP, ["true"], allow_list_profile())
        candidates = {"galley-runc": GALLEY, LIBRARY: LIBRARY}
        for checkout in args.compare:
            candidates[f"galley@{Path(checkout).name}"] = str(
                Path(checkout) / "bin" / "galley-runc"
            )
        for binary in candidates.values():
            build_code_cache(Path(_cli(binary)).resolve().parent.parent)
        global _library  # noqa: PLW0603 - one worker for the whole run
        _library = LibraryWorker()
        runtimes = runnable({**candidates, **other_runtimes()}, bundle)
        if "galley-runc" not in runtimes:
            return 1
        report(bench(runtimes, bundle, sleeper, args.runs, args.idle / 1000, measures))
    finally:
        if _library is not None:
            _library.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
