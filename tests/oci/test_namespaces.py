"""Namespaces: user ns with id maps, joining by path, time offsets, uts names, cgroup ns."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from galley.fixtures.busybox import default_config
from galley.oci import namespaces as namespaces_module
from galley.oci.spec import Spec
from tests.conftest import GALLEY_RUNC
from tests.oci.conftest import RUNC, Bundle, Runtime, in_user_namespace
from tests.oci.test_console import console_output

pytestmark = pytest.mark.root


def _run(runtime: Runtime, bundle: Bundle, script: str) -> str:
    bundle.config["process"]["args"] = ["sh", "-c", script]
    res = runtime("run", "-b", str(bundle.write()), runtime.new_id())
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_user_namespace_maps_written_by_parent(runtime: Runtime, open_bundle: Bundle) -> None:
    bundle = open_bundle
    in_user_namespace(bundle)
    out = _run(runtime, bundle, "cat /proc/self/uid_map /proc/self/gid_map; id -u")
    lines = [line.split() for line in out.splitlines()]
    assert lines == [["0", "100000", "65536"], ["0", "200000", "65536"], ["0"]]


def test_terminal_in_a_user_namespace(
    runtime: Runtime, open_bundle: Bundle, tmp_path: Path
) -> None:
    """The pty opened inside the container's devpts, owned by the mapped user (uid 1000)."""
    bundle = open_bundle
    in_user_namespace(bundle)
    process = bundle.config["process"]
    process.update(terminal=True, user={"uid": 1000, "gid": 1000})
    process["args"] = ["sh", "-c", "tty; stat -c '%u' $(tty); id -u"]
    out = console_output(runtime, bundle, str(tmp_path / "console.sock")).decode()
    assert out.split() == ["/dev/pts/0", "1000", "1000"], out


