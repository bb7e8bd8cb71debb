"""Cgroups through the runtime's command line, galley-runc and runc side by side.

The same bundle runs under both; the host-side cgroup files must end up the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from galley.oci.cgroups.layout import Hierarchy, detect, own_cgroups
from tests.oci.cgroup_fixtures import remove_everywhere, run_detached
from tests.oci.conftest import RUNC, RUNTIMES, Bundle, Runtime, run_bundle

LAYOUT = detect()
pytestmark = pytest.mark.root
MiB = 1 << 20
RESOURCES: dict[str, Any] = {
    "memory": {"limit": 48 * MiB, "reservation": 16 * MiB},
    "cpu": {"shares": 512, "quota": 30000, "period": 100000},
    "pids": {"limit": 33},
    "devices": [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "r"},
    ],
}


def _files(cgroup: str) -> dict[str, str]:
    """Host-side values of the limits RESOURCES sets, for the cgroup path."""
    if LAYOUT.mode == "v2":
        assert LAYOUT.unified is not None
        base = os.path.join(LAYOUT.unified.mount, cgroup.lstrip("/"))
        names = {"memory.max", "memory.low", "cpu.weight", "cpu.max", "pids.max"}
        return {n: Path(base, n).read_text().strip() for n in sorted(names)}
    wanted = {
        "memory": ["memory.limit_in_bytes", "memory.soft_limit_in_bytes"],
        "cpu": ["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
        "pids": ["pids.max"],
        "devices": ["devices.list"],
    }
    out = {}
    for controller, files in wanted.items():
        base = LAYOUT.v1[controller].directory(cgroup)
        for name in files:
            out[name] = Path(base, name).read_text().strip()
    return out


def _create(
    rt: Runtime, bundle: Bundle, cgroups_path: str, args: list[str], resources: Any = RESOURCES
) -> tuple[str, int]:
    bundle.config["process"]["args"] = args
    bundle.config["linux"]["cgroupsPath"] = cgroups_path
    bundle.config["linux"]["resources"] = resources
    bundle.write()
    cid = rt.new_id()
    rt.created.append(cid)
    result = run_detached(rt.binary, str(rt.root), "create", "--bundle", str(bundle.path), cid)
    assert result.returncode == 0, result.stdout
    pid = json.loads(rt("state", cid, check=True).stdout)["pid"]
    return cid, pid


def test_create_applies_limits_and_delete_removes_the_cgroup(
    any_runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    cid, pid = _create(any_runtime, bundle, parent + "/c", ["true"])
    cgroups = own_cgroups(pid)
    assert all(path == parent + "/c" for path in cgroups.values() if path != "/"), cgroups
    files = _files(parent + "/c")
    if LAYOUT.mode == "v2":
        assert files["memory.max"] == str(48 * MiB) and files["cpu.max"] == "30000 100000"
    else:
        assert files["memory.limit_in_bytes"] == str(48 * MiB)
        assert files["cpu.shares"] == "512" and files["pids.max"] == "33"
        listed = files["devices.list"].splitlines()
        assert "c 10:237 r" in listed and "c 1:3 rwm" in listed and "a *:* rwm" not in listed
    any_runtime("delete", "--force", cid, check=True)
    hierarchies = [*LAYOUT.v1.values(), *([LAYOUT.unified] if LAYOUT.unified else [])]
    for hierarchy in hierarchies:
        assert not os.path.exists(hierarchy.directory(parent + "/c"))


def test_galley_and_runc_write_the_same_files(tmp_path: Path, bundle: Bundle, parent: str) -> None:
    if RUNC is None:
        pytest.skip("runc is not installed")
    seen = {}
    for name, binary in sorted(RUNTIMES.items()):
        rt = Runtime(binary, tmp_path / f"state-{name}")
        try:
            cid, _ = _create(rt, bundle, f"{parent}/{name}", ["true"])
            seen[name] = _files(f"{parent}/{name}")
            rt("delete", "--force", cid, check=True)
        finally:
            rt.cleanup()
    if "devices.list" in seen["runc"]:  # order of the kernel's list follows the writes
        for files in seen.values():
            files["devices.list"] = "\n".join(sorted(files["devices.list"].splitlines()))
    assert seen["galley"] == seen["runc"]


def test_pause_update_stats_kill_all(any_runtime: Runtime, bundle: Bundle, parent: str) -> None:
    rt = any_runtime
    cid, pid = _create(rt, bundle, parent + "/c", ["sleep", "60"])
    assert run_detached(rt.binary, str(rt.root), "start", cid).returncode == 0
    rt("pause", cid, check=True)
    assert json.loads(rt("state", cid, check=True).stdout)["status"] == "paused"
    rt("resume", cid, check=True)
    assert json.loads(rt("state", cid, check=True).stdout)["status"] == "running"
    update = {"memory": {"limit": 96 * MiB}, "pids": {"limit": 44}}
    rt("update", "-r", "-", cid, input=json.dumps(update), check=True)
    files = _files(parent + "/c")
    assert files.get("memory.limit_in_bytes", files.get("memory.max")) == str(96 * MiB)
    assert files["pids.max"] == "44"
    event = json.loads(rt("events", "--stats", cid, check=True).stdout)
    assert event["type"] == "stats" and event["id"] == cid
    data = event["data"]
    assert data["pids"]["current"] == 1 and data["memory"]["usage"]["limit"] == 96 * MiB
    assert data["cpu"]["usage"]["total"] > 0
    rt("kill", "--all", cid, "KILL", check=True)
    rt("delete", "--force", cid, check=True)
    assert not os.path.exists(f"/proc/{pid}/stat") or _zombie_or_gone(pid)


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in {"Z", "X"}
    except FileNotFoundError:
        return True


def test_relative_cgroups_path_is_under_the_runtimes_cgroup(
    runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    relative = parent.lstrip("/") + "/c"
    # On v2 the parent of our cgroup may hold processes too (it cannot pass controllers down).
    resources = RESOURCES if LAYOUT.mode != "v2" else {"devices": RESOURCES["devices"]}
    cid, pid = _create(runtime, bundle, relative, ["true"], resources)
    bases = _relative_bases()
    try:
        theirs = own_cgroups(pid)
        assert bases, f"no mounted cgroup hierarchy in {LAYOUT}"
        for controller in bases:
            path = theirs.get(controller)
            expected = os.path.join(bases[controller], relative)
            hierarchy = "cgroup2" if controller == "" else f"v1 {controller}"
            assert path == expected, f"{hierarchy}: container in {path}, expected {expected}"
    finally:
        runtime("delete", "--force", cid, check=True)
        for base in set(bases.values()):
            if base != "/":
                remove_everywhere(os.path.join(base, parent.lstrip("/")), LAYOUT)


def _relative_bases() -> dict[str, str]:
    """Where a relative cgroupsPath lands, per hierarchy: under our own v1 cgroups, and under
    the PARENT of our own cgroup2 cgroup (as runc: ours holds us, no controllers pass down)."""
    mounted = {*LAYOUT.v1, *([""] if LAYOUT.unified is not None else [])}
    mine = {c: p for c, p in own_cgroups().items() if c in mounted}
    return {c: os.path.dirname(p) if c == "" else p for c, p in mine.items()}


def test_a_cgroup_in_use_is_refused_and_nothing_is_left(
    runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    first, _ = _create(runtime, bundle, parent + "/c", ["true"])
    second = runtime.new_id()
    runtime.created.append(second)
    result = run_detached(
        runtime.binary, str(runtime.root), "create", "--bundle", str(bundle.path), second
    )
    assert result.returncode == 1
    assert "not empty" in result.stdout
    assert runtime("state", second).returncode != 0
    runtime("delete", "--force", first, check=True)


def test_a_frozen_cgroup_is_refused_and_nothing_is_left(
    any_runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    """As runc 1.1 refuses it: the process moved into a cgroup that something froze before
    the create would stop there (galley-runc waited for it forever, deaf to SIGTERM)."""
    path = parent + "/c"
    if "freezer" in LAYOUT.v1:
        directory, name, value = LAYOUT.v1["freezer"].directory(path), "freezer.state", "FROZEN"
    else:
        assert LAYOUT.unified is not None
        directory, name, value = LAYOUT.unified.directory(path), "cgroup.freeze", "1"
    os.makedirs(directory)
    Path(directory, name).write_text(value)
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.write()
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    result = run_detached(
        any_runtime.binary, str(any_runtime.root), "run", "-d", "--bundle", str(bundle.path), cid
    )
    assert result.returncode == 1
    assert "container's cgroup unexpectedly frozen" in result.stdout
    assert any_runtime("state", cid).returncode != 0
    assert Path(directory, "cgroup.procs").read_text() == ""


@pytest.mark.skipif("cpuset" not in LAYOUT.v1, reason="v1 cpusets start empty")
def test_an_empty_cpuset_parent_made_by_someone_else_is_filled(
    any_runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    """A pod's cpuset cgroup made (and left empty) by another tool: no process may join a
    cgroup below it until its cpus and mems are filled, which runc does."""
    top = LAYOUT.v1["cpuset"].directory(parent)
    os.makedirs(top)
    assert Path(top, "cpuset.cpus").read_text().strip() == ""
    bundle.config["linux"]["cgroupsPath"] = parent + "/c"
    bundle.config["process"]["args"] = ["true"]
    run_bundle(any_runtime, bundle)
    parent_cpus = Path(top).parent / "cpuset.cpus"
    assert Path(top, "cpuset.cpus").read_text() == parent_cpus.read_text() != "\n"


@pytest.mark.parametrize(
    ("resources", "named"),
    [
        ({"hugepageLimits": [{"pageSize": "3MB", "limit": 1}]}, "hugepageLimits"),
        # a value only the kernel refuses, written while the stage makes its namespaces
        ({"cpu": {"cpus": "1023"}}, "cpuset.cpus"),
    ],
)
def test_a_failed_create_leaves_no_cgroup(
    runtime: Runtime, bundle: Bundle, parent: str, resources: dict[str, Any], named: str
) -> None:
    bundle.config["linux"]["cgroupsPath"] = parent + "/c"
    bundle.config["linux"]["resources"] = {"pids": {"limit": 5}, **resources}
    bundle.write()
    cid = runtime.new_id()
    runtime.created.append(cid)
    result = run_detached(
        runtime.binary, str(runtime.root), "create", "--bundle", str(bundle.path), cid
    )
    assert result.returncode == 1
    assert named in result.stdout and len(result.stdout.strip().splitlines()) == 1
    assert not (runtime.root / cid).exists()
    hierarchies = [*LAYOUT.v1.values(), *([LAYOUT.unified] if LAYOUT.unified else [])]
    assert not any(os.path.exists(h.directory(parent + "/c")) for h in hierarchies)


def test_events_stats_has_runcs_fields(tmp_path: Path, bundle: Bundle, parent: str) -> None:
    if RUNC is None:
        pytest.skip("runc is not installed")
    shapes = {}
    for name, binary in sorted(RUNTIMES.items()):
        rt = Runtime(binary, tmp_path / f"state-{name}")
        try:
            cid, _ = _create(rt, bundle, f"{parent}/{name}", ["sleep", "60"])
            assert run_detached(rt.binary, str(rt.root), "start", cid).returncode == 0
            data = json.loads(rt("events", "--stats", cid, check=True).stdout)["data"]
            shapes[name] = {
                "top": set(data),
                "memory": set(data["memory"]["usage"]),
                "pids": data["pids"],
                "limit": data["memory"]["usage"]["limit"],
                "order": key_order(data),
            }
            rt("delete", "--force", cid, check=True)
        finally:
            rt.cleanup()
    galley, runc = shapes["galley"], shapes["runc"]
    assert runc["top"] <= galley["top"]  # galley adds hugetlb from the hybrid cgroup2 mount
    # on cgroup v2 galley's "max" is memory.peak (Linux 5.19), which runc 1.1.5 never reads
    peak = LAYOUT.mode == "v2" and "max" not in runc["memory"]
    assert galley["memory"] == runc["memory"] | ({"max"} if peak else set())
    assert galley["pids"] == runc["pids"] == {"current": 1, "limit": 33}
    assert galley["limit"] == runc["limit"] == 48 * MiB
    # the keys in runc's order: its types' fields, and the keys of its maps (memory.raw,
    # hugetlb) sorted, as Go's encoder writes a map
    for path, theirs in runc["order"].items():
        ours = galley["order"].get(path, [])
        assert [k for k in ours if k in theirs] == [k for k in theirs if k in ours], path
    assert runc["order"]["/memory/raw"] == sorted(runc["order"]["/memory/raw"])


def test_events_stats_hugetlb_on_cgroup2_has_runcs_fields(
    runtime: Runtime, bundle: Bundle, parent: str
) -> None:
    """Where hugetlb is a cgroup2 controller (beside v1 here, or a pure v2 host), its stats
    are usage and failcnt, as runc's v2 manager gives them: cgroup2 keeps no peak, and
    hugetlb.<size>.max is the limit, which galley printed as v1's "max" (the peak)."""
    if "hugetlb" not in LAYOUT.unified_controllers():
        pytest.skip("hugetlb is no cgroup2 controller here")
    cid, _ = _create(runtime, bundle, f"{parent}/h", ["sleep", "60"])
    data = json.loads(runtime("events", "--stats", cid, check=True).stdout)["data"]
    sizes = list(Path("/sys/kernel/mm/hugepages").iterdir())
    assert len(data["hugetlb"]) == len(sizes) > 0, data["hugetlb"]
    assert list(data["hugetlb"]) == sorted(data["hugetlb"])
    for entry in data["hugetlb"].values():
        assert set(entry) <= {"usage", "failcnt"} and "failcnt" in entry, entry


