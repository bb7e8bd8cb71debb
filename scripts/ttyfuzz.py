#!/usr/bin/env python3
"""Terminal fuzzer: containers and execs with a terminal under runc and galley-runc.

difffuzz.py, seqfuzz.py and execfuzz.py never give a process a terminal; this draws only
processes that have one (and now and then one that asks for it wrongly). Each case, from
`random.Random(f"ttyfuzz-{seed}-{case}")`, draws the container's user (uid, gid, additional
gids), in a quarter of the cases a user namespace of its own, the devpts mount's options (or no
devpts at all), the console size, TERM, and how the container starts: `create
--console-socket` then `start`, `run -d --console-socket`, or `run` in the foreground relaying
the terminal to its own stdout. Then one to three execs with `-t`: detached with a console
socket (flags or a `-p` process.json with its own user and consoleSize), in the foreground
(the runtime relays), or detached without a console socket (refused by both). Drawn apart
(so that older seeds keep their cases): in 30% of the detached cases a container without a
terminal of its own, and in 15% no tmpfs on /dev (the rootfs's empty directory).

Each terminal process is a busybox shell that prints what its terminal is: tty's name, `stty
-a`, the owner, group, mode and device of the pty, /dev/console, /dev/ptmx and /dev/tty, the
container's ptys, whether it leads its session and owns the foreground, the devpts and
/dev/console mounts, its fds 0-2 and its environment. A case differs when at some step one
runtime ran the probe and the other refused, or both ran it and the terminal showed something
else (bytes as the master read them, "\\r\\n" included).

    python scripts/ttyfuzz.py --seed 1 -n 40 --galley bin/galley-runc --runc /usr/sbin/runc
    python scripts/ttyfuzz.py --seed 1 --case 7 ...           # replay one case, every step

Needs root. Containers and bundles of a case are removed before the next.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from execfuzz import Step, differing, last_line, print_steps  # scripts/ is not a package
from seqfuzz import Container, Runner, fuzz_main, in_user_namespace

from galley.fixtures.busybox import make_bundle  # seqfuzz put src/ on the path

END = "__probe_done__"
# /proc/$$/stat after the command's name: state ppid pgrp session tty_nr tpgid
# The probe waits a moment first: runc sizes the pty it relays after its own terminal only
# once the process runs (galley-runc before), so an earlier look would race with that.
PROBE = (
    "sleep 0.2; echo tty $(tty); stty -a; echo size $(stty size);"
    " for f in $(tty) /dev/console /dev/ptmx /dev/pts/ptmx /dev/tty; do"
    " stat -c '%n %u %g %a %t:%T %F' $f 2>&1; done;"
    " echo ptys $(ls /dev/pts);"
    " set -- $(cut -d')' -f2 /proc/$$/stat);"
    ' echo session-leader $([ "$4" = $$ ] && echo y || echo n)'
    ' group-leader $([ "$3" = $$ ] && echo y || echo n)'
    ' foreground $([ "$6" = "$3" ] && echo y || echo n) tty_nr $5;'
    " grep -E ' /dev/(pts|console) ' /proc/$$/mountinfo | cut -d' ' -f5,6,9-;"
    " for fd in 0 1 2; do echo fd$fd $(readlink /proc/$$/fd/$fd); done;"
    " env | sort"
)
DEVPTS = {
    "runc's spec": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    "no gid": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
    "mode 600": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0600", "gid=5"],
    "ptmx 000": ["nosuid", "noexec", "newinstance", "ptmxmode=000", "mode=0620", "gid=5"],
    "no options": [],
    "read-only": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "ro"],
}


def draw_user(rnd: random.Random) -> dict[str, Any]:
    user: dict[str, Any] = {"uid": rnd.choice([0, 0, 1000, 65534]), "gid": rnd.choice([0, 5, 100])}
    if rnd.random() < 0.3:
        user["additionalGids"] = rnd.sample([5, 10, 1000], rnd.randint(1, 2))
    return user


def draw_size(rnd: random.Random) -> dict[str, int] | None:
    if rnd.random() < 0.4:
        return None
    return {
        "height": rnd.choice([0, 1, 24, 50, 65535]),
        "width": rnd.choice([0, 1, 80, 200, 65535]),
    }


def draw_exec(rnd: random.Random) -> dict[str, Any]:
    """An exec: how (console socket, foreground, or detached without a socket) and what with
    (flags, or a process.json's fields)."""
    how = rnd.choices(["socket", "foreground", "no socket"], [6, 3, 1])[0]
    if rnd.random() < 0.5:
        flags: list[str] = []
        if rnd.random() < 0.5:
            flags += ["-u", rnd.choice(["0", "1000", "1000:5", "65534:100"])]
        if rnd.random() < 0.2:
            flags += ["-g", rnd.choice(["5", "10"])]
        if rnd.random() < 0.3:
            flags += ["-e", rnd.choice(["TERM=vt100", "TERM=", "A=1"])]
        return {"how": how, "flags": flags}
    process: dict[str, Any] = {}
    if rnd.random() < 0.6:
        process["user"] = draw_user(rnd)
    size = draw_size(rnd)
    if size is not None:
        process["consoleSize"] = size
    if rnd.random() < 0.5:
        process["env"] = ["PATH=/bin", rnd.choice(["TERM=xterm", "TERM=dumb", "X=y"])]
    return {"how": how, "process": process}


@dataclass
class Case:
    process: dict[str, Any]  # the container's process, but args
    start: str  # "create", "run -d" or "run"
    devpts: str | None  # a key of DEVPTS; None: no devpts mount
    user_namespace: bool  # root is host 100000 (group 200000); proc, tmpfs, devpts only
    execs: list[dict[str, Any]] = field(default_factory=list)
    dev_tmpfs: bool = True  # False: the rootfs's own /dev (a directory with nothing in it)


def draw(seed: int, number: int) -> Case:
    rnd = random.Random(f"ttyfuzz-{seed}-{number}")
    process: dict[str, Any] = {"terminal": True}
    if rnd.random() < 0.5:
        process["user"] = draw_user(rnd)
    size = draw_size(rnd)
    if size is not None:
        process["consoleSize"] = size
    process["env"] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    if rnd.random() < 0.6:
        process["env"].append(rnd.choice(["TERM=xterm", "TERM=linux", "TERM="]))
    start = rnd.choice(["create", "run -d", "run"])
    devpts = rnd.choice([*DEVPTS, None]) if rnd.random() < 0.3 else "runc's spec"
    user_namespace = rnd.random() < 0.25
    case = Case(process, start, devpts, user_namespace)
    if start != "run":
        case.execs = [draw_exec(rnd) for _ in range(rnd.randint(1, 3))]
    # Drawn apart, so that the cases of a seed stay what they were before these two: a
    # container without a terminal of its own (`kubectl exec -it` into most pods), and /dev
    # left to the rootfs.
    other = random.Random(f"ttyfuzz-more-{seed}-{number}")
    if start != "run" and other.random() < 0.3:
        process["terminal"] = False
    case.dev_tmpfs = other.random() >= 0.15
    return case


class Console:
    """A console socket: the pty master a runtime sends, received by a thread."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.server.settimeout(15)
        self.masters: list[int] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 4)
            self.masters.extend(fds)

    def master(self) -> int | None:
        """The master received once the runtime's command ended (the socket closed first)."""
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes an accept that waits for nothing
        except OSError:
            pass
        self.server.close()
        self.thread.join(5)
        return self.masters[0] if self.masters else None


def read_terminal(master: int, until: bytes | None, seconds: float = 10) -> str:
    """What the master reads until until (or the slave's last close: EIO), at most seconds."""
    data = b""
    deadline = time.monotonic() + seconds
    os.set_blocking(master, False)
    while time.monotonic() < deadline and not (until and until in data):
        try:
            chunk = os.read(master, 65536)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        except OSError:  # EIO: every slave fd closed
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def write_bundle(path: Path, case: Case, cgroup: str) -> None:
    make_bundle(path, ["sh", "-c", f"{PROBE}; echo {END}; exec sleep 1000"])
    config = json.loads((path / "config.json").read_text())
    config["process"].update(case.process)
    if case.start == "run":
        config["process"]["args"] = ["sh", "-c", PROBE]
    elif not case.process["terminal"]:
        config["process"]["args"] = ["sleep", "1000"]
    mounts = config["mounts"]
    if not case.dev_tmpfs:
        mounts.remove(next(m for m in mounts if m["destination"] == "/dev"))
    devpts = next(m for m in mounts if m["type"] == "devpts")
    if case.devpts is None:
        mounts.remove(devpts)
    else:
        devpts["options"] = DEVPTS[case.devpts]
    config["linux"]["cgroupsPath"] = cgroup
    if case.user_namespace:
        in_user_namespace(config)
    (path / "config.json").write_text(json.dumps(config))


def on_a_tty(container: Container, *args: str) -> tuple[int | str, str, str]:
    """A foreground command on a pty of its own (script(1)), as a user at a terminal runs it:
    runc 1.1 wants a terminal of its own to relay the container's. Its output is what that
    terminal showed (script's stdout), its error what script passed on (it merges them).
    script's stdin is a pipe held open: at the end of its input script types the terminal's
    EOF character, which the relay would pass on to the container at a moment of its own.
    The terminal is 40x100 (script's own would be 0x0, the size of no terminal)."""
    command = [container.runtime, "--root", str(container.root), *args]
    script = ["script", "-qec", f"stty rows 40 cols 100; exec {shlex.join(command)}", "/dev/null"]
    return container.runner.spawn(script, stdin=subprocess.PIPE).result(15)


def start(container: Container, case: Case, bundle: Path, work: Path) -> tuple[Step, int | None]:
    """The container started as the case says: the step shows what its terminal printed; the
    pty master it sent (kept open while the container runs: its last close hangs it up)."""
    if case.start == "run":
        code, out, err = on_a_tty(container, "run", "--bundle", str(bundle), container.cid)
        return Step("run", code, out, last_line(err)), None
    args = ["create"] if case.start == "create" else ["run", "-d"]
    console = None
    if case.process["terminal"]:
        console = Console(work / f"console-{Path(container.runtime).name}.sock")
        args += ["--console-socket", console.path]
    code, _, err = container(*args, "--bundle", str(bundle), container.cid)
    master = console.master() if console is not None else None
    if code == 0 and case.start == "create":
        code, _, err = container("start", container.cid)
    output = read_terminal(master, END.encode()) if master is not None and code == 0 else ""
    return Step(case.start, code, output, last_line(err)), master


def run_exec(container: Container, chosen: dict[str, Any], bundle: Path, number: int) -> Step:
    how = chosen["how"]
    args = ["-t"] + (["-d"] if how != "foreground" else [])
    console = Console(bundle / f"exec-{number}.sock") if how == "socket" else None
    if console is not None:
        args += ["--console-socket", console.path]
    if "process" in chosen:
        process = {
            "args": ["sh", "-c", PROBE],
            "terminal": True,
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin"],
            **chosen["process"],
        }
        path = bundle / f"process-{number}.json"
        path.write_text(json.dumps(process))
        args += ["-p", str(path), container.cid]
    else:
        args += [*chosen["flags"], container.cid, "sh", "-c", PROBE]
    shown = f"{how}: {json.dumps(chosen.get('process', chosen.get('flags')))}"
    if how == "foreground":
        code, out, err = on_a_tty(container, "exec", *args)
    else:
        code, out, err = container("exec", *args)
    if console is not None:
        master = console.master()
        if master is not None:
            out = read_terminal(master, None) if code == 0 else ""
            os.close(master)
    return Step(shown, code, out, last_line(err))


def run_case(runner: Runner, runtime: str, case: Case, work: Path, tag: str) -> list[Step]:
    name = Path(runtime).name
    bundle = work / f"bundle-{name}"
    cgroup = f"/ttyfuzz-{tag}-{name}"
    write_bundle(bundle, case, cgroup)
    container = Container(runner, runtime, work / f"root-{name}", f"tf-{tag}")
    master = None
    steps = []
    try:
        step, master = start(container, case, bundle, work)
        steps.append(step)
        if step.status != 0:
            return steps
        for number, chosen in enumerate(case.execs):
            steps.append(run_exec(container, chosen, bundle, number))
    finally:
        container.remove(cgroup)
        if master is not None:
            os.close(master)
    return steps


def report(number: int, case: Case, runc: list[Step], galley: list[Step], every: bool) -> None:
    userns = " (own user namespace)" if case.user_namespace else ""
    dev = "" if case.dev_tmpfs else ", the rootfs's /dev"
    print(f"== case {number}{userns} {case.start}, devpts {case.devpts}{dev}")
    print(f"   process={json.dumps(case.process)}")
    print_steps(runc, galley, every)


def main(argv: list[str] | None = None) -> int:
    functions = {"draw": draw, "run_case": run_case, "differing": differing, "report": report}
    return fuzz_main(argv, __doc__, **functions)


if __name__ == "__main__":
    sys.exit(main())