def test_hostname_and_domainname(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["hostname"] = "box"
    bundle.config["domainname"] = "example.test"
    out = _run(runtime, bundle, "hostname; cat /proc/sys/kernel/domainname")
    assert out == "box\nexample.test\n"
    assert os.uname().nodename != "box"


def test_empty_names_without_a_uts_namespace_leave_the_callers(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """ "hostname": "" passes validation without a UTS namespace of the container's own (it
    sets nothing): the caller's names must stay. Run in a throwaway UTS namespace, so that a
    runtime getting it wrong renames that namespace, not this machine."""
    bundle.config["linux"]["namespaces"] = [
        n for n in bundle.config["linux"]["namespaces"] if n["type"] != "uts"
    ]
    bundle.config["hostname"] = bundle.config["domainname"] = ""
    bundle.config["process"]["args"] = ["true"]
    cid = any_runtime.new_id()
    any_runtime.created.append(cid)
    run = f"{any_runtime.binary} --root {any_runtime.root} run -b {bundle.write()} {cid}"
    script = f"hostname outer && {run} && hostname && cat /proc/sys/kernel/domainname"
    result = subprocess.run(
        ["unshare", "--uts", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "outer"
    assert result.stdout.splitlines()[1] == (
        Path("/proc/sys/kernel/domainname").read_text().strip()
    )


def test_cgroup_namespace_hides_host_path(runtime: Runtime, bundle: Bundle) -> None:
    out = _run(runtime, bundle, "cat /proc/self/cgroup")
    paths = {line.split(":", 2)[2] for line in out.splitlines() if line}
    assert paths == {"/"}


def test_time_namespace_offsets(runtime: Runtime, bundle: Bundle) -> None:
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("kernel without time namespaces")
    day = 86400
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 1000 * day, "nanosecs": 0}}
    out = _run(runtime, bundle, "cat /proc/uptime")
    assert float(out.split()[0]) > 1000 * day
    with open("/proc/uptime") as f:
        assert float(f.read().split()[0]) < 1000 * day


def test_time_namespace_offsets_in_a_user_namespace(runtime: Runtime, open_bundle: Bundle) -> None:
    """The offsets are written by the stage, non-dumpable, once it is the root of a user
    namespace of the container's own: its /proc/self/timens_offsets belongs to the host's
    root, and opening it there was refused (EACCES). Opened before, as the host's root."""
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("kernel without time namespaces")
    bundle = open_bundle
    in_user_namespace(bundle)
    day = 86400
    bundle.config["linux"]["namespaces"].append({"type": "time"})
    bundle.config["linux"]["timeOffsets"] = {"boottime": {"secs": 1000 * day, "nanosecs": 0}}
    out = _run(runtime, bundle, "cat /proc/uptime")
    assert float(out.split()[0]) > 1000 * day


@pytest.fixture
def sleeper(tmp_path: Path, busybox_rootfs: Path) -> Iterator[int]:
    """A running container (sleep) with its own namespaces; yields its init pid."""
    path = tmp_path / "sleeper"
    path.mkdir()
    shutil.copytree(busybox_rootfs, path / "rootfs", symlinks=True)
    config = copy.deepcopy(default_config(["sleep", "60"]))
    (path / "config.json").write_text(json.dumps(config))
    root = tmp_path / "sleeper-state"
    pid_file = tmp_path / "sleeper.pid"
    cmd = [GALLEY_RUNC, "--root", str(root)]
    subprocess.run(
        [*cmd, "run", "-d", "--pid-file", str(pid_file), "-b", str(path), "sleeper"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=30,
    )
    try:
        yield int(pid_file.read_text())
    finally:
        subprocess.run([*cmd, "delete", "-f", "sleeper"], check=False, timeout=30)


def test_join_namespaces_by_path(runtime: Runtime, bundle: Bundle, sleeper: int) -> None:
    joined = {"network": "net", "ipc": "ipc", "uts": "uts"}
    namespaces = [n for n in bundle.config["linux"]["namespaces"] if n["type"] not in joined]
    namespaces += [{"type": t, "path": f"/proc/{sleeper}/ns/{n}"} for t, n in joined.items()]
    bundle.config["linux"]["namespaces"] = namespaces
    bundle.config.pop("hostname", None)
    out = _run(runtime, bundle, "for n in net ipc pid; do readlink /proc/self/ns/$n; done")
    net, ipc, pid = out.split()
    assert net == os.readlink(f"/proc/{sleeper}/ns/net")
    assert ipc == os.readlink(f"/proc/{sleeper}/ns/ipc")
    assert pid != os.readlink(f"/proc/{sleeper}/ns/pid")


def test_a_new_user_namespace_with_namespaces_the_host_owns_joined_by_path(
    any_runtime: Runtime, open_bundle: Bundle, sleeper: int
) -> None:
    """The namespaces given by path are joined before the new user namespace is made, as runc
    does: from inside it, the kernel refuses setns into a namespace the host's owns (galley
    made the user namespace first and failed with EPERM)."""
    bundle = open_bundle
    in_user_namespace(bundle)
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in {"uts", "ipc"}]
    linux["namespaces"] += [
        {"type": "uts", "path": f"/proc/{sleeper}/ns/uts"},
        {"type": "ipc", "path": f"/proc/{sleeper}/ns/ipc"},
    ]
    bundle.config.pop("hostname", None)
    out = _run(any_runtime, bundle, "for n in uts ipc; do readlink /proc/self/ns/$n; done; id -u")
    assert out.split() == [
        os.readlink(f"/proc/{sleeper}/ns/uts"),
        os.readlink(f"/proc/{sleeper}/ns/ipc"),
        "0",
    ]


def test_sysfs_and_mqueue_of_namespaces_joined_by_path_in_a_user_namespace(
    runtime: Runtime, open_bundle: Bundle, sleeper: int, tmp_path: Path
) -> None:
    """With a user namespace of its own, a container that joins a network and an IPC
    namespace the host owns gets a sysfs and an mqueue of those: the stage makes them before
    it enters the user namespace, whose root the kernel refuses them. runc 1.1 fails; galley
    used to bind the host's /sys (the host's network devices) and /dev/mqueue."""
    exec_in_sleeper = [GALLEY_RUNC, "--root", str(tmp_path / "sleeper-state"), "exec", "sleeper"]
    subprocess.run([*exec_in_sleeper, "touch", "/dev/mqueue/galley-queue"], check=True, timeout=30)
    bundle = open_bundle
    in_user_namespace(bundle)
    bundle.config["mounts"] += [
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]  # fmt: skip
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in {"network", "ipc"}]
    linux["namespaces"] += [
        {"type": "network", "path": f"/proc/{sleeper}/ns/net"},
        {"type": "ipc", "path": f"/proc/{sleeper}/ns/ipc"},
    ]
    out = _run(
        runtime,
        bundle,
        "ls /sys/class/net; ls /dev/mqueue;"
        ' awk \'$5 == "/sys" || $5 == "/dev/mqueue" {print $5, substr($6, 1, 2), $9}\''
        " /proc/self/mountinfo",
    )
    assert out.split() == [
        "lo",  # the sleeper's network namespace holds nothing else
        "galley-queue",
        "/sys", "ro", "sysfs",
        "/dev/mqueue", "rw", "mqueue",
    ]  # fmt: skip


def test_join_pid_namespace_by_path(runtime: Runtime, bundle: Bundle, sleeper: int) -> None:
    namespaces = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "pid"]
    namespaces.append({"type": "pid", "path": f"/proc/{sleeper}/ns/pid"})
    bundle.config["linux"]["namespaces"] = namespaces
    out = _run(runtime, bundle, "echo $$; readlink /proc/self/ns/pid")
    own_pid, ns = out.split()
    assert own_pid != "1"
    assert ns == os.readlink(f"/proc/{sleeper}/ns/pid")