def key_order(doc: object, path: str = "") -> dict[str, list[str]]:
    """Each object's keys in the order a document gives them, by the object's path."""
    if isinstance(doc, list):
        return key_order(doc[0], path + "[]") if doc else {}
    if not isinstance(doc, dict):
        return {}
    found = {path: list(doc)}
    for key, value in doc.items():
        found.update(key_order(value, f"{path}/{key}"))
    return found


def _run_script(rt: Runtime, bundle: Bundle, script: str) -> str:
    """`run` of a shell script in the bundle; its stdout (it must succeed)."""
    bundle.config["process"]["args"] = ["sh", "-c", script]
    result = run_bundle(rt, bundle)
    return result.stdout


@pytest.mark.parametrize(
    "resources",
    [None, {"pids": {"limit": 100}}],
    ids=["no-resources", "resources-without-devices"],
)
def test_devices_are_denied_without_a_devices_rule(
    any_runtime: Runtime, bundle: Bundle, resources: dict[str, Any] | None
) -> None:
    """linux.resources.devices is optional: without it the default allowlist and linux.devices
    still apply over "deny all", as runc's do. A container with CAP_MKNOD makes /dev/mem and
    the host console's memory (vcs): opening either is refused by the device cgroup."""
    linux = bundle.config["linux"]
    linux.pop("resources", None)
    if resources is not None:
        linux["resources"] = resources
    for name in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][name].append("CAP_MKNOD")
    script = (
        "mknod /tmp/mem c 1 1; mknod /tmp/vcs c 7 0;"
        " for d in /tmp/mem /tmp/vcs; do head -c1 $d >/dev/null 2>/tmp/err; cat /tmp/err; done;"
        " head -c1 /dev/zero | wc -c"
    )
    lines = _run_script(any_runtime, bundle, script).splitlines()
    assert len(lines) == 3 and lines[2].strip() == "1", lines  # the allowlist still works
    assert all("Operation not permitted" in line for line in lines[:2]), lines


