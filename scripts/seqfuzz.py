#!/usr/bin/env python3
"""Sequence fuzzer: random command sequences on one container under runc and galley-runc.

difffuzz.py varies the config; this varies what is done to a container once it exists. Each
case draws an init program, in a pid namespace of its own or (a quarter of the cases) the
host's (with a pid namespace, a quarter also get a user namespace), and a sequence of
commands (create or run -d first, then start, kill with names, numbers, bad names and
--all, pause, resume, exec in its forms, ps, update, events, state,
list, delete with and without -f) from `random.Random(f"seqfuzz-{seed}-{case}")`, and runs
the same sequence under both runtimes (each with its own bundle, --root and cgroupsPath).
After each command it records the exit status and the container's status once it settles; a
case differs when, at some step, one runtime succeeded and the other did not, or the
statuses differ. Error wording is printed, not compared.

    python scripts/seqfuzz.py --seed 1 -n 40 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/seqfuzz.py --seed 1 --case 17 ...          # replay one case, every step
    python scripts/seqfuzz.py --race --seed 1 -n 100 ...      # galley-runc alone, at once

--rootless UID runs both runtimes as that uid (through setpriv; no passwd entry needed) on a
rootless variant of the bundle (a user namespace mapping root to UID alone, the mounts its
root may make, no cgroupsPath, owned by UID), without `kill --all` and `ps`: runc 1.1.5
fails both on a container it could make no cgroup for, where galley-runc finds the init's
descendants (docs/history.md, session 24).

--race runs the first command, then all the others of the case at once, on galley-runc alone
(runc's own races would drown the comparison: docs/history.md, session 15). It checks that no
command fails with a traceback or a corrupt state, or waits for good (but an exec that a
concurrent pause froze, which waits for the thaw as runc's does), and that afterwards `state`
works and `delete -f` leaves no state directory, cgroup or process.

Needs root. The script makes itself a child subreaper and reaps what the runtimes leave to
it (as containerd's shim does): this machine's pid 1 reaps orphans only every second or so,
and an unreaped exec'd process holds a dying pid-namespace init in "created" or "running".
Each case's containers are deleted with -f, and its bundles removed, before the next.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from galley.fixtures.busybox import make_bundle
from galley.fixtures.processes import remove_cgroup_everywhere

INITS = [
    ["sleep", "1000"],
    ["sh", "-c", "sleep 1000 & sleep 1000"],
    ["sh", "-c", "trap '' TERM; sleep 1000 & wait; sleep 1000"],
]

Command = Callable[[str, Path], list[str]]
COMMANDS: dict[str, Command] = {
    "create": lambda c, b: ["create", "--bundle", str(b), c],
    "run-d": lambda c, b: ["run", "-d", "--bundle", str(b), c],
    "start": lambda c, b: ["start", c],
    "kill": lambda c, b: ["kill", c],
    "kill-KILL": lambda c, b: ["kill", c, "KILL"],
    "kill-9": lambda c, b: ["kill", c, "9"],
    "kill-0": lambda c, b: ["kill", c, "0"],
    "kill-USR1": lambda c, b: ["kill", c, "SIGUSR1"],
    "kill-STOP": lambda c, b: ["kill", c, "STOP"],
    "kill-CONT": lambda c, b: ["kill", c, "CONT"],
    "kill-bad": lambda c, b: ["kill", c, "FOO"],
    "kill-num-bad": lambda c, b: ["kill", c, "99"],
    "kill-all": lambda c, b: ["kill", "--all", c, "KILL"],
    "kill-all-TERM": lambda c, b: ["kill", "-a", c, "SIGTERM"],
    "pause": lambda c, b: ["pause", c],
    "resume": lambda c, b: ["resume", c],
    "delete": lambda c, b: ["delete", c],
    "delete-f": lambda c, b: ["delete", "-f", c],
    "delete-other": lambda c, b: ["delete", c + "-none"],
    "exec": lambda c, b: ["exec", c, "true"],
    "exec-d": lambda c, b: ["exec", "-d", c, "sleep", "100"],
    "exec-fail": lambda c, b: ["exec", c, "false"],
    "exec-env": lambda c, b: ["exec", "-e", "A=1", c, "sh", "-c", "exit 3"],
    "exec-user": lambda c, b: ["exec", "-u", "1000:1000", c, "id"],
    "exec-cwd-bad": lambda c, b: ["exec", "--cwd", "/nonexistent", c, "true"],
    "exec-no-program": lambda c, b: ["exec", c, "/nonexistent-binary"],
    "exec-p": lambda c, b: ["exec", "-p", str(b / "process.json"), c],
    "exec-p-bad": lambda c, b: ["exec", "-p", str(b / "bad-process.json"), c],
    "ps": lambda c, b: ["ps", c],
    "ps-json": lambda c, b: ["ps", "--format", "json", c],
    "ps-bad": lambda c, b: ["ps", "--format", "xml", c],
    "update": lambda c, b: ["update", "--pids-limit", "100", c],
    "update-mem": lambda c, b: ["update", "--memory", "100M", c],
    "update-bad": lambda c, b: ["update", "--memory", "abc", c],
    "update-r": lambda c, b: ["update", "-r", str(b / "resources.json"), c],
    "update-r-bad": lambda c, b: ["update", "-r", str(b / "bad-resources.json"), c],
    "events": lambda c, b: ["events", "--stats", c],
    "events-bad": lambda c, b: ["events", "--stats", "--interval", "x", c],
    "state": lambda c, b: ["state", c],
    "list": lambda c, b: ["list", "-q"],
    # Command-line forms as runc's parser reads them (since session 22): options after the
    # id, `--`, a dash word after the id (a positional), numbers kill(2) refuses, global
    # options before the command.
    "kill-neg": lambda c, b: ["kill", c, "-9"],
    "kill-65": lambda c, b: ["kill", c, "65"],
    "kill-plus": lambda c, b: ["kill", c, "+9"],
    "kill-all-after": lambda c, b: ["kill", c, "KILL", "--all"],
    "kill-all-neg": lambda c, b: ["kill", "--all", c, "-1"],
    "state-extra": lambda c, b: ["state", c, "-x"],
    "state-dashdash": lambda c, b: ["state", "--", c],
    "delete-f-after": lambda c, b: ["delete", c, "--force"],
    "pause-debug": lambda c, b: ["--debug", "--log-format", "json", "pause", c],
    "exec-preserve-neg": lambda c, b: ["exec", "--preserve-fds", "-1", c, "true"],
    "exec-dashdash": lambda c, b: ["exec", c, "--", "sh", "-c", "exit 4"],
}
# Drawn three times as often as the rest: the commands that change the container's status.
STATE_CHANGING = {"create", "run", "start", "kill", "pause", "resume", "delete"}
# Left out: `exec --ignore-paused` into a paused container waits for the thaw in both.


@dataclass
class Step:
    command: str
    status: int | str  # the exit status, or "timeout"
    after: str  # the container's status once settled, or "absent"
    error: str  # stderr's last line


class Runner:
    """Starts the runtimes' processes; a reaper thread reaps every other child of ours."""

    def __init__(self) -> None:
        self.ours: set[int] = set()
        self.lock = threading.Lock()  # a child is ours before the reaper can see it exit
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
            raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        me = os.getpid()
        while True:
            time.sleep(0.01)
            with self.lock:
                try:
                    children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
                except OSError:
                    continue
                for pid in map(int, children):
                    if pid not in self.ours and _zombie(pid):
                        try:
                            os.waitpid(pid, os.WNOHANG)
                        except ChildProcessError:
                            pass

    def spawn(
        self, argv: list[str], stdin: int = subprocess.DEVNULL, cwd: Path | None = None
    ) -> Running:
        with self.lock:
            running = Running(self, argv, stdin, cwd)
            self.ours.add(running.proc.pid)
        return running


