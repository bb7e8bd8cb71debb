"""cgroup v2: real cgroups in the cgroup2 mount (hybrid here, the whole host on pure v2).

Everything cgroup2 does without controllers (cgroup.procs, freeze, kill, device eBPF
filters, the `unified` map, stats) runs for real on a hybrid host's /sys/fs/cgroup/unified;
tests needing a controller run where the mount offers it. File conversions are also checked
against a fake directory tree, since this hybrid host's cgroup2 mount carries only hugetlb.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from galley.errors import FailedPrecondition, InvalidArgument, os_error_text
from galley.kernel import pathnames
from galley.oci import cgroups
from galley.oci.cgroups.conversions import blkio_to_io_weight, shares_to_weight, swap_max
from galley.oci.cgroups.devices import DEFAULT_ALLOWED
from galley.oci.cgroups.layout import detect, own_cgroups
from galley.oci.cgroups.record import remove_idle
from galley.oci.cgroups.v2 import V2Manager
from galley.oci.spec import DeviceRule
from tests.oci.cgroup_fixtures import Children

LAYOUT = detect()
UNIFIED = LAYOUT.unified
real = pytest.mark.skipif(UNIFIED is None, reason="no cgroup2 mount")
MiB = 1 << 20


def needs(controller: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        controller not in LAYOUT.unified_controllers(), reason=f"cgroup2 has no {controller}"
    )


def _manager(parent: str) -> V2Manager:
    assert UNIFIED is not None
    if LAYOUT.mode == "v2":
        made = cgroups.manager_for({"linux": {"cgroupsPath": parent + "/c"}}, "c")
        assert isinstance(made, V2Manager)
        return made
    directory = os.path.join(UNIFIED.mount, parent.lstrip("/"), "c")
    return V2Manager(directory, UNIFIED.mount, list(DEFAULT_ALLOWED))


def _read(manager: V2Manager, name: str) -> str:
    return Path(manager.directory, name).read_text().strip()


@real
@pytest.mark.root
def test_apply_moves_the_process_and_enables_controllers(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    child = kids.start("sleep", "60")
    manager.apply(child.pid)
    assert own_cgroups(child.pid)[""] == parent + "/c"
    assert manager.pids() == [child.pid]
    parent_dir = os.path.dirname(manager.directory)
    offered = set(Path(parent_dir, "cgroup.controllers").read_text().split())
    assert set(Path(parent_dir, "cgroup.subtree_control").read_text().split()) == offered
    again = cgroups.load(json.loads(json.dumps(manager.save())))
    assert again.paths == {"": manager.directory} and again.pids() == [child.pid]


@real
@pytest.mark.root
def test_create_moves_nothing_and_join_makes_nothing(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    manager.create()
    assert os.path.isdir(manager.directory) and manager.pids() == []
    child = kids.start("sleep", "60")
    manager.join(child.pid)
    assert own_cgroups(child.pid)[""] == parent + "/c"
    manager.destroy()
    with pytest.raises(FailedPrecondition, match=r"cgroup .*/c does not exist"):
        manager.join(kids.start("sleep", "60").pid)
    assert not manager.exists()


@real
@pytest.mark.root
def test_freeze_thaw_through_cgroup_freeze(parent: str, kids: Children, tmp_path: Path) -> None:
    manager = _manager(parent)
    ticks = tmp_path / "ticks"
    child = kids.start("sh", "-c", f"while :; do echo x >> {ticks}; sleep 0.01; done")
    manager.apply(child.pid)
    time.sleep(0.05)
    manager.freeze()
    assert manager.frozen() and "frozen 1" in _read(manager, "cgroup.events")
    size = ticks.stat().st_size
    time.sleep(0.1)
    assert ticks.stat().st_size == size
    manager.thaw()
    assert not manager.frozen()
    time.sleep(0.1)
    assert ticks.stat().st_size > size


@real
@pytest.mark.root
def test_kill_uses_cgroup_kill_and_reaches_every_process(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    first, second = kids.start("sleep", "60"), kids.start("sleep", "60")
    manager.apply(first.pid)
    manager.apply(second.pid)
    manager.kill(signal.SIGKILL)
    assert first.wait(5) == -9 and second.wait(5) == -9
    manager.destroy()
    assert not os.path.exists(manager.directory)


DEVICE_PROBE = (
    "read x; for d in null kmsg loop-control zero; do"
    " (: </dev/$d) 2>/dev/null && echo $d:ok || echo $d:denied; done;"
    " (: >/dev/kmsg) 2>/dev/null && echo kmsg-w:ok || echo kmsg-w:denied"
)


@real
@pytest.mark.root
def test_device_rules_become_an_ebpf_filter(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    probe = kids.start("sh", "-c", DEVICE_PROBE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    manager.apply(probe.pid)
    rules: Any = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "r"},
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"},
        {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "w"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    ]
    manager.set({"devices": rules[:3]})  # replaced by the next set: only one filter stays
    manager.set({"devices": rules})
    out, _ = probe.communicate(b"go\n", timeout=10)
    # zero: later deny wins over the earlier allow, but runc's defaults (after the spec's
    # rules) allow it again; kmsg: read allowed, write denied; loop-control: read allowed.
    assert out.decode().split() == [
        "null:ok",
        "kmsg:ok",
        "loop-control:ok",
        "zero:ok",
        "kmsg-w:denied",
    ]


@real
@pytest.mark.root
def test_device_filter_denies_what_no_rule_allows(parent: str, kids: Children) -> None:
    manager = V2Manager(_manager(parent).directory, _manager(parent).mount, [])
    probe = kids.start("sh", "-c", DEVICE_PROBE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    manager.apply(probe.pid)
    manager.set(
        {"devices": [{"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}
    )
    out, _ = probe.communicate(b"go\n", timeout=10)
    assert out.decode().split() == [
        "null:ok",
        "kmsg:denied",
        "loop-control:denied",
        "zero:denied",
        "kmsg-w:denied",
    ]


@real
@pytest.mark.root
def test_unified_map_is_written_verbatim_and_checked(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    manager.apply(kids.start("sleep", "60").pid)
    manager.set({"unified": {"cgroup.max.descendants": "3"}})
    assert _read(manager, "cgroup.max.descendants") == "3"
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.unified: \"nosuch.file\""):
        manager.set({"unified": {"nosuch.file": "1"}})
    with pytest.raises(InvalidArgument, match="invalid file name"):
        manager.set({"unified": {"../cgroup.procs": "1"}})


@real
@pytest.mark.root
def test_stats_shape(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    busy = "read x; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo done; exec sleep 60"
    child = kids.start("sh", "-c", busy, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    manager.apply(child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(b"go\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"done\n"
    deadline = time.monotonic() + 2  # the kernel flushes per-cpu usage into cpu.stat lazily
    while not (stats := json.loads(json.dumps(manager.stats())))["cpu"]["usage"].get("total"):
        assert time.monotonic() < deadline, stats["cpu"]
        time.sleep(0.02)
    assert set(stats) == {
        "cpu",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "hugetlb",
        "intel_rdt",
        "network_interfaces",
    }
    if "pids" in LAYOUT.unified_controllers():
        assert stats["pids"]["current"] == 1


@real
@pytest.mark.root
@needs("hugetlb")
def test_hugetlb_max(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    manager.apply(kids.start("sleep", "60").pid)
    manager.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]})
    assert _read(manager, "hugetlb.2MB.max") == str(4 * MiB)
    assert _read(manager, "hugetlb.2MB.rsvd.max") == str(4 * MiB)  # runc sets both
    manager.set({"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]})
    assert _read(manager, "hugetlb.2MB.max") == _read(manager, "hugetlb.2MB.rsvd.max") == "max"
    assert "2MB" in manager.stats()["hugetlb"]  # type: ignore[operator]


@real
@pytest.mark.root
@needs("memory")
@needs("cpu")
@needs("pids")
def test_real_controller_files(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    manager.apply(kids.start("sleep", "60").pid)
    manager.set(
        {
            "memory": {"limit": 64 * MiB, "reservation": 16 * MiB},
            "cpu": {"shares": 1024, "quota": 20000, "period": 100000},
            "pids": {"limit": 9},
        }
    )
    assert _read(manager, "memory.max") == str(64 * MiB)
    assert _read(manager, "memory.low") == str(16 * MiB)
    assert _read(manager, "cpu.weight") == "39"
    assert _read(manager, "cpu.max") == "20000 100000"
    assert _read(manager, "pids.max") == "9"
    stats: Any = manager.stats()
    assert stats["memory"]["usage"]["limit"] == 64 * MiB
    assert stats["pids"] == {"current": 1, "limit": 9}


# --- conversions, and the files written, against a fake cgroup2 directory ---------------


@pytest.fixture
def fake(tmp_path: Path) -> V2Manager:
    directory = tmp_path / "c"
    directory.mkdir()
    files = (
        "cgroup.procs cpu.weight cpu.max cpu.max.burst cpu.idle cpuset.cpus cpuset.mems memory.max "
        "memory.low memory.swap.max pids.max io.weight io.max hugetlb.2MB.max memory.high rdma.max"
    )
    for name in files.split():
        (directory / name).write_text("")
    return V2Manager(str(directory), str(tmp_path))


def _fake_root(tmp_path: Path) -> Path:
    """A fake cgroup2 root with no controllers, where create() makes directories."""
    for name in ("cgroup.controllers", "cgroup.subtree_control", "cgroup.procs"):
        (tmp_path / name).write_text("")
    return tmp_path


def test_create_takes_a_directory_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two creates under one new parent race to make it: the one whose mkdir finds it made
    goes on (a sibling's create, not an error)."""
    root = _fake_root(tmp_path)
    (root / "c").mkdir()
    looks = iter([False])  # not there when first looked for, there after the mkdir
    monkeypatch.setattr(pathnames, "isdir", lambda path: next(looks, True))
    V2Manager(str(root / "c"), str(root)).create()
    assert (root / "c").is_dir()


