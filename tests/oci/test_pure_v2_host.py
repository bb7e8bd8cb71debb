"""Containers on a pure cgroup-v2 host, as a mount namespace makes one of this hybrid host.

In a throwaway mount namespace the cgroup tmpfs and its v1 hierarchies are unmounted and the
cgroup2 hierarchy is mounted on /sys/fs/cgroup: to galley (and runc), which tell the layout
from the mounts, that is a pure v2 host. Only the controllers that no v1 hierarchy holds are
there (hugetlb here), so this shows the v2 code path end to end without limits: the cgroup
made and joined, the container's cgroup2 mount and namespace, the eBPF device filter,
freeze, exec, kill --all and the cgroup's removal. Limits are checked on a real pure v2 host
by scripts/device-check-v2.sh.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.kernel.proc import set_child_subreaper
from tests.conftest import GALLEY_RUNC
from tests.oci.conftest import Bundle, Runtime, in_namespace, mount_namespace, wait_status
from tests.oci.test_cgroups_runtime import DEVICE_LISTS, device_probe
from tests.oci.test_lifecycle import detached

pytestmark = pytest.mark.root

PURE_V2 = "umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup"


@pytest.fixture
def v2_host() -> Iterator[int]:
    """The pid of a process in a mount namespace that looks like a pure cgroup-v2 host."""
    with mount_namespace(PURE_V2) as pid:
        yield pid


@pytest.fixture
def on_v2(any_runtime: Runtime, v2_host: int, tmp_path: Path) -> Iterator[Runtime]:
    with in_namespace(any_runtime, v2_host, tmp_path / "wrap") as rt:
        yield rt


@pytest.fixture
def cgroup_path() -> Iterator[str]:
    """A fresh cgroupsPath; its cgroup2 directory is removed afterwards if a test left it."""
    path = f"/galley-v2sim-{uuid.uuid4().hex[:10]}"
    yield path
    subprocess.run(["rmdir", f"/sys/fs/cgroup/unified{path}"], capture_output=True, check=False)


def cgroup_dir(v2_host: int, path: str) -> Path:
    """The container's cgroup as the pure-v2 namespace sees it."""
    return Path(f"/proc/{v2_host}/root/sys/fs/cgroup{path}")