class Running:
    """One runtime command; its output in files, not pipes: a detached container keeps the
    stdio it inherits."""

    def __init__(self, runner: Runner, argv: list[str], stdin: int, cwd: Path | None) -> None:
        self.runner = runner
        self.out = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed by result()
        self.err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=self.out, stderr=self.err, cwd=cwd)

    def result(self, timeout: float) -> tuple[int | str, str, str]:
        """(exit status or "timeout": killed after timeout seconds, stdout, stderr)."""
        try:
            status: int | str = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = "timeout"
        finally:
            self.runner.ours.discard(self.proc.pid)
            if self.proc.stdin is not None:  # a pipe held open while it ran
                self.proc.stdin.close()
        with self.out, self.err:
            self.out.seek(0)
            self.err.seek(0)
            return status, self.out.read(), self.err.read()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@dataclass
class Case:
    init: list[str]
    pid_namespace: bool  # False: the host's (the init's death ends no other process)
    commands: list[str]
    user_namespace: bool = False  # root is host 100000; proc, tmpfs and devpts only


# --rootless's uid (set by main; None: the runtimes run as we do, as root).
ROOTLESS: list[int] = []
ROOTLESS_SKIPPED = ("kill-all", "ps")  # the commands --rootless leaves out (see above)


def draw(seed: int, number: int) -> Case:
    rnd = random.Random(f"seqfuzz-{seed}-{number}")
    init = rnd.choice(INITS)
    pid_namespace = rnd.random() < 0.75
    first = rnd.choice(["create", "run-d"])
    names = sorted(COMMANDS)
    weights = [3 if name.split("-")[0] in STATE_CHANGING else 1 for name in names]
    commands = [first, *rnd.choices(names, weights, k=rnd.randint(3, 9))]
    if ROOTLESS:
        commands = [c for c in commands if not c.startswith(ROOTLESS_SKIPPED)]
    # Drawn apart, so that the cases of a seed stay what they were before user namespaces.
    user_namespace = (
        pid_namespace and random.Random(f"seqfuzz-userns-{seed}-{number}").random() < 0.25
    )
    return Case(init, pid_namespace, commands, user_namespace)


