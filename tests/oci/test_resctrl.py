"""linux.intelRdt (galley.oci.resctrl) on galley.fixtures.resctrl's fake resctrl tree: this
host's CPU and kernel have no resctrl to mount, so the fake stands in for the kernel's side;
the rules, and where create, exec, update and delete put and take the container's processes
and groups, are galley's own and run for real (the commands through galley.oci.cli.main with
resctrl.find pointed at the fake)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.errors import FailedPrecondition, InvalidArgument
from galley.fixtures.resctrl import FakeResctrl
from galley.oci import resctrl
from tests.oci.conftest import Bundle, Runtime, create_held_before_its_state, wait_status

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(tmp_path: Path) -> FakeResctrl:
    return FakeResctrl.build(tmp_path / "resctrl")


def test_find_takes_the_visible_resctrl_mount(tmp_path: Path) -> None:
    line = "40 25 0:38 / {} rw,relatime shared:20 - {} {} rw\n"
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(line.format("/sys/fs/cgroup", "tmpfs", "tmpfs"))
    assert resctrl.find(str(mountinfo)) is None
    mountinfo.write_text(
        line.format("/sys/fs/res\\040ctrl", "resctrl", "resctrl")
        + line.format("/sys/fs/cgroup", "tmpfs", "tmpfs")
    )
    found = resctrl.find(str(mountinfo))
    assert found is not None and found.mount == "/sys/fs/res ctrl"


def test_a_group_of_its_own_gets_the_schemas_and_goes_with_the_container(
    fake: FakeResctrl,
) -> None:
    rdt = {"l3CacheSchema": "L3:0=7f0;1=1f\nMB:0=90;1=90", "memBwSchema": "MB:0=20;1=70"}
    group = resctrl.set_up(rdt, "c1", fake)
    assert group.path == f"{fake.mount}/c1" and group.owned
    # the MB line of l3CacheSchema gives way to memBwSchema (runtime-spec)
    assert fake.schemata(group.path) == {"L3": {0: "07f0", 1: "001f"}, "MB": {0: "20", 1: "70"}}
    group.join(4242)
    assert fake.tasks(group.path) == [4242]
    resctrl.locate(rdt, "c1", fake).remove()
    assert not os.path.exists(group.path)


def test_a_class_of_service_by_name(fake: FakeResctrl) -> None:
    with pytest.raises(FailedPrecondition, match="class of service 'gold' does not exist"):
        resctrl.set_up({"closID": "gold"}, "c1", fake)
    assert not os.path.exists(f"{fake.mount}/gold")
    fake.make(f"{fake.mount}/gold")
    group = resctrl.set_up({"closID": "gold"}, "c1", fake)
    assert (group.path, group.owned) == (f"{fake.mount}/gold", False)
    group.join(7)
    group.remove()  # shared: it stays, as runc leaves it
    assert fake.tasks(f"{fake.mount}/gold") == [7]


def test_a_class_named_with_schemas_is_made_or_must_match(fake: FakeResctrl) -> None:
    rdt = {"closID": "silver", "l3CacheSchema": "L3:0=ff;1=ff"}
    made = resctrl.set_up(rdt, "c1", fake)
    assert fake.schemata(made.path)["L3"] == {0: "00ff", 1: "00ff"} and not made.owned
    # a second container naming it: the same masks spelt otherwise match
    resctrl.set_up({"closID": "silver", "l3CacheSchema": "L3:1=0ff;0=FF"}, "c2", fake)
    with pytest.raises(FailedPrecondition, match="exists with other schemata than 'L3:0=f'"):
        resctrl.set_up({"closID": "silver", "l3CacheSchema": "L3:0=f"}, "c3", fake)
    assert fake.schemata(made.path)["L3"] == {0: "00ff", 1: "00ff"}  # left as it was


def test_the_kernels_aligned_schemata_compare_by_value(fake: FakeResctrl) -> None:
    """The kernel right-aligns the resource names it prints; bandwidths are decimal."""
    fake.make(f"{fake.mount}/gold")
    Path(fake.mount, "gold", "schemata").write_text("    L3:0=00ff;1=00ff\n    MB:0=100;1=010\n")
    resctrl.set_up(
        {"closID": "gold", "memBwSchema": "MB:1=10", "l3CacheSchema": "L3:0=ff"}, "c1", fake
    )
    with pytest.raises(FailedPrecondition, match="other schemata than 'MB:0=10'"):
        resctrl.set_up({"closID": "gold", "memBwSchema": "MB:0=10"}, "c2", fake)


def test_an_empty_closid_is_none_as_in_runc(fake: FakeResctrl) -> None:
    resctrl.check({"closID": ""})  # validation lets it through (it refused it before)
    group = resctrl.set_up({"closID": ""}, "c1", fake)
    assert (group.path, group.owned) == (f"{fake.mount}/c1", True)


def test_the_default_class_is_the_mount_itself(fake: FakeResctrl) -> None:
    group = resctrl.set_up({"closID": "/"}, "c1", fake)
    assert group.path == fake.mount and not group.owned
    group.join(9)
    group.remove()
    assert fake.tasks(fake.mount) == [9] and os.path.isdir(fake.mount)


def test_monitoring_gets_a_group_of_the_containers_inside_its_class(fake: FakeResctrl) -> None:
    fake.make(f"{fake.mount}/gold")
    group = resctrl.set_up({"closID": "gold", "enableMonitoring": True}, "c1", fake)
    assert group.monitor == f"{fake.mount}/gold/mon_groups/c1"
    group.join(11)  # the class first: the kernel takes a task into a monitoring group only so
    assert fake.tasks(f"{fake.mount}/gold") == [11] and fake.tasks(group.monitor) == [11]
    group.remove()
    assert not os.path.exists(group.monitor) and os.path.isdir(f"{fake.mount}/gold")


def test_what_the_cpu_cannot_allocate_is_refused_before_anything_is_made(
    tmp_path: Path,
) -> None:
    fake = FakeResctrl.build(tmp_path / "resctrl", resources=("L3",))
    with pytest.raises(FailedPrecondition, match=r"memBwSchema is set, .* no bandwidth alloc"):
        resctrl.set_up({"memBwSchema": "MB:0=50"}, "c1", fake)
    assert sorted(os.listdir(fake.mount)) == ["info", "mon_data", "mon_groups", "schemata", "tasks"]


def test_the_kernels_refusal_is_said_and_the_new_group_removed(fake: FakeResctrl) -> None:
    with pytest.raises(FailedPrecondition, match="Missing '=' or non-numeric domain"):
        resctrl.set_up({"l3CacheSchema": "L3:x=ff"}, "c1", fake)
    assert not os.path.exists(f"{fake.mount}/c1")
    # an unknown domain: EINVAL, and no words in last_cmd_status
    with pytest.raises(FailedPrecondition, match="schemata: invalid argument"):
        resctrl.set_up({"closID": "new", "l3CacheSchema": "L3:7=ff"}, "c1", fake)
    assert not os.path.exists(f"{fake.mount}/new")  # made by this create, not yet shared


def test_the_schemata_go_in_one_write_all_or_nothing(
    fake: FakeResctrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel applies a write whole or not at all: an update whose last line it refuses
    leaves the group as it was, not half written."""
    monkeypatch.setattr(resctrl, "find", lambda mountinfo="": fake)
    resctrl.set_up({}, "c1", fake)
    schemas = {"l3CacheSchema": "L3:0=f0;1=f0", "memBwSchema": "MB:0=5"}
    with pytest.raises(FailedPrecondition, match=r"MB value 5 out of range \[10,100\]"):
        resctrl.update({}, schemas, "c1", 42)
    assert fake.schemata(f"{fake.mount}/c1")["L3"] == {0: "ffff", 1: "ffff"}