@pytest.mark.parametrize(
    ("rules", "want"),
    [
        ([], "read:denied write:denied"),  # linux.devices makes the node, grants nothing
        (
            [{"allow": True, "type": "c", "major": 10, "minor": 237, "access": "r"}],
            "read:ok write:denied",
        ),
        (
            [{"allow": False, "type": "c", "major": 10, "minor": 237, "access": "rwm"}],
            "read:denied write:denied",
        ),
    ],
)
def test_a_listed_device_gets_only_the_access_resources_give(
    any_runtime: Runtime, bundle: Bundle, rules: list[dict[str, Any]], want: str
) -> None:
    """/dev/loop-control in linux.devices: the node is made, and opening it is what
    linux.resources.devices allows after "deny all", as with runc (galley once added an rwm
    rule for every listed device, over an explicit deny)."""
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}
    ]
    bundle.config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}, *rules]}
    script = (
        "(: </dev/loop-control) 2>/dev/null && r=ok || r=denied;"
        " (: >>/dev/loop-control) 2>/dev/null && w=ok || w=denied; echo read:$r write:$w"
    )
    assert _run_script(any_runtime, bundle, script).strip() == want


ALLOW_ALL = {"allow": True, "access": "rwm"}
# Rule lists a review found galley reading otherwise than runc (session 39), and what a
# container then does with /dev/loop-control: "a" rules with some access or numbers, which v1
# (and runc on v2) read as a reset to "deny all" (then the defaults allow mknod of anything;
# galley's v2 filter had read them as narrow rules), and a deny after "allow a" that runc's
# trailing defaults ("allow c *:* m") took back in galley (its mknod).
DEVICE_LISTS = {
    "deny-writes-after-allow-all": ([ALLOW_ALL, {"allow": False, "access": "w"}], "made"),
    "deny-7:0-after-allow-all": (
        [ALLOW_ALL, {"allow": False, "major": 7, "minor": 0, "access": "r"}],
        "made",
    ),
    "deny-one-after-allow-all": (
        [ALLOW_ALL, {"allow": False, "type": "c", "major": 10, "minor": 237, "access": "rwm"}],
        "",
    ),
}
LOOP_CONTROL = {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237}
PROBE_LOOP_CONTROL = (
    "(: </dev/loop-control) 2>/dev/null && echo read;"
    " mknod /dev/probe c 10 237 2>/dev/null && echo made; echo done"
)


