"""cgroup layout detection and cgroupsPath resolution (no root needed)."""

from __future__ import annotations

import pytest

from galley.errors import InvalidArgument
from galley.oci.cgroups.layout import Hierarchy, parse_mountinfo
from galley.oci.cgroups.manager import cgroup_path

HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

V2 = """\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""

V1_IN_NAMESPACE = """\
35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
36 31 0:33 /docker/abc /sys/fs/cgroup/pids ro - cgroup cgroup rw,pids
"""


def test_hybrid_layout_maps_each_controller_and_the_unified_mount() -> None:
    layout = parse_mountinfo(HYBRID)
    assert layout.mode == "hybrid"
    assert layout.v1["cpu"] is layout.v1["cpuacct"]
    assert layout.v1["cpu"].mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.v1["memory"].controllers == frozenset({"memory"})
    assert layout.v1["name=systemd"].mount == "/sys/fs/cgroup/systemd"
    assert layout.unified is not None and layout.unified.mount == "/sys/fs/cgroup/unified"
    assert "tmpfs" not in {h.mount for h in layout.v1.values()}


def test_pure_v2_and_pure_v1() -> None:
    v2 = parse_mountinfo(V2)
    assert v2.mode == "v2" and v2.v1 == {}
    assert v2.unified is not None and v2.unified.mount == "/sys/fs/cgroup"
    v1 = parse_mountinfo(V1_IN_NAMESPACE)
    assert v1.mode == "v1" and v1.unified is None
    assert set(v1.v1) == {"memory", "pids"}
    assert v2.mount_points() == ["/sys/fs/cgroup"]
    assert v1.mount_points() == ["/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids"]


def test_mount_points_name_each_hierarchy_once() -> None:
    """cpu and cpuacct share one mount; the cgroup2 mount is among them."""
    assert parse_mountinfo(HYBRID).mount_points() == [
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
    ]


def test_systemd_named_hierarchy_alone_is_not_v1() -> None:
    text = V2 + "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
    assert parse_mountinfo(text).mode == "v2"


def test_hierarchy_directory_strips_the_mount_root() -> None:
    h = Hierarchy("/sys/fs/cgroup/memory", "/docker/abc", frozenset({"memory"}))
    assert h.directory("/docker/abc") == "/sys/fs/cgroup/memory"
    assert h.directory("/docker/abc/x") == "/sys/fs/cgroup/memory/x"
    assert h.directory("/other") == "/sys/fs/cgroup/memory/other"
    root = Hierarchy("/sys/fs/cgroup/pids", "/", frozenset({"pids"}))
    assert root.directory("/a/b") == "/sys/fs/cgroup/pids/a/b"


def test_the_hierarchies_under_sys_fs_cgroup_win_over_a_containers_mounts() -> None:
    """A container without a mount namespace mounts its cgroups under its rootfs in the
    host's namespace, after the host's own: they must not become the host's layout."""
    container = """\
90 80 0:29 /c1 /b/rootfs/sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct
91 80 0:32 /c1 /b/rootfs/sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
92 80 0:38 /c1 /b/rootfs/sys/fs/cgroup/unified ro - cgroup2 cgroup2 rw
"""
    layout = parse_mountinfo(HYBRID + container)
    assert layout.v1["cpu"].mount == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.v1["memory"].root == "/"
    assert layout.unified is not None and layout.unified.mount == "/sys/fs/cgroup/unified"
    elsewhere = parse_mountinfo(container)  # nothing under /sys/fs/cgroup: those are all
    assert elsewhere.v1["memory"].mount == "/b/rootfs/sys/fs/cgroup/memory"
    # a host whose hierarchies are mounted elsewhere: theirs show the hierarchies' roots
    moved = HYBRID.replace("/sys/fs/cgroup", "/cg")
    layout = parse_mountinfo(moved + container)
    assert layout.v1["memory"].mount == "/cg/memory"
    assert layout.unified is not None and layout.unified.mount == "/cg/unified"


def test_a_mount_covered_by_a_later_one_is_not_used() -> None:
    """A container manager that mounts the whole hierarchy, then binds the container's own
    cgroup over it: the visible mount is the later one, whatever its root."""
    v2 = """\
30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
31 22 0:26 /machine.slice/x.scope /sys/fs/cgroup rw - cgroup2 cgroup2 rw
"""
    layout = parse_mountinfo(v2)
    assert layout.unified is not None and layout.unified.root == "/machine.slice/x.scope"
    v1 = HYBRID + "50 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    assert parse_mountinfo(v1).v1["memory"].root == "/docker/abc"
    hidden = HYBRID + "60 22 0:60 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"  # all covered
    assert parse_mountinfo(hidden).v1 == {}
    late_root = HYBRID + "70 1 0:1 / / rw - ext4 /dev/vda rw\n"  # "/" listed last
    assert parse_mountinfo(late_root).v1["memory"].mount == "/sys/fs/cgroup/memory"


def test_mountinfo_octal_escapes() -> None:
    layout = parse_mountinfo("35 31 0:32 / /mnt/with\\040space rw - cgroup cgroup rw,pids\n")
    assert layout.v1["pids"].mount == "/mnt/with space"


@pytest.mark.parametrize(
    ("spec_path", "expected"),
    [
        ("", "c1"),
        ("/a/b", "/a/b"),
        ("/a//b/", "/a/b"),
        ("a/b", "a/b"),
        ("/a/../../b", "/b"),
        ("system.slice:docker:abc", "/system.slice/docker-abc.scope"),
        (":cri-containerd:abc", "/system.slice/cri-containerd-abc.scope"),
        (
            "kubepods-burstable-pod1.slice:cri-containerd:abc",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
            "/cri-containerd-abc.scope",
        ),
        ("-.slice:p:n", "/p-n.scope"),
    ],
)
def test_cgroups_path_semantics(spec_path: str, expected: str) -> None:
    assert cgroup_path(spec_path, "c1") == expected


@pytest.mark.parametrize("bad", ["a:b", "notaslice:p:n", "a--b.slice:p:n", "a:b:c:d", "/", "a/.."])
def test_bad_systemd_paths_name_the_field(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"linux\.cgroupsPath"):
        cgroup_path(bad, "c1")


def test_the_systemd_driver_takes_only_its_own_form() -> None:
    """--systemd-cgroup, as runc's systemd driver: no path is the runtime's own scope in
    system.slice; a slice path is read as without the flag; a cgroupfs path is refused."""
    assert cgroup_path("", "c1", systemd=True) == "/system.slice/galley-runc-c1.scope"
    assert cgroup_path("a.slice:p:n", "c1", systemd=True) == "/a.slice/p-n.scope"
    for bad in ("/a/b", "a/b", "c1"):
        with pytest.raises(InvalidArgument) as err:
            cgroup_path(bad, "c1", systemd=True)
        assert str(err.value) == (
            f'linux.cgroupsPath: "{bad}": with --systemd-cgroup it must be systemd\'s'
            ' "slice:prefix:name"'
        )
