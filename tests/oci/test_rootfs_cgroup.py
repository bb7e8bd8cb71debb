"""The cgroup mount type's view of the host: hierarchies, own cgroups, bind sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from galley.oci import cgroupfs

SRC = Path(__file__).resolve().parents[2] / "src"


def test_hierarchies_match_the_mount_table() -> None:
    found = cgroupfs.host_hierarchies()
    with open("/proc/self/mountinfo") as mountinfo:
        expected = {line.split()[4] for line in mountinfo if " - cgroup" in line}
    assert {h.mountpoint for h in found} == expected
    for hierarchy in found:
        assert "rw" not in hierarchy.options.split(",")
        if hierarchy.version == 1:
            assert hierarchy.controllers, hierarchy.mountpoint
            assert not {"rw", "xattr", "clone_children"} & hierarchy.controllers


def test_host_dir_is_our_own_cgroup_directory() -> None:
    own = cgroupfs.own_cgroups()
    for hierarchy in cgroupfs.host_hierarchies():
        directory = cgroupfs.host_dir(hierarchy, own)
        assert os.path.isdir(directory)
        with open(os.path.join(directory, "cgroup.procs")) as procs:
            assert str(os.getpid()) in procs.read().split()


def test_host_dir_relative_to_the_mount_root() -> None:
    memory = cgroupfs.Hierarchy("/sys/fs/cgroup/memory", "/a", 1, frozenset({"memory"}), "")
    own = {frozenset({"memory"}): "/a/b/c", frozenset(): "/x"}
    assert cgroupfs.host_dir(memory, own) == "/sys/fs/cgroup/memory/b/c"
    unified = cgroupfs.Hierarchy("/sys/fs/cgroup", "/", 2, frozenset(), "nsdelegate")
    assert cgroupfs.host_dir(unified, own) == "/sys/fs/cgroup/x"
    outside = cgroupfs.Hierarchy("/mnt/cg", "/other", 1, frozenset({"memory"}), "")
    assert cgroupfs.host_dir(outside, own) == "/mnt/cg"


@pytest.mark.root
def test_each_hierarchy_once_with_the_host_sys_bound_in(tmp_path: Path) -> None:
    """A container without a network namespace gets the host's /sys bound into its root, its
    cgroup mounts included: they are not hierarchies of their own (they were mounted twice)."""
    probe = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(SRC)!r})\n"
        "from galley.kernel import mount as k, ns\n"
        "from galley.oci import cgroupfs\n"
        "ns.unshare(ns.CLONE_NEWNS)\n"
        "k.mount(None, '/', None, k.MS_REC | k.MS_SLAVE)\n"
        f"k.mount('/sys', {str(tmp_path)!r}, None, k.MS_BIND | k.MS_REC)\n"
        "for h in cgroupfs.host_hierarchies():\n"
        "    print(h.version, ','.join(sorted(h.controllers)), h.mountpoint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    keys = [line.rsplit(" ", 1)[0] for line in out]
    assert len(keys) == len(set(keys)) > 0
    assert all(not line.split(" ")[-1].startswith(str(tmp_path)) for line in out)