def device_probe(rt: Runtime, bundle: Bundle, rules: list[dict[str, Any]]) -> str:
    """A container with CAP_MKNOD and /dev/loop-control under these device rules: whether it
    read the device and made a node of it."""
    bundle.config["linux"]["devices"] = [{**LOOP_CONTROL, "fileMode": 0o600}]
    bundle.config["linux"].setdefault("resources", {})["devices"] = rules
    for name in ("bounding", "effective", "permitted"):
        bundle.config["process"]["capabilities"][name].append("CAP_MKNOD")
    return _run_script(rt, bundle, PROBE_LOOP_CONTROL)


@pytest.mark.parametrize(("rules", "made"), DEVICE_LISTS.values(), ids=DEVICE_LISTS.keys())
def test_a_rule_list_means_what_runcs_emulator_makes_it(
    any_runtime: Runtime, bundle: Bundle, rules: list[dict[str, Any]], made: str
) -> None:
    """Each list leaves /dev/loop-control closed; a node of it can be made only where the
    list ends in runc's defaults over "deny all"."""
    assert device_probe(any_runtime, bundle, rules).split() == [*made.split(), "done"]


def test_a_rule_v1_cannot_express_is_refused_not_dropped(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """Deny /dev/loop-control after allowing every character device: v1 keeps exceptions by
    exact numbers, so the deny removed nothing and the device stayed open. runc refuses the
    list ("cannot punch hole in existing wildcard rule"); galley ran it, the device open. On
    v2 too: the filter compiles what the list leaves on v1's model (as runc's does)."""
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}
    ]
    bundle.config["linux"]["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "access": "rwm"},
            {"allow": False, "type": "c", "major": 10, "minor": 237, "access": "rwm"},
        ]
    }
    bundle.config["process"]["args"] = ["sh", "-c", "(: </dev/loop-control) && echo opened"]
    result = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert result.returncode == 1, result.stdout
    assert "opened" not in result.stdout
    assert "cannot punch hole in existing wildcard rule" in result.stderr


