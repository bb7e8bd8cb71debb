"""galley.oci.cgroupwarm: the no-op migration that starts the kernel's wait early."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galley.oci import cgroupwarm

pytestmark = pytest.mark.root


def test_own_procs_file_lists_this_process() -> None:
    procs = cgroupwarm.own_procs_file()
    assert procs is not None
    assert str(os.getpid()) in Path(procs).read_text().split()


def test_the_migration_changes_nothing() -> None:
    before = Path("/proc/self/cgroup").read_text()
    cgroupwarm._migrate_to_same_cgroup()  # what the thread runs
    assert Path("/proc/self/cgroup").read_text() == before


@pytest.mark.parametrize(
    ("argv", "moves"),
    [
        (["run", "c1"], True),
        (["create", "--bundle", "b", "c1"], True),
        (["--root", "/run/x", "exec", "c1", "true"], True),
        (["--root=/run/x", "--debug", "--log", "l", "--log-format", "json", "run", "c"], True),
        (["state", "c1"], False),
        (["--root", "exec", "state", "c1"], False),  # "exec" is --root's value here
        (["delete", "run"], False),
        ([], False),
        (["--debug"], False),
    ],
)
def test_the_command_guess(argv: list[str], moves: bool) -> None:
    """bin/galley-runc starts the warm-up before it parses anything: for create, run, exec."""
    assert cgroupwarm.moves_a_process(argv) is moves
