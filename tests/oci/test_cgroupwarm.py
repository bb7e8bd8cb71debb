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