@pytest.mark.parametrize(
    "later",
    [
        {"allow": False, "type": "c", "access": "rwm"},  # every character device
        {"allow": False, "type": "c", "major": 10, "access": "rw"},  # every misc device
    ],
    ids=["deny-c-all", "deny-c-10-all"],
)
def test_a_wider_deny_takes_back_an_earlier_allow(
    runtime: Runtime, bundle: Bundle, later: dict[str, Any]
) -> None:
    """Later rules win: a deny over every character (or misc) device after an allow of
    /dev/loop-control leaves it closed (then the default allowlist is added, as runc adds
    it). Fed to v1 rule by rule the deny would remove only an exception of exactly its own
    numbers, and the device stayed open (runc 1.1 leaves it open too); eBPF on v2 is exact."""
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/loop-control", "type": "c", "major": 10, "minor": 237, "fileMode": 0o600}
    ]
    bundle.config["linux"]["resources"] = {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 237, "access": "rwm"},
            later,
        ]
    }
    script = "(: </dev/loop-control) 2>/dev/null && echo opened; : </dev/null && echo null:ok"
    assert _run_script(runtime, bundle, script).split() == ["null:ok"]


def _state_cgroup(runtime: Runtime, cid: str) -> dict[str, Any]:
    saved: dict[str, Any] = json.loads((runtime.root / cid / "state.json").read_text())["cgroup"]
    return saved