def test_sysctl_in_the_network_namespace(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    out = _run(runtime, bundle, "cat /proc/sys/net/ipv4/ip_forward")
    assert out == "1\n"


def test_the_hostname_sysctl_is_refused_as_runc_refuses_it(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """kernel.hostname in linux.sysctl, with a UTS namespace and with or without `hostname`:
    runc 1.1 refuses the config; galley ran it and the sysctl overrode the hostname."""
    bundle.config["linux"]["sysctl"] = {"kernel.hostname": "from-sysctl"}
    for hostname in ("h", None):
        if hostname is None:
            bundle.config.pop("hostname", None)
        res = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
        assert res.returncode == 1, res.stdout
        assert "kernel.hostname" in res.stderr
        assert 'conflicts with the OCI \\"hostname\\" field' in res.stderr


def test_oom_score_adj_written_by_parent(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["process"]["oomScoreAdj"] = 523
    assert _run(runtime, bundle, "cat /proc/self/oom_score_adj") == "523\n"


def test_bad_namespace_path_fails_cleanly(runtime: Runtime, bundle: Bundle) -> None:
    namespaces = [n for n in bundle.config["linux"]["namespaces"] if n["type"] != "network"]
    namespaces.append({"type": "network", "path": "/proc/self/ns/nope"})
    bundle.config["linux"]["namespaces"] = namespaces
    cid = runtime.new_id()
    res = runtime("run", "-b", str(bundle.write()), cid)
    assert res.returncode == 1
    assert "/proc/self/ns/nope" in res.stderr
    assert not (runtime.root / cid).exists()


@pytest.mark.parametrize("through_symlink", [False, True])
def test_bind_source_only_the_hosts_root_can_reach(
    any_runtime: Runtime, open_bundle: Bundle, tmp_path: Path, through_symlink: bool
) -> None:
    """A bind source below a directory only the host's root may search (0700, as a kubelet's
    pod directories are 0750), in a container with a user namespace: the mapped root cannot
    look it up, the runtime clones it first (runc 1.1 opens such sources before the userns).
    galley said "bind source ... does not exist"."""
    bundle = open_bundle
    in_user_namespace(bundle)
    (bundle.rootfs / "mnt" / "volume").mkdir(parents=True)  # the mapped root may not make it
    private = tmp_path / "private"  # root's, 0700
    (private / "volume").mkdir(parents=True, mode=0o755)
    (private / "volume" / "data").write_text("kept\n")
    private.chmod(0o700)
    source = private / "volume"
    if through_symlink:
        (private / "link").symlink_to(source)
        source = private / "link"
    bundle.config["mounts"].append(
        {
            "destination": "/mnt/volume",
            "type": "bind",
            "source": str(source),
            "options": ["bind", "ro"],
        }
    )
    assert _run(any_runtime, bundle, "cat /mnt/volume/data") == "kept\n"


@pytest.mark.parametrize("options", [["rbind"], ["rbind", "ro"]])
def test_bind_submounts_stay_locked_in_a_user_namespace(
    any_runtime: Runtime, open_bundle: Bundle, tmp_path: Path, options: list[str]
) -> None:
    """A recursive bind's submounts, in a container with a user namespace, are locked as the
    kernel locks the host's mounts for a less privileged namespace: its root (CAP_SYS_ADMIN
    there) may not unmount one to read the host's files it covers. runc opens the source in
    the container's mount namespace; galley cloned it in the host's, unlocked."""
    bundle = open_bundle
    in_user_namespace(bundle)
    caps = ["CAP_SYS_ADMIN"]
    bundle.config["process"]["capabilities"] = {
        "bounding": caps,
        "effective": caps,
        "permitted": caps,
    }
    (bundle.rootfs / "mnt" / "volume").mkdir(parents=True)
    source = tmp_path / "volume"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "covered").write_text("the host's\n")
    bundle.config["mounts"].append(
        {"destination": "/mnt/volume", "type": "bind", "source": str(source), "options": options}
    )
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(source / "sub")], check=True)
    try:
        out = _run(
            any_runtime,
            bundle,
            "umount /mnt/volume/sub 2>/dev/null && echo unmounted;"
            " cat /mnt/volume/sub/covered 2>/dev/null; echo end",
        )
    finally:
        subprocess.run(["umount", str(source / "sub")], check=True)
    assert out == "end\n"


