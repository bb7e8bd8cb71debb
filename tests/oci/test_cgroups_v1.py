"""cgroup v1 (hybrid here): real cgroups under a unique parent, real processes inside."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from galley.errors import FailedPrecondition, InvalidArgument
from galley.oci import cgroups
from galley.oci.cgroups.layout import detect, own_cgroups
from galley.oci.cgroups.record import remove_idle
from galley.oci.cgroups.v1 import V1Manager, fill_cpusets
from galley.oci.spec import DeviceRule, Resources
from tests.oci.cgroup_fixtures import (
    Children,
    proc_state,
)

LAYOUT = detect()
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(LAYOUT.mode == "v2", reason="host has no cgroup v1 hierarchies"),
]
MiB = 1 << 20


def _new(parent: str, resources: dict[str, Any] | None = None, **linux: Any) -> V1Manager:
    spec: Any = {"linux": {"cgroupsPath": parent + "/c", **linux}}
    manager = cgroups.manager_for(spec, "c")
    assert isinstance(manager, V1Manager)
    return manager


def _read(manager: V1Manager, controller: str, name: str) -> str:
    with open(os.path.join(manager.paths[controller], name)) as f:
        return f.read().strip()


def _started(manager: V1Manager, kids: Children, *argv: str, **kw: Any) -> int:
    child = kids.start(*(argv or ("sleep", "60")), **kw)
    manager.apply(child.pid)
    return child.pid


def test_apply_creates_every_hierarchy_and_moves_the_process(parent: str, kids: Children) -> None:
    manager = _new(parent)
    pid = _started(manager, kids)
    assert set(LAYOUT.v1) <= set(manager.paths)
    seen = own_cgroups(pid)
    for controller in LAYOUT.v1:
        assert seen[controller] == parent + "/c", controller
        assert os.path.isdir(manager.paths[controller])
    if LAYOUT.unified is not None:
        assert seen[""] == parent + "/c"
    assert manager.pids() == [pid]
    assert manager.exists()


def test_create_makes_the_cgroup_and_join_only_moves(parent: str, kids: Children) -> None:
    """create (while the stage makes namespaces) moves nothing; join moves, and makes
    nothing: a cgroup removed since is an error naming it, not a fresh unlimited one."""
    manager = _new(parent)
    manager.create()
    manager.set({"pids": {"limit": 7}})
    assert all(os.path.isdir(path) for path in manager.paths.values())
    assert manager.pids() == [] and _read(manager, "pids", "pids.max") == "7"
    child = kids.start("sleep", "60")
    manager.join(child.pid)
    assert manager.pids() == [child.pid]
    assert own_cgroups(child.pid)["pids"] == parent + "/c"
    manager.destroy()  # kills what is left inside
    with pytest.raises(FailedPrecondition, match=r"cgroup .*/c does not exist"):
        manager.join(kids.start("sleep", "60").pid)
    assert not manager.exists()


def test_cpuset_is_copied_down_from_the_parent(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    root = LAYOUT.v1["cpuset"].mount
    with open(os.path.join(root, "cpuset.cpus")) as f:
        assert _read(manager, "cpuset", "cpuset.cpus") == f.read().strip() != ""
    manager.set({"cpu": {"cpus": "0", "mems": "0"}})
    assert _read(manager, "cpuset", "cpuset.cpus") == "0"
    assert _read(manager, "cpuset", "cpuset.mems") == "0"


def test_memory_limits_read_back(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    manager.set(
        {
            "memory": {
                "limit": 64 * MiB,
                "swap": 128 * MiB,
                "reservation": 32 * MiB,
                "swappiness": 10,
                "kernel": 256 * MiB,
                "kernelTCP": 16 * MiB,
                "disableOOMKiller": True,
            }
        }
    )
    assert _read(manager, "memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert _read(manager, "memory", "memory.memsw.limit_in_bytes") == str(128 * MiB)
    assert _read(manager, "memory", "memory.soft_limit_in_bytes") == str(32 * MiB)
    assert _read(manager, "memory", "memory.swappiness") == "10"
    assert _read(manager, "memory", "memory.kmem.tcp.limit_in_bytes") == str(16 * MiB)
    assert "oom_kill_disable 1" in _read(manager, "memory", "memory.oom_control")
    manager.set({"memory": {"disableOOMKiller": False}})  # an update's: it stayed disabled
    assert "oom_kill_disable 0" in _read(manager, "memory", "memory.oom_control")


def test_memory_update_grows_and_shrinks_in_the_kernels_order(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    manager.set({"memory": {"limit": 64 * MiB, "swap": 96 * MiB}})
    manager.set({"memory": {"limit": 256 * MiB, "swap": 512 * MiB}})  # memsw must go first
    assert _read(manager, "memory", "memory.limit_in_bytes") == str(256 * MiB)
    manager.set({"memory": {"limit": 32 * MiB, "swap": 48 * MiB}})  # memory must go first
    assert _read(manager, "memory", "memory.memsw.limit_in_bytes") == str(48 * MiB)
    manager.set({"memory": {"limit": -1}})  # unlimited memory means unlimited swap too
    assert int(_read(manager, "memory", "memory.memsw.limit_in_bytes")) > 2**62


def test_bad_swappiness_names_the_field(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    with pytest.raises(InvalidArgument, match=r"memory\.swappiness"):
        manager.set({"memory": {"swappiness": 101}})


def test_cpu_limits_read_back(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    manager.set(
        {
            "cpu": {
                "shares": 512,
                "quota": 20000,
                "period": 50000,
                "burst": 1000,
                "realtimePeriod": 500000,
            }
        }
    )
    assert _read(manager, "cpu", "cpu.shares") == "512"
    assert _read(manager, "cpu", "cpu.cfs_quota_us") == "20000"
    assert _read(manager, "cpu", "cpu.cfs_period_us") == "50000"
    assert _read(manager, "cpu", "cpu.cfs_burst_us") == "1000"
    assert _read(manager, "cpu", "cpu.rt_period_us") == "500000"
    manager.set({"cpu": {"quota": -1}})
    assert _read(manager, "cpu", "cpu.cfs_quota_us") == "-1"
    with pytest.raises(InvalidArgument, match="shares"):
        manager.set({"cpu": {"shares": 1}})  # the kernel clamps to 2: runc reports it


def test_a_shorter_period_refused_against_the_old_quota_is_set_after_the_quota(
    parent: str, kids: Children
) -> None:
    """The parent allows half a CPU; the cgroup has 500 ms per 1 s. A 10 ms period would
    give the old quota 50 CPUs, so the kernel refuses it until the quota is 3 ms: as runc
    does, the period is written again after the quota (galley's stayed at 1 s)."""
    top = LAYOUT.v1["cpu"].directory(parent)
    os.makedirs(top)
    with open(os.path.join(top, "cpu.cfs_quota_us"), "w") as f:
        f.write("50000")
    manager = _new(parent, {"cpu": {"quota": 500000, "period": 1000000}})
    _started(manager, kids)
    manager.set({"cpu": {"quota": 500000, "period": 1000000}})
    manager.set({"cpu": {"quota": 3000, "period": 10000}})
    assert _read(manager, "cpu", "cpu.cfs_quota_us") == "3000"
    assert _read(manager, "cpu", "cpu.cfs_period_us") == "10000"


def test_pids_limit(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    manager.set({"pids": {"limit": 7}})
    assert _read(manager, "pids", "pids.max") == "7"
    manager.set({"pids": {"limit": 0}})  # runc: 0 is "unset"
    assert _read(manager, "pids", "pids.max") == "7"
    manager.set({"pids": {"limit": -1}})
    assert _read(manager, "pids", "pids.max") == "max"


def test_pids_limit_stops_forks(parent: str, kids: Children) -> None:
    manager = _new(parent)
    gate = kids.start(
        "sh",
        "-c",
        "read x; sleep 1 & sleep 1 & wait; echo done",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    manager.apply(gate.pid)
    manager.set({"pids": {"limit": 2}})
    gate.communicate(b"go\n", timeout=10)  # the shell's second fork fails (dash gives up)
    assert int(_read(manager, "pids", "pids.events").split()[1]) > 0


def test_blkio_weight_goes_to_bfq_or_is_a_clear_error(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    blkio = manager.paths["blkio"]
    manager.set({"blockIO": {}})  # unset: nothing to do, no error
    if os.path.exists(os.path.join(blkio, "blkio.bfq.weight")):
        manager.set({"blockIO": {"weight": 500}})
        assert _read(manager, "blkio", "blkio.bfq.weight").split()[-1] == "500"
    else:
        with pytest.raises(InvalidArgument, match=r"linux\.resources\.blockIO\.weight"):
            manager.set({"blockIO": {"weight": 500}})
    with pytest.raises(InvalidArgument, match=r"blockIO\.leafWeight"):
        manager.set({"blockIO": {"leafWeight": 500}})  # no leaf weights with BFQ nor cgroup v2


def test_blkio_throttle_reads_back(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    major, minor = _block_device()
    manager.set(
        {
            "blockIO": {
                "throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": major, "minor": minor, "rate": 300}],
            }
        }
    )
    assert _read(manager, "blkio", "blkio.throttle.read_bps_device") == f"{major}:{minor} 1048576"
    assert _read(manager, "blkio", "blkio.throttle.write_iops_device") == f"{major}:{minor} 300"


def _block_device() -> tuple[int, int]:
    for name in sorted(os.listdir("/sys/block")):
        with open(f"/sys/block/{name}/dev") as f:
            major, minor = f.read().strip().split(":")
        if not name.startswith(("loop", "ram")):
            return int(major), int(minor)
    pytest.skip("no block device")


def test_hugetlb_limit_lands_where_the_controller_is(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    manager.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}]})
    if "hugetlb" in LAYOUT.v1:
        assert _read(manager, "hugetlb", "hugetlb.2MB.limit_in_bytes") == str(4 * MiB)
        assert _read(manager, "hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes") == str(4 * MiB)
    else:
        assert _read(manager, "", "hugetlb.2MB.max") == str(4 * MiB)
        assert _read(manager, "", "hugetlb.2MB.rsvd.max") == str(4 * MiB)  # runc sets both
    with pytest.raises(InvalidArgument, match="hugepageLimits"):
        manager.set({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]})