@pytest.mark.skipif(detect().mode != "hybrid", reason="a v1 freezer beside a cgroup2 mount")
def test_a_container_that_freezes_its_own_sub_cgroup_is_deleted(
    runtime: Runtime, bundle: Bundle
) -> None:
    """v1 freezer: a process in a sub-cgroup the container froze itself does not die of
    SIGKILL until thawed, and held the init's exit: delete --force waited, then failed with
    EBUSY and left every cgroup (runc 1.1 too). The kill now thaws such sub-cgroups."""
    for mount in bundle.config["mounts"]:
        if mount["type"] == "cgroup":
            mount["options"] = [o for o in mount["options"] if o != "ro"]
    caps = bundle.config["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = sorted({*caps.get(kind, []), "CAP_SYS_ADMIN"})
    sub = "/sys/fs/cgroup/freezer/sub"
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        f"mkdir {sub} && (echo $$ > {sub}/cgroup.procs; exec sleep 100) & sleep 0.3;"
        f" echo FROZEN > {sub}/freezer.state; exec sleep 100",
    ]
    cid = runtime.detached(bundle)
    freezer = Path(_state_cgroup(runtime, cid)["paths"]["freezer"])
    deadline = time.monotonic() + 10
    while not (freezer / "sub" / "freezer.state").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    while (freezer / "sub" / "freezer.state").read_text().strip() != "FROZEN":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    result = runtime("delete", "--force", cid)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5  # it waited 10 s for the init first
    assert not freezer.exists()


@pytest.mark.skipif(detect().mode != "hybrid", reason="a v1 freezer beside a cgroup2 mount")
def test_a_frozen_unified_cgroup_reads_as_paused(runtime: Runtime, bundle: Bundle) -> None:
    """On a hybrid host the container's cgroup2 part freezes its processes too: written
    there (by the container, given the means), it made exec hang while `state` said running."""
    bundle.config["process"]["args"] = ["sleep", "100"]
    cid = runtime.detached(bundle)
    unified = _state_cgroup(runtime, cid)["unified"]["paths"][""]
    Path(unified, "cgroup.freeze").write_text("1")
    assert '"paused"' in runtime("state", cid).stdout
    assert runtime("exec", cid, "true", timeout=10).returncode != 0  # refused, not hung
    assert runtime("resume", cid).returncode == 0
    assert '"running"' in runtime("state", cid).stdout
    assert runtime("exec", cid, "true", timeout=10).returncode == 0