def test_a_shared_class_matches_the_bandwidth_the_kernel_rounded(fake: FakeResctrl) -> None:
    """The kernel keeps MB:0=25 as 30 (bandwidth_gran 10): the next container asking for
    25 in that class is not refused for it."""
    rdt = {"closID": "gold", "memBwSchema": "MB:0=25;1=70"}
    made = resctrl.set_up(rdt, "c1", fake)
    assert fake.schemata(made.path)["MB"] == {0: "30", 1: "70"}
    resctrl.set_up(rdt, "c2", fake)
    with pytest.raises(FailedPrecondition, match="other schemata than 'MB:0=35'"):
        resctrl.set_up({"closID": "gold", "memBwSchema": "MB:0=35"}, "c3", fake)


def test_a_name_of_the_kernels_own_files_is_no_group(fake: FakeResctrl) -> None:
    """A container called "info" would take the info directory for its group (the write to
    it fails, its rmdir is refused, and every delete after it with it)."""
    with pytest.raises(FailedPrecondition, match="a file of the resctrl filesystem's"):
        resctrl.set_up({"l3CacheSchema": "L3:0=f"}, "info", fake)
    assert os.path.isdir(f"{fake.mount}/info/L3")
    with pytest.raises(InvalidArgument, match="invalid class of service 'mon_groups'"):
        resctrl.check({"closID": "mon_groups"})
    resctrl.remove_noted([f"{fake.mount}/info"], "info")
    assert os.path.isdir(f"{fake.mount}/info/L3")