def test_a_mkdir_refused_names_the_call_and_path_as_runc_does(tmp_path: Path) -> None:
    root = _fake_root(tmp_path)
    (root / "file").write_text("")
    with pytest.raises(OSError) as refused:
        V2Manager(str(root / "file"), str(root)).create()
    assert os_error_text(refused.value) == f"mkdir {root}/file: file exists"


def _fake_read(manager: V2Manager, name: str) -> str:
    return Path(manager.directory, name).read_text()


def test_blkio_entries_leave_out_their_zero_fields_as_runcs() -> None:
    """runc's blkio entries are Go structs with omitempty: {"major": 254, "op": "Write"}
    for a device 254:0 that wrote nothing; empty lists go altogether."""
    from galley.oci.cgroups.stats import for_events  # noqa: PLC0415

    entries = [
        {"major": 254, "minor": 0, "op": "Read", "value": 4096},
        {"major": 254, "minor": 0, "op": "Write", "value": 0},
        {"major": 8, "minor": 16, "op": "Total", "value": 4096},
    ]
    blkio = {"ioServiceBytesRecursive": entries, "ioServicedRecursive": []}
    assert for_events({"blkio": blkio})["blkio"] == {
        "ioServiceBytesRecursive": [
            {"major": 254, "op": "Read", "value": 4096},
            {"major": 254, "op": "Write"},
            {"major": 8, "minor": 16, "op": "Total", "value": 4096},
        ]
    }