def in_user_namespace(config: dict[str, Any]) -> None:
    """A user namespace of its own for the config: root is host 100000 (group 200000), and
    only the mounts a mapped root may make (proc, tmpfs, devpts)."""
    linux = config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    config["mounts"] = [m for m in config["mounts"] if m["type"] in ("proc", "tmpfs", "devpts")]


def rootless(config: dict[str, Any], uid: int) -> None:
    """The config for a caller whose uid is uid (--rootless): root mapped to it alone, the
    mounts that root may make, without ids it does not map, and no cgroup of its own."""
    in_user_namespace(config)
    linux = config["linux"]
    linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    for mount in config["mounts"]:
        options = mount.get("options") or []
        mount["options"] = [o for o in options if not o.startswith(("uid=", "gid="))]
    del linux["cgroupsPath"]
    linux.pop("resources", None)


def write_bundle(path: Path, case: Case, cgroup: str) -> None:
    make_bundle(path, case.init)
    config = json.loads((path / "config.json").read_text())
    if not case.pid_namespace:
        namespaces = config["linux"]["namespaces"]
        namespaces[:] = [ns for ns in namespaces if ns["type"] != "pid"]
    config["process"]["terminal"] = False
    config["linux"]["cgroupsPath"] = cgroup
    if ROOTLESS:
        rootless(config, ROOTLESS[0])
    elif case.user_namespace:
        in_user_namespace(config)
    (path / "config.json").write_text(json.dumps(config))
    process = dict(config["process"], args=["sh", "-c", "exit 5"])
    (path / "process.json").write_text(json.dumps(process))
    (path / "bad-process.json").write_text(json.dumps({"args": ["true"]}))  # no cwd
    resources = {"memory": {"limit": 200_000_000}, "pids": {"limit": 50}, "cpu": {"shares": 512}}
    (path / "resources.json").write_text(json.dumps(resources))
    (path / "bad-resources.json").write_text('{"memory": {"limit": "lots"}}')
    if ROOTLESS:  # a user's own bundle
        subprocess.run(["chown", "-R", str(ROOTLESS[0]), str(path)], check=True)