def test_what_the_cpu_has_not_is_refused_by_its_name(tmp_path: Path) -> None:
    """With CDP the CPU allocates L3CODE and L3DATA, not L3; monitoring may be missing."""
    cdp = FakeResctrl.build(tmp_path / "cdp", resources=("L3CODE", "L3DATA"), monitors=())
    rdt = {"l3CacheSchema": "L3CODE:0=f;1=f\nL3DATA:0=f0;1=f0"}
    group = resctrl.set_up(rdt, "c1", cdp)
    assert cdp.schemata(group.path) == {
        "L3CODE": {0: "000f", 1: "000f"},
        "L3DATA": {0: "00f0", 1: "00f0"},
    }
    with pytest.raises(FailedPrecondition, match=r"no cache allocation \(CAT\) \(.*/info/L3 is"):
        resctrl.set_up({"l3CacheSchema": "L3:0=f"}, "c2", cdp)
    with pytest.raises(FailedPrecondition, match=r"enableMonitoring is set, .* does not monitor"):
        resctrl.set_up({"enableMonitoring": True}, "c3", cdp)
    assert not os.path.exists(f"{cdp.mount}/c2") and not os.path.exists(f"{cdp.mount}/c3")


def test_a_write_error_carries_last_cmd_status(fake: FakeResctrl, tmp_path: Path) -> None:
    real = resctrl.Resctrl(fake.mount)
    (tmp_path / "group" / "schemata").mkdir(parents=True)  # open(O_WRONLY): EISDIR
    Path(fake.mount, "info", "last_cmd_status").write_text("Bad schemata line\n")
    with pytest.raises(FailedPrecondition, match="schemata: Bad schemata line"):
        real.write(str(tmp_path / "group"), "schemata", "L3:0=f\n")
    Path(fake.mount, "info", "last_cmd_status").write_text("ok\n")
    with pytest.raises(FailedPrecondition, match="is a directory"):
        real.write(str(tmp_path / "group"), "schemata", "L3:0=f\n")