def test_a_container_on_a_pure_v2_host(
    on_v2: Runtime, v2_host: int, bundle: Bundle, cgroup_path: str
) -> None:
    script = (
        "grep ^0:: /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo;"
        " test -f /sys/fs/cgroup/cgroup.freeze && echo own-cgroup2;"
        " echo x > /dev/null && echo null-ok;"
        " head -c1 /disk 2>&1 | grep -q 'not permitted' && echo disk-denied"
    )
    # a block device node the eBPF filter must refuse to open: one of this host's disks
    disks = sorted(p.name for p in Path("/sys/dev/block").iterdir())
    if not disks:
        pytest.skip("no block device on this host")
    major, minor = (int(n) for n in disks[0].split(":"))
    os.mknod(bundle.path / "rootfs" / "disk", stat.S_IFBLK | 0o600, os.makedev(major, minor))

    bundle.config["process"]["args"] = ["sh", "-c", script]
    bundle.config["linux"]["cgroupsPath"] = cgroup_path
    ran = on_v2("run", "--bundle", str(bundle.write()), on_v2.new_id(), stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[0] == "0::/", ran.stdout  # the cgroup namespace is rooted at its cgroup
    assert " - cgroup2 " in lines[1], ran.stdout
    assert lines[2:] == ["own-cgroup2", "null-ok", "disk-denied"], ran.stdout
    assert not cgroup_dir(v2_host, cgroup_path).exists()  # removed with the container


def test_pause_exec_kill_and_delete_on_a_pure_v2_host(
    on_v2: Runtime, v2_host: int, bundle: Bundle, cgroup_path: str
) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", "sleep 60 & sleep 60 & wait"]
    bundle.config["linux"]["cgroupsPath"] = cgroup_path
    cid = on_v2.new_id()
    detached(on_v2, "run", "--detach", "--bundle", str(bundle.write()), cid)
    cgroup = cgroup_dir(v2_host, cgroup_path)
    deadline = time.monotonic() + 5
    while len((cgroup / "cgroup.procs").read_text().split()) < 3:
        assert time.monotonic() < deadline, (cgroup / "cgroup.procs").read_text()
        time.sleep(0.02)
    on_v2("pause", cid, check=True)
    assert (cgroup / "cgroup.freeze").read_text().strip() == "1"
    assert json.loads(on_v2("state", cid, check=True).stdout)["status"] == "paused"
    on_v2("resume", cid, check=True)
    assert (cgroup / "cgroup.freeze").read_text().strip() == "0"
    seen = on_v2("exec", cid, "grep", "^0::", "/proc/self/cgroup")
    assert (seen.returncode, seen.stdout) == (0, "0::/\n"), seen.stderr
    on_v2("kill", "--all", cid, "KILL", check=True)
    wait_status(on_v2, cid, "stopped")
    on_v2("delete", cid, check=True)
    assert not cgroup.exists()


@pytest.mark.parametrize(
    ("userns", "cgroupns"),
    [(True, True), (True, False), (False, False)],
    ids=["userns-cgroupns", "userns", "host-cgroupns"],
)
def test_the_cgroup_mount_shows_what_runcs_shows(
    on_v2: Runtime, bundle: Bundle, cgroup_path: str, userns: bool, cgroupns: bool
) -> None:
    """With a cgroup namespace the container's own cgroup, without one the host's whole
    hierarchy (docker's --cgroupns=host), on both runtimes. A user namespace without a
    network namespace gets the host's /sys bound in (no fresh sysfs there: `runc spec
    --rootless` has an rbind of it), so cgroup2 on /sys/fs/cgroup, the host's own cgroup2
    mount, is EBUSY and a bind stands in. Session 35 fixed two differences: with a cgroup
    namespace that bind was of the host's whole hierarchy (the container's cgroup was read
    from /proc/self/cgroup inside the new namespace, where it reads "/"; seen on the device
    machine as a rootless container's limits missing from its /sys/fs/cgroup), and without
    one galley showed the container's own cgroup (found by difffuzz on this layout)."""
    name = cgroup_path.lstrip("/")
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "grep ' /sys/fs/cgroup ' /proc/self/mountinfo | tail -1 | cut -d' ' -f4;"
        " test -f /sys/fs/cgroup/cgroup.freeze && echo own-cgroup;"
        f" test -d /sys/fs/cgroup/{name} && echo whole-hierarchy; true",
    ]
    linux = bundle.config["linux"]
    unwanted = {"network", *([] if cgroupns else ["cgroup"])}
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in unwanted]
    if userns:
        linux["namespaces"].append({"type": "user"})
        mapping = [{"containerID": 0, "hostID": 0, "size": 65536}]
        linux["uidMappings"] = linux["gidMappings"] = mapping
        sysfs = next(m for m in bundle.config["mounts"] if m["type"] == "sysfs")
        options = ["rbind", "nosuid", "noexec", "nodev", "ro"]
        sysfs.update(type="none", source="/sys", options=options)
    linux["cgroupsPath"] = cgroup_path
    ran = on_v2("run", "--bundle", str(bundle.write()), on_v2.new_id(), stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    # the mount's root is the namespace's: its own cgroup, or the host's root cgroup
    expected = ["/", "own-cgroup" if cgroupns else "whole-hierarchy"]
    assert ran.stdout.split() == expected, ran.stdout


def test_the_cgroup2_mount_takes_the_mounts_source(
    on_v2: Runtime, bundle: Bundle, cgroup_path: str
) -> None:
    """A fresh cgroup2 mount names the source the config gives, as runc's does (umoci's
    bundle says "cgroup", `runc spec`'s too; galley said "cgroup2" until session 38)."""
    mount = next(m for m in bundle.config["mounts"] if m["type"] == "cgroup")
    mount["source"] = "from-the-config"
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "grep ' /sys/fs/cgroup ' /proc/self/mountinfo | tail -1 | sed 's/.* - //'",
    ]
    bundle.config["linux"]["cgroupsPath"] = cgroup_path
    ran = on_v2("run", "--bundle", str(bundle.write()), on_v2.new_id(), stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[:2] == ["cgroup2", "from-the-config"], ran.stdout


# What a bare `run` must not import: typing drags in re, enum, collections and functools
# (~8 ms of a create here, ~30 ms on the device machine's VM); platform and struct each cost
# a search of sys.path.
HEAVY = ("typing", "re", "enum", "collections", "functools", "platform", "struct")


@pytest.mark.parametrize("host", ["hybrid", "pure-v2"])
def test_run_imports_nothing_heavy(
    runtime: Runtime, v2_host: int, bundle: Bundle, cgroup_path: str, host: str
) -> None:
    """The cgroup code of either layout: on v2 the eBPF device filter's modules imported
    typing and platform, and `run` took 8 ms longer than on the hybrid host (session 35)."""
    bundle.config["linux"]["cgroupsPath"] = cgroup_path
    enter = ["nsenter", "-t", str(v2_host), "-m", "--"] if host == "pure-v2" else []
    cmd = [*enter, "/usr/bin/python3", "-IS", "-X", "importtime", GALLEY_RUNC]
    cmd += ["--root", str(runtime.root), "run", "--bundle", str(bundle.write()), runtime.new_id()]
    ran = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    assert ran.returncode == 0, ran.stderr
    imported = {line.rpartition("|")[2].strip() for line in ran.stderr.splitlines()}
    assert "galley.oci.cgroups.bpfdevices" in imported or host == "hybrid", ran.stderr
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


def test_a_frozen_container_whose_init_a_signal_killed_reads_as_paused(
    on_v2: Runtime, bundle: Bundle, cgroup_path: str
) -> None:
    """cgroup v2 lets a fatal signal kill a frozen process (v1 holds it until thawed); runc
    asks the freezer before the init's life, so the container stays paused until resumed.
    galley said stopped (seqfuzz seed 35 on this layout). Without a pid namespace, so that
    USR1 (no handler) is fatal to the init. A signal then reaches the zombie; once it is
    reaped, runc's kill(2) fails, and galley's kill said nothing (seqfuzz seed 39). The
    test is the init's reaper (a subreaper while `run` leaves it orphaned)."""
    bundle.config["process"]["args"] = ["sleep", "1000"]
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "pid"]
    linux["cgroupsPath"] = cgroup_path
    cid = on_v2.new_id()
    set_child_subreaper(True)
    try:
        detached(on_v2, "run", "--detach", "--bundle", str(bundle.write()), cid)
    finally:
        set_child_subreaper(False)
    pid = json.loads(on_v2("state", cid, check=True).stdout)["pid"]
    try:
        on_v2("pause", cid, check=True)
        on_v2("kill", cid, "USR1", check=True)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "USR1 did not kill the frozen init"
            time.sleep(0.02)
        state = json.loads(on_v2("state", cid, check=True).stdout)
        assert (state["status"], state["pid"]) == ("paused", pid)
        on_v2("kill", cid, "CONT", check=True)  # a zombie takes kill(2)
    finally:
        os.kill(pid, signal.SIGKILL)  # nothing to a zombie; a failed step leaves no sleep
        os.waitpid(pid, 0)
    gone = on_v2("kill", cid, "CONT")
    assert gone.returncode == 1
    assert "unable to signal init: os: process already finished" in gone.stderr
    refused = on_v2("delete", cid)
    assert refused.returncode == 1
    assert "not stopped: paused" in refused.stderr, refused.stderr
    on_v2("resume", cid, check=True)
    wait_status(on_v2, cid, "stopped")
    on_v2("delete", cid, check=True)