def test_conversions_match_runc() -> None:
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1) == 1  # Go truncates (-9999 / 262142) to 0, not -1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    assert blkio_to_io_weight(10) == 1 and blkio_to_io_weight(1000) == 10000
    assert swap_max(200, 100) == 100
    assert swap_max(-1, 100) == -1
    assert swap_max(0, -1) == -1
    with pytest.raises(InvalidArgument, match=r"memory\.swap"):
        swap_max(50, 100)
    with pytest.raises(InvalidArgument, match=r"memory\.swap"):
        swap_max(50, 0)


def test_fake_tree_gets_the_v2_files(fake: V2Manager) -> None:
    fake.set(
        {
            "memory": {"limit": 100, "swap": 300, "reservation": 50},
            "cpu": {
                "shares": 512,
                "quota": -1,
                "period": 50000,
                "burst": 10,
                "cpus": "0-1",
                "idle": 1,
            },
            "pids": {"limit": -1},  # 0 would leave pids.max alone
            "blockIO": {
                "weight": 500,
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 20}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
            "unified": {"memory.high": "200"},
        }
    )
    expected = {
        "memory.max": "100",
        "memory.swap.max": "200",
        "memory.low": "50",
        "cpu.weight": str(shares_to_weight(512)),
        "cpu.max": "max 50000",
        "cpu.max.burst": "10",
        "cpu.idle": "1",
        "cpuset.cpus": "0-1",
        "pids.max": "max",
        "io.weight": str(blkio_to_io_weight(500)),
        "io.max": "8:0 wiops=20",  # the file keeps the last write; the kernel merges them
        "hugetlb.2MB.max": "2097152",
        "memory.high": "200",
    }
    assert {name: _fake_read(fake, name) for name in expected} == expected


def test_fake_tree_rejects_what_v2_cannot_do(fake: V2Manager) -> None:
    with pytest.raises(InvalidArgument, match=r"cpu\.realtimeRuntime: cgroup v2 has no realtime"):
        fake.set({"cpu": {"realtimeRuntime": 1000}})
    with pytest.raises(InvalidArgument, match=r"cpu\.realtimePeriod: cgroup v2 has no realtime"):
        fake.set({"cpu": {"realtimePeriod": 1000000}})
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.network"):
        fake.set({"network": {"classID": 1}})
    with pytest.raises(InvalidArgument, match=r"hugepageLimits\[0\]\.pageSize"):
        fake.set({"hugepageLimits": [{"pageSize": "5MB", "limit": 1}]})