def test_exec_joins_a_user_namespace(runtime: Runtime, open_bundle: Bundle) -> None:
    from tests.oci.test_exec import exec_in  # noqa: PLC0415

    bundle = open_bundle
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"] = [
        m for m in bundle.config["mounts"] if m["type"] in ("proc", "tmpfs", "devpts")
    ]
    linux.pop("resources", None)
    bundle.config["process"]["args"] = ["sleep", "60"]
    cid = runtime.detached(bundle)
    res = exec_in((runtime, cid, 0), ["sh", "-c", "id -u; cat /proc/self/uid_map"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "0", "100000", "65536"]


def test_idmapped_mount_in_a_user_namespace(runtime: Runtime, open_bundle: Bundle) -> None:
    """The idmapped tree is made before the stage enters the container's user namespace (in
    it, mount_setattr(MOUNT_ATTR_IDMAP) on a host filesystem is refused): files owned by 0 and
    7 on disk show as the container's 0 and 7, that is host 100000 and 100007."""
    bundle = open_bundle
    data = bundle.path.parent / "idmapped"
    data.mkdir()
    (data / "mine").write_text("")
    (data / "theirs").write_text("")
    os.chown(data / "theirs", 7, 8)
    (bundle.rootfs / "idm").mkdir()  # the mapped root may not create it in a host-owned root
    in_user_namespace(bundle)
    bundle.config["mounts"].append(
        {"destination": "/idm", "type": "bind", "source": str(data), "options": ["rbind", "idmap"]}
    )
    out = _run(runtime, bundle, "stat -c '%n %u %g' /idm/mine /idm/theirs; touch /idm/new")
    assert out.splitlines() == ["/idm/mine 0 0", "/idm/theirs 7 8"]
    assert (data / "new").stat().st_uid == 0  # written as the container's root: host uid 0


@pytest.mark.parametrize(
    ("namespaces", "at_fork"),
    [
        ([{"type": "pid"}, {"type": "mount"}, {"type": "network"}], True),
        ([{"type": "mount"}], False),  # no pid namespace: nothing to fork into
        ([{"type": "pid", "path": "/proc/1/ns/pid"}, {"type": "mount"}], False),  # joined
        ([{"type": "pid"}, {"type": "user"}], False),  # it must belong to the user namespace
        ([{"type": "pid"}, {"type": "time"}], False),  # the stage forks for that one anyway
        ("pid", False),  # not validated yet: anything may come
        ([["pid"]], False),
    ],
)
def test_when_the_stage_is_forked_into_the_pid_namespace(namespaces: object, at_fork: bool) -> None:
    """P forks the create stage straight into a new pid namespace (the stage is then the
    container's pid 1, with no second fork) only where nothing else must come first."""
    spec = cast(Spec, {"linux": {"namespaces": namespaces}})  # namespaces: any shape
    assert namespaces_module.pid_namespace_at_fork(spec) is at_fork
    assert namespaces_module.pid_namespace_at_fork({}) is False


def test_sysfs_in_a_user_namespace_joined_by_path_sharing_our_network_namespace(
    runtime: Runtime, open_bundle: Bundle, tmp_path: Path
) -> None:
    """Joined by path, a user namespace gets no premade sysfs (its root may mount what its
    namespaces allow), and the kernel refuses it one of the network namespace it shares with
    galley-runc: the container gets a bind of our /sys, read-only all the way down (the
    host's tracefs and cgroup hierarchies come along, and stay read-only)."""
    bundle = open_bundle
    in_user_namespace(bundle)
    bundle.config["process"]["args"] = ["sleep", "60"]
    pid_file = tmp_path / "holder.pid"
    runtime.detached(bundle, pid_file=pid_file)
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] not in {"user", "network"}]
    linux["namespaces"].append({"type": "user", "path": f"/proc/{pid_file.read_text()}/ns/user"})
    del linux["uidMappings"], linux["gidMappings"]
    bundle.config["mounts"].append(
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}
    )
    out = _run(runtime, bundle, "awk '$5 ~ /^\\/sys/ {print $5, $6}' /proc/self/mountinfo")
    mounts = [line.split() for line in out.splitlines()]
    assert len(mounts) > 2 and all(options.split(",")[0] == "ro" for _, options in mounts), mounts


