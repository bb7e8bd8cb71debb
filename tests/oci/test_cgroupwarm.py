"""The no-op migrations that keep the kernel's cheap-migration window open for create and exec:
bin/galley-runc's shell part (before the interpreter starts) and galley.oci.cgroupwarm's thread.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from galley.oci import cgroupwarm
from tests.conftest import GALLEY_RUNC

pytestmark = pytest.mark.root

# The guesses at the command: (argv, whether it moves a process), for both guessers.
GUESSES = [
    (["run", "c1"], True),
    (["create", "--bundle", "b", "c1"], True),
    (["--root", "/run/x", "exec", "c1", "true"], True),
    (["--root=/run/x", "--debug", "--log", "l", "--log-format", "json", "run", "c"], True),
    (["state", "c1"], False),
    (["--root", "exec", "state", "c1"], False),  # "exec" is --root's value here
    (["delete", "run"], False),
    ([], False),
    (["--debug"], False),
]


@pytest.fixture
def stopped_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh stop flag for each test (the module's is per process)."""
    monkeypatch.setattr(cgroupwarm, "_stopped", [])


def test_own_threads_file_lists_this_thread() -> None:
    threads = cgroupwarm.own_threads_file()
    assert threads is not None
    assert os.path.basename(threads) in {"tasks", "cgroup.threads"}
    assert str(threading.get_native_id()) in Path(threads).read_text().split()


@pytest.mark.usefixtures("stopped_after")
def test_the_migrations_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.0)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 3)
    before = Path("/proc/self/cgroup").read_text()
    cgroupwarm._keep_window_open()  # what the thread runs
    assert Path("/proc/self/cgroup").read_text() == before


@pytest.mark.usefixtures("stopped_after")
def test_stop_ends_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.01)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 6000)  # a minute, unless stopped
    keeper = threading.Thread(target=cgroupwarm._keep_window_open)
    keeper.start()
    cgroupwarm.stop()
    keeper.join(timeout=5)
    assert not keeper.is_alive()


@pytest.mark.usefixtures("stopped_after")
def test_the_thread_runs_with_every_signal_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal the main thread blocks (the stage's fork blocks them all) must never be
    handed to the thread instead: Python would run its handler in the main thread at once."""
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.05)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 100)
    before = set(os.listdir("/proc/self/task"))
    cgroupwarm.start()
    try:
        (tid,) = set(os.listdir("/proc/self/task")) - before
        status = Path(f"/proc/self/task/{tid}/status").read_text()
        blocked = int(
            next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16
        )
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1):
            assert blocked & 1 << (sig - 1), sig.name
    finally:
        cgroupwarm.stop()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(f"/proc/self/task/{tid}")


# A process in a cgroup of its own, then in a new cgroup namespace: /proc/self/cgroup says "/",
# and /sys/fs/cgroup (the host's) is the hierarchy's root, not the process's cgroup.
ELSEWHERE = """
import os, sys, threading
from galley.kernel import ns
from galley.oci import cgroupwarm
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
ns.unshare(ns.CLONE_NEWCGROUP)
print(cgroupwarm.own_threads_file())
cgroupwarm.MAX_WRITES = 1
keeper = threading.Thread(target=cgroupwarm._keep_window_open)  # as start() runs it
keeper.start()
keeper.join()
with open("/proc/self/cgroup") as f:
    print(f.read(), end="")
"""


def test_a_wrong_cgroup_moves_only_the_thread(tmp_path: Path) -> None:
    """Where /proc/self/cgroup does not lead back to our own cgroup, the no-op migration is
    not one: it must move the writing thread (which then exits), never the process."""
    own = cgroupwarm.own_threads_file()
    assert own is not None and os.path.basename(own) == "tasks"  # a v1 hierarchy here
    hierarchy = os.path.dirname(own)
    cgroup = os.path.join(hierarchy, f"galley-test-{os.getpid()}")
    os.mkdir(cgroup)
    try:
        out = subprocess.run(
            [sys.executable, "-c", ELSEWHERE, cgroup],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
        ).stdout.splitlines()
    finally:
        os.rmdir(cgroup)
    assert out[0] == os.path.join(hierarchy, "tasks")  # the hierarchy's root: not its own
    name = os.path.basename(hierarchy)
    mine = next(line for line in out[1:] if line.split(":")[1].removeprefix("name=") == name)
    assert mine.split(":")[2] == "/"  # still in its own cgroup


@pytest.mark.parametrize(("argv", "moves"), GUESSES)
def test_the_command_guess(argv: list[str], moves: bool) -> None:
    """bin/galley-runc starts the thread before it parses anything: for create, run, exec."""
    assert cgroupwarm.moves_a_process(argv) is moves


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize(("argv", "moves"), GUESSES)
def test_the_shell_part_migrates_before_python(
    tmp_path: Path, argv: list[str], moves: bool
) -> None:
    """For create, run and exec, the launcher's shell writes "0" (itself) into the cgroup.procs
    of its own cgroup, from a background process: the shell's own open (O_CREAT|O_TRUNC, as a
    redirection opens), never Python's. Every command here fails fast, in an empty directory."""
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=openat", "-e", "signal=none", "-o", str(trace)]
    subprocess.run(
        [*strace, GALLEY_RUNC, *argv],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    shell_opens = r'"(/sys/fs/cgroup/[^"]*)/cgroup.procs", O_WRONLY\|O_CREAT'
    kicks = re.findall(shell_opens, trace.read_text())
    if not moves:
        assert kicks == []
        return
    assert len(kicks) == 1
    # the cgroup the shell (and so this test) is in, on the hierarchy it chose
    own = cgroupwarm.own_threads_file()
    assert own is not None
    assert os.path.normpath(kicks[0]) == os.path.dirname(own)


@pytest.mark.parametrize("shell", [["dash"], ["bash"], ["busybox", "sh"]])
def test_the_launcher_runs_under_every_common_sh(shell: list[str], tmp_path: Path) -> None:
    """/bin/sh is dash on Debian, bash on Fedora, busybox on Alpine."""
    if shutil.which(shell[0]) is None:
        pytest.skip(f"no {shell[0]}")
    out = subprocess.run(
        [*shell, GALLEY_RUNC, "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("galley-runc version ")
    missing = subprocess.run(
        [*shell, GALLEY_RUNC, "--root", str(tmp_path), "state", "nothing"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert 'container \\"nothing\\" does not exist' in missing.stderr


def test_functions_a_bash_imports_do_not_replace_the_launchers_builtins(tmp_path: Path) -> None:
    """bash as /bin/sh defines the caller's exported functions; the launcher unsets the ones
    named like the builtins it uses before it uses them."""
    marker = tmp_path / "ran"
    hostile = f"() {{ touch {marker}; return 1; }}"
    env = {"PATH": "/usr/bin:/bin"} | {f"BASH_FUNC_{name}%%": hostile for name in ("read", "echo")}
    subprocess.run(
        ["bash", GALLEY_RUNC, "run", "c1"],  # in an empty directory: fails at once
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
    )
    time.sleep(0.5)  # the background process, had it run a function, would have by now
    assert not marker.exists()