def test_kill_all_of_a_paused_container_leaves_it_thawed(
    on_v2: Runtime, v2_host: int, bundle: Bundle, cgroup_path: str
) -> None:
    """runc's `kill --all` freezes, signals and thaws, whatever the cgroup was before; galley
    kills with cgroup.kill and left a paused container's freeze on, so once the frozen-first
    status came (above) it read as paused with nothing left in it (seqfuzz seed 36)."""
    bundle.config["process"]["args"] = ["sleep", "1000"]
    bundle.config["linux"]["cgroupsPath"] = cgroup_path
    cid = on_v2.new_id()
    detached(on_v2, "run", "--detach", "--bundle", str(bundle.write()), cid)
    on_v2("pause", cid, check=True)
    on_v2("kill", "--all", cid, "KILL", check=True)
    wait_status(on_v2, cid, "stopped")
    assert (cgroup_dir(v2_host, cgroup_path) / "cgroup.freeze").read_text().strip() == "0"
    on_v2("delete", cid, check=True)


def test_features_say_what_the_runtime_has_not_what_the_host_mounts(on_v2: Runtime) -> None:
    """features-linux.md: cgroup, AppArmor and SELinux support are "irrelevant to" the host's.
    Here the host mounts no v1 hierarchy and has neither LSM; runc (built with both) says the
    same."""
    assert not Path("/sys/kernel/security/apparmor").exists()
    assert not Path("/sys/fs/selinux/enforce").exists()
    linux = json.loads(on_v2("features", check=True).stdout)["linux"]
    assert (linux["cgroup"]["v1"], linux["cgroup"]["v2"]) == (True, True)
    assert linux["apparmor"] == linux["selinux"] == {"enabled": True}