DEVICE_PROBE = (
    "read x; for d in null kmsg loop-control; do"
    " (: </dev/$d) 2>/dev/null && echo $d:ok || echo $d:denied; done"
)
DEVICE_RULES: Any = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "r"},
    {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"},
    {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "r"},
]


def test_devices_deny_all_then_allow_list_is_enforced(parent: str, kids: Children) -> None:
    manager = _new(parent, devices=[{"path": "/dev/loop-x", "type": "b", "major": 7, "minor": 99}])
    probe = kids.start("sh", "-c", DEVICE_PROBE, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    manager.apply(probe.pid)
    manager.set({"devices": DEVICE_RULES})
    listed = _read(manager, "devices", "devices.list").splitlines()
    assert {"c 1:3 rwm", "c 136:* rwm", "c 10:237 r"} <= set(listed)
    assert not any(line.startswith("c 1:11") for line in listed)
    # a linux.devices entry makes a node, not a rule (as runc's): no "b 7:99"
    assert not any(line.startswith("b 7:99") for line in listed)
    assert "a *:* rwm" not in listed
    out, _ = probe.communicate(b"go\n", timeout=10)
    # null is among runc's always-allowed devices; kmsg was allowed, then denied.
    assert out.decode().split() == ["null:ok", "kmsg:denied", "loop-control:ok"]


def test_network_controllers_not_mounted_is_a_clear_error(parent: str, kids: Children) -> None:
    if "net_cls" in LAYOUT.v1:
        pytest.skip("net_cls is mounted here")
    manager = _new(parent)
    _started(manager, kids)
    with pytest.raises(
        InvalidArgument, match=r"classID: the net_cls cgroup controller is not mounted"
    ):
        manager.set({"network": {"classID": 0x100001}})
    with pytest.raises(InvalidArgument, match=r"invalid configuration: linux\.resources\.unified"):
        manager.set({"unified": {"memory.high": "1"}})


def test_freeze_and_thaw_stop_and_resume_the_process(
    parent: str, kids: Children, tmp_path: Any
) -> None:
    manager = _new(parent)
    ticks = tmp_path / "ticks"
    pid = _started(manager, kids, "sh", "-c", f"while :; do echo x >> {ticks}; sleep 0.01; done")
    time.sleep(0.05)
    manager.freeze()
    assert manager.frozen()
    assert _read(manager, "freezer", "freezer.state") == "FROZEN"
    size = ticks.stat().st_size
    time.sleep(0.1)
    assert ticks.stat().st_size == size
    assert proc_state(pid) == "D"
    manager.thaw()
    assert not manager.frozen()
    time.sleep(0.1)
    assert ticks.stat().st_size > size


def test_stats_have_runcs_shape(parent: str, kids: Children) -> None:
    manager = _new(parent)
    busy = "read x; i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo done; exec sleep 60"
    child = kids.start("sh", "-c", busy, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    manager.apply(child.pid)
    manager.set({"memory": {"limit": 64 * MiB}, "pids": {"limit": 10}})
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(b"go\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"done\n"
    stats: Any = json.loads(json.dumps(manager.stats()))
    assert stats["pids"] == {"current": 1, "limit": 10}
    assert stats["memory"]["usage"]["limit"] == 64 * MiB
    assert {"usage", "max", "failcnt"} <= set(stats["memory"]["usage"])
    assert "total_rss" in stats["memory"]["raw"]
    assert stats["cpu"]["usage"]["total"] > 0
    assert len(stats["cpu"]["usage"]["percpu"]) == os.cpu_count()
    assert set(stats["cpu"].get("throttling", {})) <= {
        "periods",
        "throttled_periods",
        "throttled_time",
    }
    assert stats["cpuset"]["cpus"] == list(range(os.cpu_count() or 1))
    assert stats["network_interfaces"] is None
    assert stats["memory"]["kernelTCP"].get("max", 1) != 0  # zeros are left out, as runc does
    assert "2MB" in stats["hugetlb"]
    assert all(stats["blkio"].values())  # an empty list is left out, as runc leaves it out
    assert "cache" in stats["memory"]["raw"]  # memory.stat whole, its zeros too


def test_save_and_load_give_the_same_manager(parent: str, kids: Children) -> None:
    manager = _new(parent, devices=[{"path": "/dev/x", "type": "c", "major": 4, "minor": 4}])
    pid = _started(manager, kids)
    saved = json.loads(json.dumps(manager.save()))
    again = cgroups.load(saved)
    assert again.paths == manager.paths
    assert again.pids() == [pid]
    assert again.save() == manager.save()


def test_manager_for_refuses_a_cgroup_in_use(parent: str, kids: Children) -> None:
    manager = _new(parent)
    _started(manager, kids)
    with pytest.raises(FailedPrecondition, match=r"not empty: 1 process"):
        _new(parent)


def test_relative_path_goes_under_our_own_cgroup(parent: str) -> None:
    name = parent.lstrip("/")
    manager = cgroups.manager_for({"linux": {"cgroupsPath": name}}, "c")
    own = own_cgroups()
    memory = LAYOUT.v1["memory"]
    assert manager.paths["memory"] == os.path.join(memory.directory(own["memory"]), name)
    default = cgroups.manager_for({"linux": {}}, "the-id")
    assert default.paths["pids"].endswith("/the-id")


def test_destroy_removes_every_hierarchy_while_the_process_exits(
    parent: str, kids: Children
) -> None:
    manager = _new(parent)
    pid = _started(manager, kids)
    os.kill(pid, 9)
    manager.destroy()  # rmdir fails with EBUSY until the process is gone; destroy retries
    for directory in manager.paths.values():
        assert not os.path.exists(directory)
    assert not manager.exists() and manager.pids() == []


def test_kill_signals_every_process(parent: str, kids: Children) -> None:
    manager = _new(parent)
    first = kids.start("sleep", "60")
    second = kids.start("sleep", "60")
    manager.apply(first.pid)
    manager.apply(second.pid)
    manager.kill(15)
    assert first.wait(5) == -15 and second.wait(5) == -15


def test_check_before_update_refuses_a_limit_below_usage(parent: str, kids: Children) -> None:
    manager = _new(parent)
    child = kids.start(
        "sh", "-c", "read x; echo up; exec sleep 60", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    manager.apply(child.pid)
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(b"go\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"up\n"  # charged to the cgroup once it ran there
    with pytest.raises(FailedPrecondition, match="below current usage"):
        manager.set({"memory": {"limit": 4096, "checkBeforeUpdate": True}})
    assert int(_read(manager, "memory", "memory.limit_in_bytes")) > 4096


def test_rdma_without_the_controller_is_a_clear_error(parent: str, kids: Children) -> None:
    if "rdma" in LAYOUT.v1:
        pytest.skip("rdma is mounted here")
    manager = _new(parent)
    _started(manager, kids)
    with pytest.raises(InvalidArgument, match=r"linux\.resources\.rdma: the rdma cgroup"):
        manager.set({"rdma": {"mlx5_0": {"hcaHandles": 1}}})


def test_kill_thaws_a_frozen_cgroup_as_runc_does(parent: str, kids: Children) -> None:
    """Frozen processes act on no signal (v1: not even SIGKILL) until thawed."""
    manager = _new(parent)
    first, second = kids.start("sleep", "60"), kids.start("sleep", "60")
    manager.apply(first.pid)
    manager.freeze()
    manager.kill(15)
    assert not manager.frozen()
    assert first.wait(5) == -15
    manager.apply(second.pid)
    manager.freeze()
    manager.kill(9)
    assert not manager.frozen()
    assert second.wait(5) == -9


def test_destroy_kills_what_is_left_inside(parent: str, kids: Children) -> None:
    manager = _new(parent)
    child = kids.start("sleep", "60")
    manager.apply(child.pid)
    manager.destroy()  # a failed create's rollback may get here before killing its child
    assert child.wait(5) == -9
    assert not any(os.path.exists(d) for d in manager.paths.values())


def test_remove_idle_removes_an_empty_cgroup_without_the_manager(parent: str) -> None:
    """delete's path: the saved record's directories rmdir'd, the hybrid cgroup2 one too."""
    manager = _new(parent)
    manager.create()
    assert remove_idle(manager.save())
    assert not any(os.path.exists(d) for d in manager.paths.values())


def test_remove_idle_finishes_what_a_stopped_delete_began(parent: str) -> None:
    """A delete killed after its first rmdir: the next one removes the rest."""
    manager = _new(parent)
    manager.create()
    os.rmdir(manager.paths["pids"])
    assert remove_idle(manager.save())
    assert not any(os.path.exists(d) for d in manager.paths.values())


def test_remove_idle_leaves_a_cgroup_with_a_process_whole(parent: str, kids: Children) -> None:
    """The process is moved out of every hierarchy but the one the manager reads processes
    from: that one's rmdir must come first, so that nothing at all is removed (the manager
    then kills what is left, and removes every directory)."""
    manager = _new(parent)
    child = kids.start("sleep", "60")
    manager.apply(child.pid)
    own = own_cgroups()
    for controller in set(manager.paths) - {"pids"}:
        hierarchy = LAYOUT.v1[controller] if controller else LAYOUT.unified
        assert hierarchy is not None
        Path(hierarchy.directory(own[controller]), "cgroup.procs").write_text(str(child.pid))
    assert own_cgroups(child.pid)["pids"] == parent + "/c"
    assert not remove_idle(manager.save())
    assert all(os.path.isdir(d) for d in manager.paths.values())
    manager.destroy()
    assert child.wait(5) == -9
    assert not any(os.path.exists(d) for d in manager.paths.values())


def test_remove_idle_leaves_a_cgroup_with_a_sub_cgroup_to_the_manager(parent: str) -> None:
    manager = _new(parent)
    manager.create()
    os.mkdir(os.path.join(manager.paths["pids"], "sub"))
    assert not remove_idle(manager.save())
    assert all(os.path.isdir(d) for d in manager.paths.values())
    manager.destroy()
    assert not any(os.path.exists(d) for d in manager.paths.values())


def test_a_listed_default_node_drops_its_default_rule() -> None:
    """runc: a linux.devices entry at a default node's path (here /dev/null, made 1:5)
    takes its place, and the default 1:3 rule goes; other listed devices add no rule."""
    from galley.oci.cgroups.devices import DEFAULT_ALLOWED, implied_rules  # noqa: PLC0415

    spec: Any = {
        "linux": {
            "devices": [
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 5},
                {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
            ]
        }
    }
    rules = {rule.cgroup_text() for rule in implied_rules(spec)}
    assert rules == {rule.cgroup_text() for rule in DEFAULT_ALLOWED} - {"c 1:3 rwm"}


@pytest.mark.parametrize(
    ("rules", "hole"),
    [
        # default deny: an allow-all-chars exception, then a narrower deny
        ([("deny", "a", -1, -1, "rwm"), ("allow", "c", -1, -1, "rwm"), ("deny", "c", 10, 229, "r")],
         "rule [c 10:229 r] (deny) not supported by devices cgroup v1 (cannot punch hole in"
         " existing wildcard rule [c *:* rwm])"),
        ([("deny", "a", -1, -1, "rwm"), ("allow", "b", 8, -1, "rw"), ("deny", "b", 8, 1, "w")],
         "[b 8:1 w] (deny)"),
        # default allow: a deny-all-of-minor-5 exception, then one of them allowed
        ([("allow", "a", -1, -1, "rwm"), ("deny", "c", -1, 5, "rw"), ("allow", "c", 1, 5, "r")],
         "[c *:5 rw]"),
        # partly overlapping: neither holds the other (runc lets this one through, 1:3 open)
        ([("deny", "a", -1, -1, "rwm"), ("allow", "c", -1, 3, "rwm"), ("deny", "c", 1, -1, "rwm")],
         "rule [c 1:* rwm] (deny) not supported by devices cgroup v1 (cannot punch hole in"
         " existing wildcard rule [c *:3 rwm])"),
    ],
)  # fmt: skip
def test_rules_v1_cannot_express_are_refused(rules: list[tuple[Any, ...]], hole: str) -> None:
    """v1 keeps exceptions by exact numbers: a rule agreeing with the default inside a wider
    opposite exception would change nothing; the list is refused (runc's emulator's rule)."""
    from galley.oci.cgroups.devices import Rule, plan  # noqa: PLC0415

    parsed = [Rule(kind == "allow", *rest) for kind, *rest in rules]
    with pytest.raises(InvalidArgument, match="cannot punch hole") as err:
        plan(parsed)
    assert hole in str(err.value)


def test_rules_v1_can_express_pass() -> None:
    from galley.oci.cgroups.devices import DEFAULT_ALLOWED, Rule, plan  # noqa: PLC0415

    plan([Rule(False, "a", -1, -1, "rwm"), *DEFAULT_ALLOWED])
    plan([  # exact removals, disjoint access, and a reset by "a"
        Rule(True, "c", 1, 11, "rwm"), Rule(False, "c", 1, 11, "rwm"),
        Rule(True, "c", -1, -1, "m"), Rule(False, "c", 10, 229, "rw"),
        Rule(True, "b", 7, -1, "r"), Rule(False, "a", -1, -1, "rwm"), Rule(False, "b", 7, 1, "r"),
    ])  # fmt: skip


def test_rules_v1_are_written_as_what_they_leave() -> None:
    """A deny agreeing with a deny default takes its access from every exception it covers."""
    from galley.oci.cgroups.devices import DEFAULT_ALLOWED, Rule, plan  # noqa: PLC0415

    def texts(rules: list[tuple[Any, ...]]) -> tuple[bool, list[str]]:
        default, left = plan([Rule(kind == "allow", *rest) for kind, *rest in rules])
        return default, [rule.cgroup_text() for rule in left]

    deny_all = ("deny", "a", -1, -1, "rwm")
    assert texts([deny_all, ("allow", "c", 10, 229, "rwm"), ("allow", "c", 10, -1, "r"),
                  ("deny", "c", -1, -1, "rwm")]) == (False, [])  # fmt: skip
    assert texts([deny_all, ("allow", "c", 1, 3, "rwm"), ("deny", "c", -1, -1, "w")]) == (
        False,
        ["c 1:3 rm"],
    )
    allow_all = ("allow", "a", -1, -1, "rwm")
    assert texts([allow_all, ("deny", "b", 8, 1, "w"), ("allow", "b", 8, 1, "rwm")]) == (True, [])
    # an allow default's allow takes back only the deny of exactly its numbers, as the
    # kernel and runc: runc's trailing defaults must leave the spec's denies (they did not)
    assert texts([allow_all, ("deny", "b", 8, 1, "w"), ("allow", "b", 8, -1, "rwm")]) == (
        True,
        ["b 8:1 w"],
    )
    assert texts([allow_all, ("deny", "c", 10, 229, "rwm"), ("deny", "c", 136, 0, "rwm")]
                 + [("allow", r.type, r.major, r.minor, r.access) for r in DEFAULT_ALLOWED]) == (
        True,
        ["c 10:229 rwm", "c 136:0 rwm"],
    )  # fmt: skip
    # "a" resets whatever its access and numbers say (the kernel reads "a" alone)
    assert texts([allow_all, ("deny", "a", 7, 0, "w")]) == (False, [])
    assert texts([deny_all, ("allow", "c", -1, -1, "m"), ("allow", "c", -1, -1, "r")]) == (
        False,
        ["c *:* rm"],
    )


def _cpuset(directory: Path, cpus: str, mems: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpuset.cpus").write_text(cpus)
    (directory / "cpuset.mems").write_text(mems)
    return directory


def test_each_empty_cpuset_file_is_filled_from_the_nearest_ancestor_that_has_it(
    tmp_path: Path,
) -> None:
    """Plain files stand in for the cpuset cgroups: a grandparent with both, a parent
    someone left with cpus only, and the new cgroup with neither."""
    _cpuset(tmp_path / "a", "0-1\n", "0\n")
    _cpuset(tmp_path / "a" / "b", "1\n", "")
    new = _cpuset(tmp_path / "a" / "b" / "c", "", "")
    fill_cpusets(str(new))
    assert (tmp_path / "a" / "b" / "cpuset.cpus").read_text() == "1\n"  # its own, untouched
    assert (tmp_path / "a" / "b" / "cpuset.mems").read_text() == "0"
    assert ((new / "cpuset.cpus").read_text(), (new / "cpuset.mems").read_text()) == ("1", "0")


def test_a_cpuset_without_a_full_ancestor_is_named(tmp_path: Path) -> None:
    new = _cpuset(tmp_path / "x", "", "")
    with pytest.raises(FailedPrecondition, match=f"no ancestor of {new} has cpus and mems"):
        fill_cpusets(str(new))


def test_an_update_of_the_device_rules_never_takes_a_kept_device_away(
    parent: str, kids: Children, tmp_path: Path
) -> None:
    """containerd passes the whole linux.resources to `update`, device rules included: a
    running container must keep /dev/null throughout (starting over from "deny all" shut it
    out for a moment), and end with the same list as a fresh cgroup given the rules."""
    stop = tmp_path / "stop"
    loop = f"n=0; until [ -e {stop} ]; do echo 2>/dev/null >/dev/null || n=$((n+1)); done; echo $n"
    manager = _new(parent)
    manager.create()
    manager.set({"devices": DEVICE_RULES})  # from the parent's "allow all": starts over
    probe = kids.start("sh", "-c", loop, stdout=subprocess.PIPE)
    manager.join(probe.pid)
    kmsg: DeviceRule = {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"}
    for round in range(1, 151):  # the last without kmsg
        manager.set({"devices": DEVICE_RULES + [kmsg] * (round % 2)})
    stop.touch()
    out, _ = probe.communicate(timeout=10)
    assert out.decode().split() == ["0"]  # not one failed open of /dev/null
    fresh = _new(parent + "/fresh")
    fresh.apply(kids.start("sleep", "60").pid)
    fresh.set({"devices": DEVICE_RULES})
    listed = _read(manager, "devices", "devices.list").splitlines()
    assert sorted(listed) == sorted(_read(fresh, "devices", "devices.list").splitlines())
    assert "c 1:11 rw" not in listed
    manager.set({"devices": [*DEVICE_RULES, kmsg]})  # access added, then taken away again
    assert "c 1:11 rw" in _read(manager, "devices", "devices.list").splitlines()
    manager.set({"devices": [*DEVICE_RULES, {**kmsg, "access": "r"}]})
    assert "c 1:11 r" in _read(manager, "devices", "devices.list").splitlines()


def _snapshot(manager: V1Manager) -> dict[str, str]:
    files = {
        "memory": [
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
        ],
        "cpu": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.idle"],
        "cpuset": ["cpuset.cpus"],
        "pids": ["pids.max"],
        "blkio": ["blkio.throttle.read_bps_device", "blkio.throttle.write_iops_device"],
        "devices": ["devices.list"],
    }
    return {
        name: _read(manager, controller, name)
        for controller, names in files.items()
        if controller in manager.paths
        for name in names
        if os.path.exists(os.path.join(manager.paths[controller], name))
    }


def test_a_failed_update_puts_back_every_file_it_wrote(parent: str, kids: Children) -> None:
    """update is all or nothing: v1 rejects `unified` only after writing everything else,
    and each file written gets its old text back (runc sets its saved resources again,
    which cannot undo what they never set)."""
    from galley.oci.cgroups.undo import set_all_or_nothing  # noqa: PLC0415

    manager = _new(parent)
    manager.create()
    manager.set({"memory": {"limit": 64 * MiB}, "cpu": {"shares": 512}, "devices": DEVICE_RULES})
    _started(manager, kids)
    before = _snapshot(manager)
    kmsg: DeviceRule = {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "rw"}
    everything: Resources = {
        "memory": {"limit": 128 * MiB, "swap": 256 * MiB, "reservation": 32 * MiB},
        "cpu": {"shares": 256, "quota": 20000, "period": 50000, "idle": 1, "cpus": "0"},
        "pids": {"limit": 70},
        "blockIO": {
            "throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1 << 20}],
            "throttleWriteIOPSDevice": [{"major": 7, "minor": 1, "rate": 100}],
        },
        "devices": [*DEVICE_RULES, kmsg],
    }
    if "memory.memsw.limit_in_bytes" not in before:
        del everything["memory"]["swap"]
    with pytest.raises(InvalidArgument, match="cannot use unified on cgroup v1"):
        set_all_or_nothing(manager, {**everything, "unified": {"memory.high": "1"}})
    assert _snapshot(manager) == before
    set_all_or_nothing(manager, everything)  # the same without the bad part: all of it lands
    after = _snapshot(manager)
    assert after["pids.max"] == "70" and "c 1:11 rw" in after["devices.list"].splitlines()
    assert after["blkio.throttle.read_bps_device"] == f"7:0 {1 << 20}"
    assert after["cpu.idle"] == "1" and after["memory.limit_in_bytes"] == str(128 * MiB)


def test_a_failed_update_puts_back_the_weight_cpu_idle_resets(parent: str, kids: Children) -> None:
    """Writing cpu.idle sets the weight (1 makes it the lowest, 0 the default 1024): the
    shares are put back after idle."""
    from galley.oci.cgroups.undo import set_all_or_nothing  # noqa: PLC0415

    manager = _new(parent)
    _started(manager, kids)
    manager.set({"cpu": {"shares": 512}})
    if not os.path.exists(os.path.join(manager.paths["cpu"], "cpu.idle")):
        pytest.skip("this kernel has no cpu.idle")
    with pytest.raises(InvalidArgument, match=r"cpuset\.mems"):
        set_all_or_nothing(manager, {"cpu": {"idle": 1, "mems": "7"}})
    assert (_read(manager, "cpu", "cpu.idle"), _read(manager, "cpu", "cpu.shares")) == ("0", "512")


def test_idle_is_left_before_the_shares_and_entered_after_them(parent: str, kids: Children) -> None:
    """An idle cgroup refuses a weight: idle 0 is written before the shares, idle 1 after
    them; shares alone on an idle cgroup get an error that says so (the kernel: EINVAL)."""
    manager = _new(parent)
    _started(manager, kids)
    if not os.path.exists(os.path.join(manager.paths["cpu"], "cpu.idle")):
        pytest.skip("this kernel has no cpu.idle")
    manager.set({"cpu": {"shares": 512, "idle": 1}})
    assert _read(manager, "cpu", "cpu.idle") == "1"
    with pytest.raises(InvalidArgument, match=r"is idle \(cpu\.idle 1\).*give idle 0"):
        manager.set({"cpu": {"shares": 256}})
    manager.set({"cpu": {"shares": 256, "idle": 0}})
    assert (_read(manager, "cpu", "cpu.idle"), _read(manager, "cpu", "cpu.shares")) == ("0", "256")


def test_a_memory_limit_below_usage_is_refused_with_the_usage(parent: str, kids: Children) -> None:
    """The kernel says only EBUSY; the error says what the cgroup uses, in runc's words."""
    manager = _new(parent)
    _started(manager, kids, "sh", "-c", "x=$(head -c 2000000 /dev/zero | tr '\\0' a); sleep 60")
    time.sleep(0.2)
    with pytest.raises(
        FailedPrecondition,
        match=r"unable to set memory limit to 4096 \(current usage: [1-9]\d*, peak usage: \d+\)",
    ):
        manager.set({"memory": {"limit": 4096}})


def test_stats_of_missing_memory_accounting_are_zeros(tmp_path: Path) -> None:
    """A module without its usage file (swap or kmem accounting off, or the memory cgroup
    gone) reads as runc's zeros: galley said its limit was 2^64-1, "unlimited"."""
    from galley.oci.cgroups.stats import _memory_v1  # noqa: PLC0415

    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "memory.limit_in_bytes").write_text(f"{64 * MiB}\n")
    stats: Any = _memory_v1(str(tmp_path))
    assert stats["usage"]["usage"] == 4096 and stats["usage"]["limit"] == 64 * MiB
    zeros = {"limit": 0, "usage": 0, "max": 0, "failcnt": 0}
    assert stats["swap"] == stats["kernel"] == stats["kernelTCP"] == zeros
    gone: Any = _memory_v1(str(tmp_path / "gone"))
    assert gone["usage"] == zeros