def _create_systemd(runtime: Runtime, bundle: Bundle, cgroups_path: str | None) -> str:
    """`--systemd-cgroup create` of a sleeping container with pids.limit 33; its id."""
    cid = runtime.new_id()
    bundle.config["process"]["args"] = ["sleep", "60"]
    if cgroups_path is None:
        bundle.config["linux"].pop("cgroupsPath", None)
    else:
        bundle.config["linux"]["cgroupsPath"] = cgroups_path.replace("{cid}", cid)
    bundle.config["linux"]["resources"] = {"pids": {"limit": 33}}
    bundle.write()
    runtime.created.append(cid)
    result = run_detached(
        runtime.binary, str(runtime.root), "--systemd-cgroup", "create", "-b", str(bundle.path), cid
    )
    assert result.returncode == 0, result.stdout
    return cid


def _in_scope_then_deleted(runtime: Runtime, cid: str, scope: str) -> Hierarchy:
    """The container runs in scope in every hierarchy, with its limit; delete removes the
    scope. The pids hierarchy, to look at what is left."""
    pid = json.loads(runtime("state", cid, check=True).stdout)["pid"]
    cgroups = own_cgroups(pid)
    assert {path for path in cgroups.values() if path != "/"} == {scope}, cgroups
    pids = LAYOUT.unified if LAYOUT.mode == "v2" else LAYOUT.v1["pids"]
    assert pids is not None
    assert Path(pids.directory(scope), "pids.max").read_text().strip() == "33"
    runtime("--systemd-cgroup", "delete", "--force", cid, check=True)
    assert not os.path.exists(pids.directory(scope))
    return pids


def test_systemd_cgroup_paths_as_containerd_passes_them(runtime: Runtime, bundle: Bundle) -> None:
    """containerd with SystemdCgroup = true runs `--systemd-cgroup` and a cgroupsPath of
    "slice:prefix:name". Without systemd, galley-runc makes the cgroup where systemd puts
    the scope: the slice nested by its dashes, then "prefix-name.scope". Its limits land
    there, and delete removes the scope and leaves the slices (the kubelet's) in place."""
    top = f"galleytest{uuid.uuid4().hex[:8]}"
    pod = f"{top}-pod1.slice"
    try:
        cid = _create_systemd(runtime, bundle, pod + ":cri-containerd:{cid}")
        pids = _in_scope_then_deleted(
            runtime, cid, f"/{top}.slice/{pod}/cri-containerd-{cid}.scope"
        )
        assert os.path.isdir(pids.directory(f"/{top}.slice/{pod}"))
    finally:
        remove_everywhere(f"/{top}.slice")


def test_systemd_cgroup_without_a_path_and_with_a_cgroupfs_one(
    runtime: Runtime, bundle: Bundle
) -> None:
    """As runc's systemd driver: no cgroupsPath is the runtime's own scope in system.slice
    (runc's "runc-<id>.scope"); a cgroupfs path is refused, leaving no container."""
    hierarchies = [*LAYOUT.v1.values(), *([LAYOUT.unified] if LAYOUT.unified else [])]
    had_slice = {h.mount for h in hierarchies if os.path.isdir(h.directory("/system.slice"))}
    cid = _create_systemd(runtime, bundle, None)
    scope = f"/system.slice/galley-runc-{cid}.scope"
    try:
        _in_scope_then_deleted(runtime, cid, scope)
    finally:
        remove_everywhere(scope)
        for h in hierarchies:  # only the system.slice this test made: rmdir never kills
            if h.mount not in had_slice:
                with contextlib.suppress(OSError):
                    os.rmdir(h.directory("/system.slice"))
    bundle.config["linux"]["cgroupsPath"] = "/galley-test-cgroupfs"
    cid = runtime.new_id()
    runtime.created.append(cid)  # deleted afterwards should the create succeed
    result = run_detached(
        runtime.binary,
        str(runtime.root),
        "--systemd-cgroup",
        "create",
        "-b",
        str(bundle.write()),
        cid,
    )
    assert result.returncode == 1
    assert "/galley-test-cgroupfs" in result.stdout, result.stdout
    assert "with --systemd-cgroup it must be systemd's" in result.stdout, result.stdout
    assert runtime("state", cid).returncode == 1
    assert not any(os.path.exists(h.directory("/galley-test-cgroupfs")) for h in hierarchies)