def test_a_new_network_namespace_has_loopback_up(any_runtime: Runtime, bundle: Bundle) -> None:
    """As runc: 127.0.0.1 works in a container's own network namespace (IFF_UP|IFF_LOOPBACK)."""
    out = _run(any_runtime, bundle, "cat /sys/class/net/lo/flags")
    assert out.strip() == "0x9"


@pytest.mark.parametrize("sys_admin", [False, True], ids=["default-caps", "cap-sys-admin"])
def test_sysfs_in_a_user_namespace_without_its_network_namespace(
    any_runtime: Runtime, open_bundle: Bundle, sys_admin: bool
) -> None:
    """A container's own user namespace may not mount sysfs for the host's network
    namespace: runc 1.1 refuses; galley-runc's stage makes it before it enters the user
    namespace. A fresh sysfs, with the host's network devices (the container shares their
    namespace) and none of the host's submounts (tracefs, the cgroup hierarchies: galley
    once bound the host's /sys, and they came along)."""
    bundle = open_bundle
    in_user_namespace(bundle)
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    linux["maskedPaths"] = []  # /sys/firmware: a mount of its own
    bundle.config["mounts"].append(
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}
    )
    bundle.config["process"]["args"] = [
        "sh",
        "-c",
        "awk '$5 ~ /^\\/sys/ {print $5, substr($6, 1, 3), $9}' /proc/self/mountinfo;"
        " ls /sys/class/net",
    ]
    if sys_admin:
        for name in ("bounding", "effective", "permitted"):
            bundle.config["process"]["capabilities"][name].append("CAP_SYS_ADMIN")
    result = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    if any_runtime.binary == RUNC:
        assert result.returncode == 1 and "/sys" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["/sys", "ro,", "sysfs", *sorted(os.listdir("/sys/class/net"))]


def test_a_caller_without_cap_sys_admin_is_told_which_namespaces_failed(
    runtime: Runtime, bundle: Bundle
) -> None:
    """Without CAP_SYS_ADMIN (a caller under setpriv) no namespace can be made: the error names
    them as the config does, not as a mask of clone flags, and nothing is left behind."""
    cid = runtime.new_id()
    argv = [runtime.binary, "--root", str(runtime.root), "run", "-b", str(bundle.write()), cid]
    result = subprocess.run(
        ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "unshare mount, pid, network, ipc, uts namespaces: Operation not permitted" in (
        result.stderr
    ), result.stderr
    assert runtime("state", cid).returncode == 1


def test_a_net_sysctl_never_reaches_the_hosts_network_namespace(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """The network namespace joined by path is the host's (a host process's): the net.*
    sysctl is refused before anything runs, and the host's value stays (galley wrote it)."""
    knob = "/proc/sys/net/ipv4/tcp_keepalive_probes"
    before = Path(knob).read_text()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        bundle.config["linux"]["namespaces"] = [
            n
            if n["type"] != "network"
            else {"type": "network", "path": f"/proc/{sleeper.pid}/ns/net"}
            for n in bundle.config["linux"]["namespaces"]
        ]
        bundle.config["linux"]["sysctl"] = {"net.ipv4.tcp_keepalive_probes": str(int(before) + 1)}
        result = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
        assert Path(knob).read_text() == before
        assert result.returncode == 1
        assert "not allowed in host network namespace" in result.stderr
    finally:
        if Path(knob).read_text() != before:
            Path(knob).write_text(before)
        sleeper.kill()
        sleeper.wait()