def test_stats_say_what_the_cpu_has_and_what_the_group_holds(fake: FakeResctrl) -> None:
    group = resctrl.set_up({"l3CacheSchema": "L3:0=f0;1=f", "enableMonitoring": True}, "c1", fake)
    Path(fake.mount, "schemata").write_text(  # AMD's SMBA: another resource than MB
        "    L3:0=ffff;1=ffff\n    MB:0=100;1= 50\n  SMBA:0=2048;1=2048\n"
    )
    fake.count(group.monitor, 0, "mbm_total_bytes", "4096")
    fake.count(group.monitor, 1, "llc_occupancy", "Unavailable")  # no number for now
    fake.count(group.path, 0, "llc_occupancy", "999")  # the class's, not the container's
    fake.count(group.monitor, 0, "llc_occupancy", "65536")
    got = resctrl.stats({"l3CacheSchema": "L3:0=f0;1=f", "enableMonitoring": True}, "c1", fake)
    assert list(got) == [
        "l3_cache_info",
        "l3_cache_schema_root",
        "l3_cache_schema",
        "mem_bw_info",
        "mem_bw_schema_root",
        "mem_bw_schema",
        "mbm_stats",
        "cmt_stats",
    ]  # runc's order
    assert got["l3_cache_info"] == {"cbm_mask": "ffff", "min_cbm_bits": 2, "num_closids": 16}
    assert (got["l3_cache_schema_root"], got["l3_cache_schema"]) == (
        "L3:0=ffff;1=ffff",
        "L3:0=00f0;1=000f",
    )
    assert got["mem_bw_schema_root"] == "MB:0=100;1= 50"  # the kernel's padding kept, as runc
    assert got["mem_bw_info"] == {
        "bandwidth_gran": 10,
        "delay_linear": 1,
        "min_bandwidth": 10,
        "num_closids": 8,
    }
    assert got["mbm_stats"] == [
        {"mbm_total_bytes": 4096, "mbm_local_bytes": 0},
        {"mbm_total_bytes": 0, "mbm_local_bytes": 0},
    ]
    assert got["cmt_stats"] == [{"llc_occupancy": 65536}, {"llc_occupancy": 0}]


def test_stats_leave_out_what_the_cpu_has_not(tmp_path: Path) -> None:
    fake = FakeResctrl.build(tmp_path / "resctrl", resources=("L3",), monitors=("llc_occupancy",))
    resctrl.set_up({}, "c1", fake)
    got = resctrl.stats({}, "c1", fake)
    assert sorted(got) == ["cmt_stats", "l3_cache_info", "l3_cache_schema", "l3_cache_schema_root"]
    assert got["cmt_stats"] == [{"llc_occupancy": 0}, {"llc_occupancy": 0}]
    shutil.rmtree(f"{fake.mount}/c1/mon_data")  # a group the kernel keeps no counters for
    assert "cmt_stats" not in resctrl.stats({}, "c1", fake)
    bare = FakeResctrl.build(tmp_path / "bare", resources=(), monitors=())
    resctrl.set_up({}, "c1", bare)
    assert resctrl.stats({}, "c1", bare) == {}


def test_stats_read_l3_domains_only_and_say_when_the_group_is_gone(fake: FakeResctrl) -> None:
    group = resctrl.set_up({}, "c1", fake)
    # newer kernels put other domains beside the L3 ones (PERF_PKG): not runc's counters
    Path(group.path, "mon_data", "mon_PERF_PKG_00").mkdir()
    assert len(resctrl.stats({}, "c1", fake)["cmt_stats"]) == 2  # type: ignore[arg-type]
    fake.remove(group.path)
    with pytest.raises(
        FailedPrecondition, match=r"reading the container's group: .*/c1/schemata: no such file"
    ):
        resctrl.stats({}, "c1", fake)