def test_fake_tree_rdma_and_check_before_update(fake: V2Manager) -> None:
    fake.set({"rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 1000}}})
    assert _fake_read(fake, "rdma.max") == "mlx5_0 hca_handle=3 hca_object=1000"
    Path(fake.directory, "memory.current").write_text("4096\n")
    with pytest.raises(FailedPrecondition, match="below current usage 4096"):
        fake.set({"memory": {"limit": 1024, "checkBeforeUpdate": True}})
    fake.set({"memory": {"limit": 8192, "swap": 8192, "checkBeforeUpdate": True}})
    assert _fake_read(fake, "memory.max") == "8192"
    assert _fake_read(fake, "memory.swap.max") == "0"  # memory+swap == memory: no swap


@real
@pytest.mark.root
def test_a_failed_update_leaves_the_files_and_the_device_filter(
    parent: str, kids: Children
) -> None:
    """All or nothing on v2: the unified file written before the bad one gets its old text
    back, and the device filter, attached last, is still the old one."""
    from galley.oci.cgroups.undo import set_all_or_nothing  # noqa: PLC0415

    made = _manager(parent)
    manager = V2Manager(made.directory, made.mount, [])  # no implied rules: null alone
    probe = kids.start("sh", "-c", DEVICE_PROBE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    manager.apply(probe.pid)
    null: DeviceRule = {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    manager.set({"devices": [null], "unified": {"cgroup.max.descendants": "5"}})
    bad: Any = {
        "unified": {"cgroup.max.descendants": "3", "nosuch.file": "1"},
        "devices": [{"allow": True, "access": "rwm"}],
    }
    with pytest.raises(InvalidArgument, match=r'"nosuch\.file" does not exist'):
        set_all_or_nothing(manager, bad)
    assert _read(manager, "cgroup.max.descendants") == "5"
    out, _ = probe.communicate(b"go\n", timeout=10)
    assert out.decode().split()[:2] == ["null:ok", "kmsg:denied"]


def test_a_failed_update_puts_back_only_its_own_threads_writes(tmp_path: Path) -> None:
    """Another thread's write while an update runs (galleyd may run several containers'
    commands at once) is not the update's to undo. (Plain files stand in for a cgroup.)"""
    import threading  # noqa: PLC0415

    from galley.oci.cgroups import manager as files  # noqa: PLC0415
    from galley.oci.cgroups.undo import set_all_or_nothing  # noqa: PLC0415

    (tmp_path / "pids.max").write_text("10\n")
    (tmp_path / "memory.max").write_text("max\n")

    class Failing:
        def set(self, resources: Any) -> None:
            files.write(str(tmp_path), "pids.max", 20)
            other = threading.Thread(target=files.write, args=(str(tmp_path), "memory.max", 5))
            other.start()
            other.join()
            raise InvalidArgument("the update's own error")

    with pytest.raises(InvalidArgument, match=r"^the update's own error$"):
        set_all_or_nothing(Failing(), {})  # type: ignore[arg-type]
    assert (tmp_path / "pids.max").read_text() == "10"
    assert (tmp_path / "memory.max").read_text() == "5"

    class Broken:  # any failure, not only galley's own errors, is undone
        def set(self, resources: Any) -> None:
            files.write(str(tmp_path), "pids.max", 30)
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        set_all_or_nothing(Broken(), {})  # type: ignore[arg-type]
    assert (tmp_path / "pids.max").read_text() == "10"
    assert files.before_write == []


def test_what_cannot_be_put_back_is_named_in_the_error(tmp_path: Path) -> None:
    """A put back the kernel refuses twice is named after the update's own error. (A plain
    directory stands in for the cgroup: a write there cannot be made to fail otherwise.)"""
    from galley.oci.cgroups import manager as files  # noqa: PLC0415
    from galley.oci.cgroups.undo import set_all_or_nothing  # noqa: PLC0415

    (tmp_path / "pids.max").write_text("10\n")

    class Failing:
        def set(self, resources: Any) -> None:
            files.write(str(tmp_path), "pids.max", 20)
            (tmp_path / "pids.max").unlink()
            (tmp_path / "pids.max").mkdir()  # the old text cannot be written back now
            raise InvalidArgument("the update's own error")

    with pytest.raises(
        InvalidArgument,
        match=r"^the update's own error \(and putting back the values it replaced failed: "
        r"pids\.max: .*\)$",
    ):
        set_all_or_nothing(Failing(), {})  # type: ignore[arg-type]
    assert files.before_write == []


@real
@pytest.mark.root
def test_kill_other_signals_with_the_cgroup_frozen(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    child = kids.start("sleep", "60")
    manager.apply(child.pid)
    manager.kill(signal.SIGTERM)
    assert child.wait(5) == -signal.SIGTERM
    assert not manager.frozen()
    paused = kids.start("sleep", "60")
    manager.apply(paused.pid)
    manager.freeze()
    manager.kill(signal.SIGTERM)  # thawed after, as runc's kill --all: else it never lands
    assert not manager.frozen()
    assert paused.wait(5) == -signal.SIGTERM


def test_missing_controller_is_explained(fake: V2Manager) -> None:
    Path(fake.directory, "cgroup.controllers").write_text("cpu\n")
    os.remove(os.path.join(fake.directory, "memory.max"))
    with pytest.raises(
        InvalidArgument, match=r"memory controller is not enabled in .*subtree_control"
    ):
        fake.set({"memory": {"limit": 100}})


@real
@pytest.mark.root
def test_a_populated_parent_is_left_alone(parent: str, kids: Children) -> None:
    assert UNIFIED is not None
    outer = V2Manager(os.path.join(UNIFIED.mount, parent.lstrip("/")), UNIFIED.mount)
    outer.apply(kids.start("sleep", "60").pid)
    inner = V2Manager(os.path.join(outer.directory, "c"), UNIFIED.mount)
    child = kids.start("sleep", "60")
    inner.apply(child.pid)  # a threaded domain's children would refuse it (EOPNOTSUPP)
    assert Path(outer.directory, "cgroup.subtree_control").read_text().strip() == ""
    assert Path(outer.directory, "cgroup.type").read_text().strip() == "domain"
    assert own_cgroups(child.pid)[""] == parent + "/c"


@real
@pytest.mark.root
def test_destroy_kills_what_is_left_inside(parent: str, kids: Children) -> None:
    manager = _manager(parent)
    child = kids.start("sleep", "60")
    manager.apply(child.pid)
    manager.destroy()
    assert child.wait(5) == -9
    assert not os.path.exists(manager.directory)


@real
@pytest.mark.root
def test_remove_idle_removes_only_an_empty_cgroup(parent: str, kids: Children) -> None:
    assert UNIFIED is not None
    manager = _manager(parent)
    child = kids.start("sleep", "60")
    manager.apply(child.pid)
    assert not remove_idle(manager.save())  # a process inside: left to the manager
    assert os.path.isdir(manager.directory)
    own = UNIFIED.directory(own_cgroups()[""])  # where this test runs: it may hold processes
    Path(own, "cgroup.procs").write_text(str(child.pid))
    assert remove_idle(manager.save())
    assert not os.path.exists(manager.directory)


def _children_of(pid: int) -> list[int]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if text:
            return [int(p) for p in text]
        time.sleep(0.01)
    raise AssertionError(f"process {pid} started no child")


# A member that names itself in bytes that are not UTF-8, as any container process may.
ODD_NAME = "import time; open('/proc/self/comm', 'wb').write(b'\\xff\\xfe'); time.sleep(60)"


@real
@pytest.mark.root
@needs("hugetlb")
@pytest.mark.parametrize("odd_member", [False, True], ids=["plain", "odd-comm"])
def test_exec_joins_inits_cgroup_when_the_container_made_sub_cgroups(
    parent: str, kids: Children, odd_member: bool
) -> None:
    """odd-comm: a member whose /proc status is not UTF-8, read before the init is found, is
    passed over (the lookup died of a UnicodeDecodeError)."""
    manager = _manager(parent)
    manager.create()
    inner = os.path.join(manager.directory, "inner")
    os.mkdir(inner)
    members = []
    if odd_member:
        odd = kids.start(sys.executable, "-c", ODD_NAME)
        while Path(f"/proc/{odd.pid}/comm").read_bytes() != b"\xff\xfe\n":
            time.sleep(0.01)
        members.append(odd.pid)
    unshare = kids.start("unshare", "--pid", "--fork", "--kill-child", "sleep", "60")
    (init,) = _children_of(unshare.pid)  # pid 1 of the new pid namespace
    for pid in (*members, unshare.pid, init):
        Path(inner, "cgroup.procs").write_text(str(pid))
    Path(manager.directory, "cgroup.subtree_control").write_text("+hugetlb")
    joiner = kids.start("sleep", "60")
    manager.apply(joiner.pid)  # the container's own directory refuses it: EBUSY
    assert own_cgroups(joiner.pid)[""] == parent + "/c/inner"