@pytest.mark.parametrize("cgroupns", [True, False], ids=["cgroupns", "host-cgroupns"])
def test_a_shared_cgroup2_mount_is_shared(
    runtime: Runtime, v2_host: int, bundle: Bundle, cgroup_path: str, cgroupns: bool, tmp_path: Path
) -> None:
    """The mount's propagation on the fresh cgroup2 mount (a cgroup namespace) as on the bind
    of the host's directory (none): the fresh one was left private. galley only: runc 1.1's
    cgroup2 mount returns before it applies a mount's propagation, and stays private."""
    linux = bundle.config["linux"]
    if not cgroupns:
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    for entry in bundle.config["mounts"]:
        if entry["type"] == "cgroup":
            entry["options"] = ["nosuid", "noexec", "nodev", "shared"]
    bundle.config["process"]["args"] = ["grep", " /sys/fs/cgroup ", "/proc/self/mountinfo"]
    linux["cgroupsPath"] = cgroup_path
    with in_namespace(runtime, v2_host, tmp_path / "wrap") as rt:
        ran = rt("run", "--bundle", str(bundle.write()), rt.new_id(), stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    optional = ran.stdout.split(" - ")[0].split()[6:]  # the fields before the separator
    assert any(field.startswith("shared:") for field in optional), ran.stdout


@pytest.mark.parametrize(("rules", "made"), DEVICE_LISTS.values(), ids=DEVICE_LISTS.keys())
def test_a_rule_list_means_on_v2_what_runcs_emulator_makes_it(
    on_v2: Runtime, bundle: Bundle, cgroup_path: str, rules: list[dict[str, Any]], made: str
) -> None:
    """test_cgroups_runtime's lists through the eBPF filter: the same result as on v1."""
    bundle.config["linux"]["cgroupsPath"] = cgroup_path
    assert device_probe(on_v2, bundle, rules).split() == [*made.split(), "done"]