class Container:
    def __init__(self, runner: Runner, runtime: str, root: Path, cid: str) -> None:
        self.runner, self.runtime, self.root, self.cid = runner, runtime, root, cid

    def __call__(self, *args: str) -> tuple[int | str, str, str]:
        return self.spawn(*args).result(15)

    def spawn(self, *args: str, cwd: Path | None = None) -> Running:
        prefix: list[str] = []
        if ROOTLESS:  # as the user, with a state directory of its own
            uid = ROOTLESS[0]
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            if not self.root.exists():
                self.root.mkdir()
                os.chown(self.root, uid, -1)
        argv = [*prefix, self.runtime, "--root", str(self.root), *args]
        return self.runner.spawn(argv, cwd=cwd)

    def remove(self, cgroup: str) -> None:
        """delete -f, then whatever is left of the container's cgroup in each hierarchy:
        runc 1.1.5 leaves it behind on cgroup v2 (its processes, if any, are ours to kill)."""
        self("delete", "-f", self.cid)
        remove_cgroup_everywhere(cgroup, time.monotonic() + 2)

    def status(self) -> str:
        code, out, _ = self("state", self.cid)
        return str(json.loads(out)["status"]) if code == 0 else "absent"

    def settled(self) -> str:
        """The status once two reads 50 ms apart agree (at most ~1 s)."""
        last = self.status()
        for _ in range(20):
            time.sleep(0.05)
            now = self.status()
            if now == last:
                return now
            last = now
        return last


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    name = Path(runtime).name
    bundle = work / f"bundle-{name}"
    cgroup = f"/seqfuzz-{tag}-{name}"
    write_bundle(bundle, case, cgroup)
    container = Container(runner, runtime, work / f"root-{name}", f"sf-{tag}")
    steps = []
    try:
        for command in case.commands:
            code, _, err = container(*COMMANDS[command](container.cid, bundle))
            lines = err.strip().splitlines()
            steps.append(Step(command, code, container.settled(), lines[-1] if lines else ""))
    finally:
        container("resume", container.cid)
        container.remove(cgroup)
    return steps


def race_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[str]:
    """--race: the first command, then all the others at once; what went wrong. An exec that
    a concurrent pause froze waits for the thaw (as runc's): killed after 20 s, not counted."""
    bundle = work / "bundle"
    cgroup = f"/seqfuzz-{tag}"
    write_bundle(bundle, case, cgroup)
    container = Container(runner, runtime, work / "root", f"sf-{tag}")
    first, *rest = case.commands
    container(*COMMANDS[first](container.cid, bundle))
    started = [(c, container.spawn(*COMMANDS[c](container.cid, bundle))) for c in rest]
    problems = []
    pausing = any(c.startswith("pause") for c in rest)  # "pause", "pause-debug"
    for command, running in started:
        code, _, err = running.result(20)
        if code == "timeout" and not (command.startswith("exec") and pausing):
            problems.append(f"{command} did not finish in 20 s")
        if "Traceback" in err or "corrupt" in err:
            problems.append(f"{command}: {err.strip()[-300:]}")
    code, _, err = container("state", container.cid)
    if code != 0 and "does not exist" not in err:
        problems.append(f"state afterwards: {err.strip()}")
    container("resume", container.cid)
    code, _, err = container("delete", "-f", container.cid)
    if code != 0 and "does not exist" not in err:
        problems.append(f"delete -f afterwards: {err.strip()}")
    if (container.root / container.cid).exists():
        problems.append("its state directory is left")
    # galley-runc's, after its delete -f: removed, killing what is in it (ours to end)
    for directory in remove_cgroup_everywhere(cgroup, time.monotonic() + 2):
        problems.append(f"{directory} is left")
    return problems