def test_update_is_undone_whole_and_leaves_the_default_group_alone(
    fake: FakeResctrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resctrl, "find", lambda mountinfo="": fake)
    fake.append_tasks(fake.mount, [77])
    rdt = {"closID": "gold", "l3CacheSchema": "L3:0=f0;1=f0"}
    resctrl.set_up(rdt, "c1", fake).join(77)
    undo = resctrl.update(rdt, {"memBwSchema": "MB:0=50;1=60"}, "c1", 77)
    assert fake.schemata(f"{fake.mount}/gold")["MB"] == {0: "50", 1: "60"}
    undo()  # the update's cgroup part failed: the class is as it was
    assert fake.schemata(f"{fake.mount}/gold") == {
        "L3": {0: "00f0", 1: "00f0"},
        "MB": {0: "100", 1: "100"},
    }
    # a container without intelRdt: its own group, made by the update, goes with the undo
    undo = resctrl.update(None, {"l3CacheSchema": "L3:0=3"}, "c2", 88)
    assert fake.tasks(f"{fake.mount}/c2") == [88]
    undo()
    assert not os.path.exists(f"{fake.mount}/c2") and 88 in fake.tasks(fake.mount)
    with pytest.raises(FailedPrecondition, match="Mask out of range"):  # and its own failure
        resctrl.update(None, {"l3CacheSchema": "L3:0=0"}, "c3", 99)
    assert not os.path.exists(f"{fake.mount}/c3")
    with pytest.raises(FailedPrecondition, match="the host's default group"):
        resctrl.update({"closID": "/"}, {"l3CacheSchema": "L3:0=3"}, "c4", 66)
    assert fake.schemata(fake.mount)["L3"] == {0: "ffff", 1: "ffff"}


