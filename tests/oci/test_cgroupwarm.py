"""The no-op migrations that keep the kernel's cheap-migration window open for create, run and
exec: galley.oci.cgroupwarm's thread, which galley-runc starts before anything else.
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
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.oci import cgroupwarm, entry
from tests.conftest import GALLEY_RUNC

pytestmark = pytest.mark.root

# The guesses at the command: (argv, whether it moves a process).
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
def stopped_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh stop flag for each test (the module's is per process), and the switch
    interval as it was afterwards."""
    monkeypatch.setattr(cgroupwarm, "_stopped", [])
    monkeypatch.setattr(cgroupwarm, "_switch_interval", [])
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)


def _held() -> threading.Lock:
    """The lock start() hands its thread, held: the thread releases it at its first write."""
    begun = threading.Lock()
    begun.acquire()
    return begun


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
    cgroupwarm._keep_window_open(_held())  # what the thread runs
    assert Path("/proc/self/cgroup").read_text() == before


@pytest.mark.usefixtures("stopped_after")
def test_stop_ends_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.01)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 6000)  # a minute, unless stopped
    keeper = threading.Thread(target=cgroupwarm._keep_window_open, args=(_held(),))
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


def _threads_file_open() -> bool:
    """Whether a descriptor of this process is open on the file the thread writes."""
    own = cgroupwarm.own_threads_file()
    fds = Path("/proc/self/fd")
    links = []
    for fd in fds.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:  # the listing's own descriptor, closed since
            pass
    return own in links


@pytest.mark.usefixtures("stopped_after")
def test_start_returns_once_the_thread_is_at_its_first_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The thread runs when it holds the GIL: left to wait until the main thread gave it
    up (5 ms by default), it began its first migration that much later. start() waits for
    it (here without the bound, which only a loaded machine reaches)."""
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.05)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 100)
    monkeypatch.setattr(cgroupwarm, "BEGIN_WITHIN", 10.0)
    # Neither interval lets the thread take the GIL before the check: only start()'s wait does.
    sys.setswitchinterval(0.05)
    monkeypatch.setattr(cgroupwarm, "SWITCH_INTERVAL", 0.05)
    found: list[str | None] = []
    own_threads_file = cgroupwarm.own_threads_file

    def recorded() -> str | None:  # the thread's first step, once it holds the GIL
        found.append(own_threads_file())
        return found[-1]

    monkeypatch.setattr(cgroupwarm, "own_threads_file", recorded)
    cgroupwarm.start()
    begun = bool(found)  # read at once: no call in between gives the GIL up
    try:
        assert begun
        assert _threads_file_open()
    finally:
        cgroupwarm.stop()


@pytest.mark.usefixtures("stopped_after")
def test_the_switch_interval_is_short_until_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the thread runs, it gets the GIL back within SWITCH_INTERVAL after each sleep
    (writes further apart let the window close); stop() gives the interval back."""
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.05)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 100)
    sys.setswitchinterval(0.007)
    cgroupwarm.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(cgroupwarm.SWITCH_INTERVAL, abs=1e-5)
        assert cgroupwarm.SWITCH_INTERVAL < cgroupwarm.INTERVAL
    finally:
        cgroupwarm.stop()
    assert sys.getswitchinterval() == pytest.approx(0.007, abs=1e-5)
    cgroupwarm.stop()  # a second stop changes nothing
    assert sys.getswitchinterval() == pytest.approx(0.007, abs=1e-5)


# A process that moves into a cgroup of its own, then runs the keeper as start() does, with
# own_threads_file() leading elsewhere (the hierarchy's root), as it does in a cgroup namespace
# over the host's cgroupfs; prints its own cgroups afterwards.
ELSEWHERE = """
import os, sys, threading
from galley.oci import cgroupwarm
hierarchy, name, cgroup = sys.argv[1:]
with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
cgroupwarm.own_threads_file = lambda: os.path.join(hierarchy, name)
cgroupwarm.MAX_WRITES = 2
begun = threading.Lock()
begun.acquire()
keeper = threading.Thread(target=cgroupwarm._keep_window_open, args=(begun,))
keeper.start()
keeper.join()
with open("/proc/self/cgroup") as f:
    print(f.read(), end="")
"""


def _hierarchies() -> list[tuple[str, str, str]]:
    """(hierarchy mount, threads file, its line's key in /proc/self/cgroup) for a v1 hierarchy
    without controllers (moving into a new cgroup there needs no setup) and the v2 one."""
    found = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, _ = line.split(":", 2)
        if controllers.startswith("name="):
            directory = f"/sys/fs/cgroup/{controllers.removeprefix('name=')}"
            if os.path.isfile(f"{directory}/tasks"):
                found.append((directory, "tasks", f"{hierarchy}:{controllers}"))
        elif hierarchy == "0":
            for directory in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                if os.path.isfile(f"{directory}/cgroup.threads"):
                    found.append((directory, "cgroup.threads", "0:"))
                    break
    return found


