"""The cgroup mount type's view of the host: hierarchies, own cgroups, bind sources."""

from __future__ import annotations

import os

from galley.oci import cgroupfs


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
