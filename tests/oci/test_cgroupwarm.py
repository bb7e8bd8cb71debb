"""The no-op migrations that keep the kernel's cheap-migration window open for create and exec:
bin/galley-runc's shell part (before the interpreter starts) and galley.oci.cgroupwarm's thread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
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


def test_own_procs_file_lists_this_process() -> None:
    procs = cgroupwarm.own_procs_file()
    assert procs is not None
    assert str(os.getpid()) in Path(procs).read_text().split()


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
    own = cgroupwarm.own_procs_file()
    assert own is not None
    assert os.path.normpath(kicks[0]) == os.path.dirname(own)