@pytest.mark.parametrize(("hierarchy", "name", "key"), _hierarchies())
def test_a_wrong_cgroup_moves_only_the_thread(hierarchy: str, name: str, key: str) -> None:
    """Where /proc/self/cgroup does not lead back to our own cgroup, the no-op migration is
    not one: it may move the writing thread (v1; the thread then exits) or be refused (v2:
    another domain), never move the process."""
    cgroup = os.path.join(hierarchy, f"galley-test-{os.getpid()}")
    os.mkdir(cgroup)
    try:
        out = subprocess.run(
            [sys.executable, "-c", ELSEWHERE, hierarchy, name, cgroup],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
        ).stdout.splitlines()
    finally:
        os.rmdir(cgroup)
    mine = next(line for line in out if line.startswith(f"{key}:"))
    assert mine.endswith(f"/{os.path.basename(cgroup)}")  # still where it moved itself


# A process that moves into the cgroup given (as bytes) and prints what own_threads_file finds.
FIND = """
import os, sys
from galley.oci import cgroupwarm
cgroup = os.fsencode(sys.argv[1])
with open(os.path.join(cgroup, b"cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
found = cgroupwarm.own_threads_file()
print(os.fsencode(found).hex() if found else "")
"""


@pytest.mark.parametrize(("hierarchy", "name"), [found[:2] for found in _hierarchies()[:1]])
def test_a_cgroup_name_that_is_not_utf_8_is_found(hierarchy: str, name: str) -> None:
    """cgroup names are bytes: one that is not UTF-8 must not kill the thread with a traceback
    on galley-runc's stderr. Its path comes back as the bytes it is."""
    cgroup = os.path.join(os.fsencode(hierarchy), b"galley-test-\xff-%d" % os.getpid())
    os.mkdir(cgroup)
    try:
        result = subprocess.run(
            [sys.executable, "-c", FIND, os.fsdecode(cgroup)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
        )
    finally:
        os.rmdir(cgroup)
    assert result.stderr == ""
    assert bytes.fromhex(result.stdout.strip()) == os.path.join(cgroup, name.encode())


@pytest.mark.parametrize(("argv", "moves"), GUESSES)
def test_the_command_guess(argv: list[str], moves: bool) -> None:
    """bin/galley-runc starts the thread before it parses anything: for create, run, exec."""
    assert entry.moves_a_process(argv) is moves


def _trace(tmp_path: Path, argv: list[str]) -> str:
    """strace -f of galley-runc with argv, in an empty directory (every command there fails
    fast): its opens and writes, each line led by the pid (or thread id) that made it."""
    trace = tmp_path / "trace"
    strace = ["strace", "-f", "-qq", "-e", "trace=openat,write", "-e", "signal=none"]
    subprocess.run(
        [*strace, "-o", str(trace), GALLEY_RUNC, *argv],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    return trace.read_text()


needs_strace = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")


@needs_strace
@pytest.mark.parametrize(("argv", "moves"), GUESSES)
def test_galley_runc_moves_its_keeper_thread_and_nothing_else(
    tmp_path: Path, argv: list[str], moves: bool
) -> None:
    """For create, run and exec (and only those) a thread opens `tasks` or `cgroup.threads`
    of galley-runc's own cgroup and writes its own thread id there: never the process's
    pid, so that the process stays where it is."""
    own = cgroupwarm.own_threads_file()
    assert own is not None
    opens = rf'^(\d+) +openat\(AT_FDCWD, "{re.escape(own)}", O_WRONLY\|O_CLOEXEC'
    for _ in range(5):  # the command fails fast: on a loaded machine it may exit before the
        text = _trace(tmp_path, argv)  # thread's first write (a daemon thread)
        opened = re.search(opens, text, re.MULTILINE)
        if not moves or (opened and re.search(rf"^{opened[1]} +write\(", text, re.MULTILINE)):
            break
    if not moves:
        assert opened is None
        return
    assert opened is not None
    writes = re.findall(rf'^{opened[1]} +write\(\d+, "(\d+)", \d+', text, re.MULTILINE)
    assert writes
    assert set(writes) == {opened[1]}  # its own thread id, each time


@pytest.mark.usefixtures("stopped_after")
def test_a_thread_that_ends_by_itself_gives_the_interval_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A command that never calls stop() (it failed first, or runs long) keeps no short
    switch interval once the thread has made its last write."""
    monkeypatch.setattr(cgroupwarm, "INTERVAL", 0.05)
    monkeypatch.setattr(cgroupwarm, "MAX_WRITES", 2)  # ~0.1 s
    sys.setswitchinterval(0.007)
    cgroupwarm.start()
    assert sys.getswitchinterval() == pytest.approx(cgroupwarm.SWITCH_INTERVAL, abs=1e-5)
    deadline = time.monotonic() + 5
    while sys.getswitchinterval() != pytest.approx(0.007, abs=1e-5):
        assert time.monotonic() < deadline, "the interval was never given back"
        time.sleep(0.01)
    cgroupwarm.stop()  # after the thread's end: nothing left to give back
    assert sys.getswitchinterval() == pytest.approx(0.007, abs=1e-5)