def test_a_killed_creates_note_removes_only_that_containers_groups(
    fake: FakeResctrl, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(resctrl, "find", lambda mountinfo="": fake)
    for name in ("c1", "gold", "c1x"):
        fake.make(f"{fake.mount}/{name}")
    outside = tmp_path / "c1"
    outside.mkdir()
    noted: list[object] = [
        f"{fake.mount}/gold",
        f"{fake.mount}/gold/../c1x",
        str(outside),
        5,
        f"{fake.mount}/c1",
    ]
    resctrl.remove_noted(noted, "c1")
    assert sorted(
        p for p in os.listdir(fake.mount) if p not in {"info", "mon_data", "mon_groups"}
    ) == [
        "c1x",
        "gold",
        "schemata",
        "tasks",
    ]
    assert outside.is_dir()


# The commands, through galley.oci.cli.main in a process whose resctrl is the fake.
WRAPPER = """#!{python}
import sys
sys.path.insert(0, {src!r})
from galley.fixtures.resctrl import FakeResctrl
from galley.oci import resctrl
resctrl.find = lambda mountinfo="": FakeResctrl({mount!r})
from galley.oci.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def on_fake(fake: FakeResctrl, tmp_path: Path) -> Iterator[Runtime]:
    wrapper = tmp_path / "galley-runc-fake-resctrl"
    wrapper.write_text(
        WRAPPER.format(python=sys.executable, src=str(REPO / "src"), mount=fake.mount)
    )
    wrapper.chmod(0o755)
    rt = Runtime(str(wrapper), tmp_path / "state")
    yield rt
    rt.cleanup()


def _config(rt: Runtime, cid: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((rt.root / cid / "state.json").read_text())["config"]
    return config


def test_create_exec_update_and_delete_move_the_container_through_its_group(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle, tmp_path: Path
) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["intelRdt"] = {"l3CacheSchema": "L3:0=f0;1=f", "enableMonitoring": True}
    cid = on_fake.detached(bundle)
    group = f"{fake.mount}/{cid}"
    init = json.loads(on_fake("state", cid, check=True).stdout)["pid"]
    assert fake.tasks(group) == [init] and fake.tasks(f"{group}/mon_groups/{cid}") == [init]
    assert fake.schemata(group)["L3"] == {0: "00f0", 1: "000f"}

    pid_file = tmp_path / "exec.pid"
    on_fake.quiet("exec", "-d", "--pid-file", str(pid_file), cid, "sleep", "60")
    exec_pid = int(pid_file.read_text())
    assert fake.tasks(group) == [init, exec_pid]

    updated = on_fake("update", "--mem-bw-schema", "MB:0=30;1=40", cid)
    assert updated.returncode == 0, updated.stderr
    assert fake.schemata(group) == {"L3": {0: "00f0", 1: "000f"}, "MB": {0: "30", 1: "40"}}
    assert _config(on_fake, cid)["linux"]["intelRdt"]["memBwSchema"] == "MB:0=30;1=40"
    refused = on_fake("update", "--mem-bw-schema", "L3:0=f", cid)
    assert refused.returncode == 1
    assert "--mem-bw-schema: 'L3:0=f' is not one" in refused.stderr

    on_fake("kill", cid, "KILL", check=True)
    wait_status(on_fake, cid, "stopped")
    on_fake("delete", cid, check=True)
    assert not os.path.exists(group)


def test_events_stats_report_the_containers_monitoring_group(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle
) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["intelRdt"] = {"closID": "gold", "enableMonitoring": True}
    fake.make(f"{fake.mount}/gold")
    cid = on_fake.detached(bundle)
    fake.count(f"{fake.mount}/gold/mon_groups/{cid}", 1, "mbm_local_bytes", "123")
    event = json.loads(on_fake("events", "--stats", cid, check=True).stdout)
    rdt = event["data"]["intel_rdt"]
    assert rdt["l3_cache_schema"] == rdt["l3_cache_schema_root"] == "L3:0=ffff;1=ffff"
    assert rdt["mbm_stats"][1] == {"mbm_total_bytes": 0, "mbm_local_bytes": 123}
    assert list(event["data"])[-2:] == ["intel_rdt", "network_interfaces"]  # runc's place


def test_update_gives_a_container_without_intel_rdt_a_group_of_its_own(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle
) -> None:
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = on_fake.detached(bundle)
    assert not os.path.exists(f"{fake.mount}/{cid}")
    updated = on_fake("update", "--l3-cache-schema", "L3:0=3;1=3", cid)
    assert updated.returncode == 0, updated.stderr
    init = json.loads(on_fake("state", cid, check=True).stdout)["pid"]
    assert fake.tasks(f"{fake.mount}/{cid}") == [init]
    assert _config(on_fake, cid)["linux"]["intelRdt"] == {"l3CacheSchema": "L3:0=3;1=3"}
    on_fake("delete", "--force", cid, check=True)
    assert not os.path.exists(f"{fake.mount}/{cid}")


def test_an_update_whose_cgroup_part_fails_leaves_resctrl_as_it_was(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle
) -> None:
    """The kernel refuses the cpuset after the schemas went in: they are taken back, and
    the group the update made for a container without intelRdt goes."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = on_fake.detached(bundle)
    failed = on_fake("update", "--l3-cache-schema", "L3:0=3;1=3", "--cpuset-cpus", "999", cid)
    assert failed.returncode == 1 and "cpuset.cpus" in failed.stderr, failed.stderr
    assert not os.path.exists(f"{fake.mount}/{cid}")
    assert "intelRdt" not in _config(on_fake, cid)["linux"]
    # and the other way round: the schemas refused, no limit is applied either
    init = json.loads(on_fake("state", cid, check=True).stdout)["pid"]
    pids_max = _pids_max(init)
    failed = on_fake("update", "--pids-limit", "7", "--l3-cache-schema", "L3:0=0", cid)
    assert failed.returncode == 1 and "Mask out of range" in failed.stderr, failed.stderr
    assert _pids_max(init) == pids_max != "7"
    assert not os.path.exists(f"{fake.mount}/{cid}")
    on_fake("delete", "--force", cid, check=True)


def _pids_max(pid: int) -> str:
    """The pids limit of a process's cgroup (v1 pids hierarchy, else v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            return Path(f"/sys/fs/cgroup/pids{path}/pids.max").read_text().strip()
    path = Path(f"/proc/{pid}/cgroup").read_text().splitlines()[-1].split(":", 2)[2]
    return Path(f"/sys/fs/cgroup{path}/pids.max").read_text().strip()


def test_events_say_when_the_group_is_gone(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle
) -> None:
    """Not a silent end: the group was removed behind galley's back."""
    bundle.config["process"]["args"] = ["sleep", "60"]
    bundle.config["linux"]["intelRdt"] = {"l3CacheSchema": "L3:0=3;1=3"}
    cid = on_fake.detached(bundle)
    fake.remove(f"{fake.mount}/{cid}")
    failed = on_fake("events", "--stats", cid)
    assert failed.returncode == 1 and failed.stdout == ""
    assert "linux.intelRdt: reading the container's group" in failed.stderr
    on_fake("delete", "--force", cid, check=True)


def test_a_failed_create_leaves_no_group(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle
) -> None:
    bundle.config["process"]["args"] = ["/no/such/program"]
    bundle.config["linux"]["intelRdt"] = {"memBwSchema": "MB:0=50;1=50"}
    cid = on_fake.new_id()
    failed = on_fake("create", "-b", str(bundle.write()), cid, stdin=subprocess.DEVNULL)
    assert failed.returncode == 1 and "/no/such/program" in failed.stderr
    assert not os.path.exists(f"{fake.mount}/{cid}")
    assert not (on_fake.root / cid).exists()


def test_without_resctrl_intel_rdt_is_refused_by_name(runtime: Runtime, bundle: Bundle) -> None:
    """This host has no resctrl mounted: runc refuses the config the same way."""
    if resctrl.find() is not None:
        pytest.skip("this host mounts resctrl")
    bundle.config["linux"]["intelRdt"] = {"closID": "gold"}
    cid = runtime.new_id()
    failed = runtime("run", "-b", str(bundle.write()), cid, stdin=subprocess.DEVNULL)
    assert failed.returncode == 1
    assert "linux.intelRdt: no resctrl filesystem is mounted" in failed.stderr
    assert not (runtime.root / cid).exists()
    del bundle.config["linux"]["intelRdt"]
    bundle.config["process"]["args"] = ["sleep", "60"]
    refused = runtime("update", "--l3-cache-schema", "L3:0=f", runtime.detached(bundle))
    assert refused.returncode == 1
    assert "linux.intelRdt: no resctrl filesystem is mounted" in refused.stderr


def test_delete_force_removes_the_group_of_a_killed_create(
    on_fake: Runtime, fake: FakeResctrl, bundle: Bundle, tmp_path: Path
) -> None:
    """A create SIGKILLed once its init was in the group, before state.json: creating.json
    names the group, and `delete --force` removes it with the rest."""
    bundle.config["linux"]["intelRdt"] = {"closID": "gold", "enableMonitoring": True}
    fake.make(f"{fake.mount}/gold")
    cid = on_fake.new_id()
    with create_held_before_its_state(on_fake, bundle, cid, tmp_path):
        assert len(fake.tasks(f"{fake.mount}/gold/mon_groups/{cid}")) == 1
    on_fake("delete", "--force", cid, check=True)
    assert not (on_fake.root / cid).exists()
    assert not os.path.exists(f"{fake.mount}/gold/mon_groups/{cid}")
    assert os.path.isdir(f"{fake.mount}/gold")  # the shared class stays


def test_the_device_check_script_passes_on_the_fake(
    on_fake: Runtime, fake: FakeResctrl, tmp_path: Path
) -> None:
    """scripts/device-check-rdt.sh, which runs on real RDT hardware where a session has it,
    run here on the fake: its own logic checked before it meets the kernel."""
    env = {**os.environ, "GALLEY_RDT_MOUNT": fake.mount, "GALLEY_RDT_RUNTIME": on_fake.binary}
    out = subprocess.run(
        [str(REPO / "scripts" / "device-check-rdt.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "RDT CHECK: PASS" in out.stdout, out.stdout + out.stderr
    assert "'mbm_stats': [{'mbm_total_bytes': 0" in out.stdout  # events --stats' section
    assert [p for p in os.listdir(fake.mount) if p.startswith("rdtcheck")] == []