def differing(runc: list[Step], galley: list[Step]) -> list[int]:
    return [
        i
        for i, (a, b) in enumerate(zip(runc, galley, strict=True))
        if (a.status == 0) != (b.status == 0)
        or a.after != b.after
        or "timeout" in (a.status, b.status)
    ]


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    pidns = "own pid namespace" if case.pid_namespace else "host's pid namespace"
    pidns += " and user namespace" if case.user_namespace else ""
    print(f"== case {number} init={case.init} ({pidns}) commands={case.commands}")
    steps = range(len(runc)) if every else differing(runc, galley)
    for i in steps:
        for who, step in (("runc", runc[i]), ("galley", galley[i])):
            print(
                f"  {i} {step.command:<15} {who:<6} {step.status!s:>7} -> {step.after:<8}", end=""
            )
            print(f" {step.error[:150]}")
    sys.stdout.flush()


def fuzz_parser(description: str) -> argparse.ArgumentParser:
    """The options every fuzzer here takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-n", type=int, default=40, help="cases")
    parser.add_argument("--case", type=int, help="replay this case only, printing every step")
    parser.add_argument("--galley", default="bin/galley-runc")
    parser.add_argument("--runc", default="/usr/sbin/runc")
    return parser


def fuzz_main(argv: list[str] | None, doc: str, **functions: Any) -> int:
    """A fuzzer's main: its options parsed (fuzz_parser, described by doc's first line), then
    compare_runtimes with its functions (draw, run_case, differing, report)."""
    args = fuzz_parser(doc.split("\n", maxsplit=1)[0]).parse_args(argv)
    return compare_runtimes(args, Runner(), **functions)


def compare_runtimes(
    args: argparse.Namespace,
    runner: Runner,
    *,
    draw: Callable[[int, int], Any],
    run_case: Callable[[Runner, str, Any, Path, str], list[Any]],
    differing: Callable[[list[Any], list[Any]], list[Any]],
    report: Callable[[int, Any, list[Any], list[Any], bool], None],
) -> int:
    """Each case (args.case, or args.n of them) under runc, then under galley-runc, in a work
    directory of its own; the cases that differ are reported (with --case, every step).
    The exit status: 1 when a case differs."""
    numbers = [args.case] if args.case is not None else list(range(args.n))
    differ = 0
    for number in numbers:
        case = draw(args.seed, number)
        work = Path(tempfile.mkdtemp(prefix=f"fuzz-{args.seed}-{number}-"))
        work.chmod(0o755)  # a user namespace's root (host 100000) must reach the rootfs
        tag = f"{args.seed}-{number}"
        try:
            runc = run_case(runner, args.runc, case, work, tag)
            galley = run_case(runner, os.path.abspath(args.galley), case, work, tag)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if differing(runc, galley) or args.case is not None:
            differ += bool(differing(runc, galley))
            report(number, case, runc, galley, args.case is not None)
    print(f"{differ}/{len(numbers)} cases differ")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    parser = fuzz_parser(__doc__.split("\n")[0])
    parser.add_argument("--race", action="store_true", help="galley only: commands at once")
    parser.add_argument("--rootless", type=int, metavar="UID", help="both runtimes as this uid")
    args = parser.parse_args(argv)
    if args.rootless is not None:
        ROOTLESS.append(args.rootless)
    runner = Runner()
    if not args.race:
        return compare_runtimes(
            args, runner, draw=draw, run_case=run_case, differing=differing, report=report
        )
    numbers = [args.case] if args.case is not None else list(range(args.n))
    wrong = 0
    for number in numbers:
        case = draw(args.seed, number)
        work = Path(tempfile.mkdtemp(prefix=f"seqfuzz-{args.seed}-{number}-"))
        work.chmod(0o755)
        try:
            problems = race_case(
                runner, os.path.abspath(args.galley), case, work, f"{args.seed}-{number}"
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if problems:
            wrong += 1
            print(f"== case {number} {case}: {problems}", flush=True)
    print(f"{wrong}/{len(numbers)} cases went wrong")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
