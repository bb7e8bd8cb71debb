"""galley.oci.usermaps: a map the kernel refuses is an error that names its config field.

The refusal is real: a process in a user namespace of its own whose gid_map was written once
(the kernel takes one write per map; the next is EPERM)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.errors import FailedPrecondition
from galley.oci import usermaps
from galley.oci.spec import IDMapping

ROOT_ONLY: list[IDMapping] = [{"containerID": 0, "hostID": 0, "size": 1}]


@pytest.fixture
def mapped() -> Iterator[int]:
    """The pid of a process in a new user namespace whose gid_map is written already."""
    child = subprocess.Popen(["unshare", "--user", "sleep", "60"])
    try:
        gid_map = Path(f"/proc/{child.pid}/gid_map")
        for _ in range(200):  # until unshare has made the namespace and exec'd sleep
            if os.readlink(f"/proc/{child.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                break
            time.sleep(0.01)
        gid_map.write_text("0 0 1\n")
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_map_refused_to_root_names_its_field(mapped: int) -> None:
    with pytest.raises(PermissionError) as refused:
        usermaps.write_id_maps(mapped, [], ROOT_ONLY)
    assert refused.value.strerror == (
        "linux.gidMappings: write gid_map '0 0 1': Operation not permitted"
    )


def test_a_refused_map_without_the_helper_names_its_field_and_the_package(
    mapped: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rootless, newgidmap would be next: not on PATH, the error says which package has it."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no newgidmap there
    with pytest.raises(FailedPrecondition) as refused:
        usermaps._write_map(mapped, "gid_map", ROOT_ONLY, rootless=True)
    assert str(refused.value) == (
        "linux.gidMappings: write gid_map '0 0 1': Operation not permitted: a caller that is"
        " not root maps other ids than its own with newgidmap (Debian's uidmap package),"
        " which is not installed"
    )
