"""The same bundle under galley-runc and runc: the container sees the same mounts and /dev."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.oci.conftest import (
    RUNTIMES,
    Bundle,
    Runtime,
    in_user_namespace,
    run_bundle,
    wait_status,
)
from tests.oci.rootfs_harness import mountinfo

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif("runc" not in RUNTIMES, reason="runc is not installed"),
]

# runc 1.1 leaves the v1 cgroup tmpfs writable despite "ro"; galley makes it read-only.
KNOWN_DIFFERENCES = {"/sys/fs/cgroup"}


def seen(runtime: str, bundle: Bundle, tmp_path: Path, script: str) -> str:
    bundle.config["process"]["args"] = ["sh", "-c", script]
    rt = Runtime(RUNTIMES[runtime], tmp_path / f"state-{runtime}")
    try:
        result = rt("run", "--bundle", str(bundle.write()), rt.new_id())
    finally:
        rt.cleanup()
    assert result.returncode == 0, result.stderr
    return result.stdout


def normalised(text: str) -> list[tuple[str, ...]]:
    """Mount point, per-mount options, type, source and superblock options, in mount order."""
    return [
        (point, entry["options"], entry["fstype"], entry["source"], entry["super"])
        for point, entry in mountinfo(text).items()
        if point not in KNOWN_DIFFERENCES
    ]


def test_same_mount_table_as_runc(bundle: Bundle, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    bundle.config["root"]["readonly"] = True
    bundle.config["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(data),
         "options": ["rbind", "ro", "nosuid", "nodev"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["nodev", "noatime", "mode=700", "size=2m"]},
        {"destination": "/run/x", "type": "tmpfs", "source": "tmpfs", "options": ["rprivate"]},
    ]  # fmt: skip
    bundle.config["linux"]["readonlyPaths"].append("/tmp")
    bundle.config["linux"]["maskedPaths"].append("/etc/group")
    script = "cat /proc/self/mountinfo"
    galley = normalised(seen("galley", bundle, tmp_path, script))
    runc = normalised(seen("runc", bundle, tmp_path, script))
    assert galley == runc


@pytest.mark.parametrize("made_read_only", ["/dev read-only", "/dev/null in readonlyPaths"])
def test_masked_files_carry_the_flags_of_dev_null_as_under_runc(
    bundle: Bundle, tmp_path: Path, made_read_only: str
) -> None:
    """A masked file is a bind of /dev/null as it is once /dev and the read-only paths are
    done (runc's order): read-only when either made it so."""
    if made_read_only.startswith("/dev read-only"):
        dev = next(m for m in bundle.config["mounts"] if m["destination"] == "/dev")
        dev["options"] = [*dev["options"], "ro"]
    else:
        bundle.config["linux"]["readonlyPaths"].append("/dev/null")
    bundle.config["linux"]["maskedPaths"] += ["/etc/group", "/proc/keys"]
    script = "cat /proc/self/mountinfo"
    galley = normalised(seen("galley", bundle, tmp_path, script))
    runc = normalised(seen("runc", bundle, tmp_path, script))
    assert galley == runc
    masked = [entry for entry in galley if entry[0] == "/etc/group"]
    assert masked and masked[0][1].startswith("ro"), masked


def _propagation(mountinfo_text: str, point: str) -> list[str]:
    """The optional fields (shared:N, master:N, unbindable) of the mount at point."""
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if fields[4] == point:
            return fields[6 : fields.index("-")]
    raise AssertionError(f"no mount at {point}")


def test_a_mount_keeps_its_own_propagation_under_a_recursive_root_one(
    bundle: Bundle, tmp_path: Path
) -> None:
    """rootfsPropagation "rshared" goes to the new root at the end; a mount that asked for
    its own propagation ("unbindable") keeps it, as under runc (galley's recursive root
    change overrode it)."""
    source = tmp_path / "source"
    source.mkdir()
    bundle.config["linux"]["rootfsPropagation"] = "rshared"
    bundle.config["mounts"].append(
        {"destination": "/tmp", "type": "bind", "source": str(source),
         "options": ["rbind", "unbindable"]}
    )  # fmt: skip
    script = "cat /proc/self/mountinfo"
    assert _propagation(seen("runc", bundle, tmp_path, script), "/tmp") == ["unbindable"]
    galley = seen("galley", bundle, tmp_path, script)
    assert _propagation(galley, "/tmp") == ["unbindable"]
    assert _propagation(galley, "/")[0].startswith("shared:")  # the spec's rootfsPropagation


def test_mand_reaches_the_superblock_of_every_fresh_filesystem(
    bundle: Bundle, tmp_path: Path
) -> None:
    """ "mand" on /dev (a tmpfs made detached, for its mode) and /sys shows in their
    superblock options, as under runc; it was dropped on the fsopen path."""
    for mount in bundle.config["mounts"]:
        if mount["destination"] in {"/dev", "/sys"}:
            mount["options"] = [*mount.get("options", []), "mand"]
    script = "cat /proc/self/mountinfo"
    galley = normalised(seen("galley", bundle, tmp_path, script))
    runc = normalised(seen("runc", bundle, tmp_path, script))
    assert galley == runc
    supers = {entry[0]: entry[4] for entry in galley}
    assert "mand" in supers["/dev"].split(",") and "mand" in supers["/sys"].split(",")


def test_same_dev_as_runc(bundle: Bundle, tmp_path: Path) -> None:
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
         "uid": 0, "gid": 0},
    ]  # fmt: skip
    script = "ls -ln /dev | sed 's/  */ /g' | cut -d' ' -f1-6,10-; cat /etc/group | wc -c"
    galley = seen("galley", bundle, tmp_path, script)
    runc = seen("runc", bundle, tmp_path, script)
    assert galley == runc


def test_same_mount_table_as_runc_in_user_namespace(bundle: Bundle, tmp_path: Path) -> None:
    # The container's root (host uid 100000) must be able to reach the rootfs: pytest's own
    # temporary directories are 0700, so the bundle moves to a world-searchable one.
    reachable = Path(tempfile.mkdtemp(prefix="galley-userns-", dir="/tmp"))
    try:
        os.chmod(reachable, 0o755)
        shutil.copytree(bundle.rootfs, reachable / "rootfs", symlinks=True)
        moved = Bundle(path=reachable, config=bundle.config)
        compare_in_user_namespace(moved, tmp_path)
    finally:
        shutil.rmtree(reachable)


def compare_in_user_namespace(bundle: Bundle, tmp_path: Path) -> None:
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    script = "cat /proc/self/mountinfo"
    galley = normalised(seen("galley", bundle, tmp_path, script))
    runc = normalised(seen("runc", bundle, tmp_path, script))
    assert galley == runc
    assert any(point == "/dev/null" and fstype == "devtmpfs" for point, _, fstype, *_ in galley)


def test_same_mount_table_as_runc_without_pivot_root(bundle: Bundle, tmp_path: Path) -> None:
    bundle.config["process"]["args"] = ["sh", "-c", "cat /proc/self/mountinfo; ls /"]
    outputs = []
    for runtime in ("galley", "runc"):
        rt = Runtime(RUNTIMES[runtime], tmp_path / f"state-{runtime}")
        try:
            result = rt("run", "--no-pivot", "--bundle", str(bundle.write()), rt.new_id())
        finally:
            rt.cleanup()
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    galley, runc = (normalised(text) for text in outputs)
    assert galley == runc
    assert outputs[0].split()[-3:] == outputs[1].split()[-3:]  # the same / listing


@pytest.mark.parametrize("runtime", ["runc", "galley"])
def test_bidirectional_propagation_end_to_end(bundle: Bundle, tmp_path: Path, runtime: str) -> None:
    """rootfsPropagation rshared + an rshared bind of a shared host mount: a mount made in the
    container appears on the host (Kubernetes' Bidirectional mount propagation)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "galley-bidir", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        bundle.config["linux"]["rootfsPropagation"] = "rshared"
        caps = bundle.config["process"]["capabilities"]
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = [*caps[kind], "CAP_SYS_ADMIN"]
        bundle.config["mounts"].append(
            {"destination": "/s", "source": str(shared), "options": ["rbind", "rshared"]}
        )
        seen(runtime, bundle, tmp_path, "mkdir /s/in && mount -t tmpfs from-container /s/in")
        with open("/proc/self/mountinfo") as mountinfo_file:
            assert str(shared / "in") in mountinfo(mountinfo_file.read())
    finally:
        subprocess.run(["umount", "-R", str(shared)], check=True)


def test_sysfs_without_a_network_namespace_is_a_fresh_one(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """Without a network namespace of its own, the container still gets a new sysfs (as
    runc's): a recursive bind of the host's /sys brought the host's tracefs and cgroup
    mounts along, writable (a container could switch the host's tracing on)."""
    linux = bundle.config["linux"]
    linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
    script = (
        "awk '$5 == \"/sys\" {print $9}' /proc/self/mountinfo;"
        " awk '$5 == \"/sys/kernel/tracing\"' /proc/self/mountinfo | wc -l;"
        " (: >>/sys/kernel/tracing/tracing_on) 2>/dev/null && echo tracing:writable"
        " || echo tracing:refused"
    )
    bundle.config["process"]["args"] = ["sh", "-c", script]
    result = run_bundle(any_runtime, bundle)
    assert result.stdout.split() == ["sysfs", "0", "tracing:refused"]


def test_a_read_only_tmpfs_takes_mounts_made_inside_it(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """A read-only tmpfs stays writable until every mount is in (runc's finalizeRootfs): a
    later mount whose destination is missing on it gets its directory made there. galley made
    it read-only at once, and the create failed with EROFS."""
    bundle.config["mounts"] += [
        {"destination": "/run/ro", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid"]},
        {"destination": "/run/ro/in/sub", "type": "tmpfs", "source": "tmpfs", "options": []},
    ]  # fmt: skip
    bundle.config["process"]["args"] = [
        "sh", "-c",
        "awk '$5 ~ \"^/run/ro\" {print $5, $6}' /proc/self/mountinfo;"
        " touch /run/ro/x 2>/dev/null || echo ro:refused; touch /run/ro/in/sub/y && echo sub:ok",
    ]  # fmt: skip
    result = run_bundle(any_runtime, bundle)
    assert result.stdout.splitlines() == [
        "/run/ro ro,nosuid,relatime",
        "/run/ro/in/sub rw,relatime",
        "ro:refused",
        "sub:ok",
    ]


@pytest.mark.parametrize("cgroupns", [True, False], ids=["cgroupns", "host-cgroupns"])
def test_a_v1_cgroup_mount_is_nosuid_nodev_noexec_whatever_its_options(
    any_runtime: Runtime, bundle: Bundle, cgroupns: bool
) -> None:
    """runc 1.1 mounts the v1 tmpfs (and, in a cgroup namespace, each fresh hierarchy) with
    nosuid, nodev and noexec whatever the mount's options (of which only "ro" counts there);
    galley took the options: no nosuid, nodev or noexec, and a noatime."""
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("needs cgroup v1 hierarchies")
    linux = bundle.config["linux"]
    if not cgroupns:
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    for entry in bundle.config["mounts"]:
        if entry["type"] == "cgroup":
            entry["options"] = ["noatime"]
    bundle.config["process"]["args"] = [
        "sh", "-c", "awk '$5 ~ \"^/sys/fs/cgroup(/memory)?$\" {print $5, $6}' /proc/self/mountinfo",
    ]  # fmt: skip
    result = run_bundle(any_runtime, bundle)
    hierarchy = "rw,nosuid,nodev,noexec,relatime" if cgroupns else "rw,noatime"
    assert result.stdout.splitlines() == [
        "/sys/fs/cgroup rw,nosuid,nodev,noexec,relatime",
        f"/sys/fs/cgroup/memory {hierarchy}",
    ]


# What a v1 cgroup mount's propagation gives (tmpfs, hierarchies): with a cgroup namespace
# the hierarchies are fresh mounts and take what the kernel gives a new mount under the tmpfs;
# without one they are binds of the host's directories and are given it.
V1_PROPAGATION = [
    ("shared", True, "shared", "shared"),
    ("shared", False, "shared", "shared"),
    ("unbindable", True, "unbindable", "private"),
    ("unbindable", False, "unbindable", "unbindable"),
    ("private", True, "private", "private"),
]


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="no cgroup v1 tmpfs")
@pytest.mark.parametrize(("propagation", "cgroupns", "tmpfs", "hierarchies"), V1_PROPAGATION)
def test_a_v1_cgroup_mounts_propagation_as_runc_gives_it(
    any_runtime: Runtime,
    bundle: Bundle,
    propagation: str,
    cgroupns: bool,
    tmpfs: str,
    hierarchies: str,
) -> None:
    """runc gives the propagation to the tmpfs before it mounts the hierarchies in it, and to
    each bind. galley gave it to the tmpfs after, so fresh hierarchies under a "shared" one
    were private (difffuzz seed 26), and then to each fresh one too, so under an "unbindable"
    one they were unbindable (seed 32)."""
    linux = bundle.config["linux"]
    if not cgroupns:
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "cgroup"]
    for entry in bundle.config["mounts"]:
        if entry["type"] == "cgroup":
            entry["options"] = ["nosuid", "noexec", "nodev", propagation]
    bundle.config["process"]["args"] = [
        "sh", "-c",
        "awk '$5 ~ \"^/sys/fs/cgroup\" {s = \"private\"; for (i = 7; $i != \"-\"; i++) {"
        " if ($i ~ /^shared:/) s = \"shared\"; if ($i == \"unbindable\") s = \"unbindable\" }"
        " print $5, s}' /proc/self/mountinfo",
    ]  # fmt: skip
    result = run_bundle(any_runtime, bundle)
    found = dict(line.split() for line in result.stdout.splitlines())
    assert found.pop("/sys/fs/cgroup", None) == tmpfs, result.stdout + result.stderr
    assert found, result.stdout
    assert set(found.values()) == {hierarchies}, found


def test_several_atime_options_resolve_as_mount_2_resolves_them(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """runc passes every atime flag to mount(2), whatever their order, and the kernel takes
    strictatime over noatime over relatime; galley let relatime win over both."""
    data = tmp_path / "data"
    data.mkdir()
    bundle.config["mounts"] += [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["strictatime", "relatime"]},
        {"destination": "/data", "type": "bind", "source": str(data),
         "options": ["rbind", "noatime", "relatime"]},
    ]  # fmt: skip
    bundle.config["process"]["args"] = [
        "sh", "-c", "awk '$5 == \"/tmp\" || $5 == \"/data\" {print $5, $6}' /proc/self/mountinfo",
    ]  # fmt: skip
    result = run_bundle(any_runtime, bundle)
    assert result.stdout.splitlines() == ["/tmp rw", "/data rw,noatime"]


def test_the_missing_parents_of_a_file_bind_are_0755(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """A file mounted where its directories are missing (a config file at /etc/app/conf):
    the parents are made 0755 as runc makes them; galley gave them the file's 0644, and a
    non-root process could not reach its own config."""
    conf = tmp_path / "conf"
    conf.write_text("setting\n")
    os.chmod(tmp_path, 0o755)
    bundle.config["mounts"].append(
        {"destination": "/etc/app/sub/conf", "type": "bind", "source": str(conf),
         "options": ["bind", "ro"]}
    )  # fmt: skip
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["process"]["args"] = [
        "sh", "-c", "stat -c '%n %a' /etc/app /etc/app/sub; cat /etc/app/sub/conf",
    ]  # fmt: skip
    result = run_bundle(any_runtime, bundle)
    assert result.stdout.splitlines() == ["/etc/app 755", "/etc/app/sub 755", "setting"]


def test_a_missing_directory_climbed_out_of_by_dotdot_is_not_made(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """Destinations through missing directories and back out ("/run/new/../b"): runc makes
    only what the path ends in; galley made /run/new too (and a tmpfs mounted there later
    took that directory's 0755 instead of its own 1777)."""
    bundle.config["mounts"] += [
        {"destination": "/run/new/../b", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/run/x/y/../../z", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/run/p/q/../r", "type": "tmpfs", "source": "tmpfs"},
    ]
    bundle.config["process"]["args"] = ["sh", "-c", "ls /run /run/p"]
    result = run_bundle(any_runtime, bundle)
    assert result.stdout.split() == ["/run:", "b", "p", "z", "/run/p:", "r"]


def test_a_bind_over_the_root_becomes_the_root(
    any_runtime: Runtime, bundle: Bundle, tmp_path: Path
) -> None:
    """mounts[] may cover "/" itself (runc builds the rest in what covers it and pivots into
    it); galley refused it: "cannot mount over the container's root directory"."""
    other = tmp_path / "other"
    subprocess.run(["cp", "-a", str(bundle.rootfs), str(other)], check=True)
    (other / "marker").write_text("other root\n")
    cover = {"destination": "/", "type": "bind", "source": str(other), "options": ["rbind"]}
    bundle.config["mounts"].insert(0, cover)
    bundle.config["process"]["args"] = ["sh", "-c", "cat /marker; ls /proc/self/ns/pid"]
    result = run_bundle(any_runtime, bundle)
    assert result.stdout == "other root\n/proc/self/ns/pid\n"


def test_a_tmpfs_over_the_root_with_tmpcopyup(any_runtime: Runtime, bundle: Bundle) -> None:
    """A tmpfs over "/" filled from the rootfs: the container writes into the tmpfs only."""
    bundle.config["root"]["readonly"] = False
    cover = {"destination": "/", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
    bundle.config["mounts"].insert(0, cover)
    script = (
        "echo new > /written && cat /written && awk '$5 == \"/\" {print $9}' /proc/self/mountinfo"
    )
    bundle.config["process"]["args"] = ["sh", "-c", script]
    result = run_bundle(any_runtime, bundle)
    assert result.stdout.split() == ["new", "tmpfs"]
    assert not (bundle.rootfs / "written").exists()


def test_proc_over_the_root_is_refused(any_runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["mounts"].insert(0, {"destination": "/", "type": "proc", "source": "proc"})
    run_bundle(any_runtime, bundle, status=1)


def test_a_symlinked_proc_is_refused_in_runcs_words(any_runtime: Runtime, bundle: Bundle) -> None:
    """runc's mask.bats matches "must be mounted on ordinary directory"."""
    (bundle.rootfs / "proc").rmdir()
    os.symlink("/symlink", bundle.rootfs / "proc")
    result = run_bundle(any_runtime, bundle, status=1)
    assert "must be mounted on ordinary directory" in result.stderr, result.stderr


@pytest.mark.skipif(
    not any(" - cgroup " in line for line in open("/proc/self/mountinfo")),  # noqa: SIM115
    reason="no v1 cgroup hierarchy: /sys/fs/cgroup is no tmpfs of the runtime's",
)
def test_the_v1_cgroup_tmpfs_takes_the_mode_of_sysfs_s_directory(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """As runc's tmpfs mounts do (difffuzz seed 21): a writable cgroup mount's tmpfs is
    sysfs's 555, so the container's root, without CAP_DAC_OVERRIDE, cannot write to it."""
    mounts = bundle.config["mounts"]
    cgroup = next(m for m in mounts if m["destination"] == "/sys/fs/cgroup")
    cgroup["options"] = ["rw", "nosuid", "noexec", "nodev"]
    bundle.config["process"]["args"] = [
        "sh", "-c", "stat -c %a /sys/fs/cgroup; touch /sys/fs/cgroup/x 2>/dev/null || echo denied"
    ]  # fmt: skip
    assert run_bundle(any_runtime, bundle).stdout.split() == ["555", "denied"]


@pytest.mark.parametrize("user_namespace", [False, True])
def test_a_listed_ptmx_is_still_the_devpts_link(
    any_runtime: Runtime, open_bundle: Bundle, user_namespace: bool
) -> None:
    """podman --privileged lists every host device, /dev/ptmx (5:2) too: it is left to the
    link to the container's devpts, as runc leaves it. In a user namespace galley bound the
    host's ptmx there, and the link could not replace that mount point ("device or resource
    busy")."""
    bundle = open_bundle
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/ptmx", "type": "c", "major": 5, "minor": 2, "fileMode": 0o666},
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666},
    ]
    if user_namespace:
        in_user_namespace(bundle)
    script = "readlink /dev/ptmx; grep -c ' /dev/ptmx ' /proc/self/mountinfo; test -c /dev/fuse"
    bundle.config["process"]["args"] = ["sh", "-c", script]
    result = any_runtime("run", "--bundle", str(bundle.write()), any_runtime.new_id())
    assert (result.returncode, result.stdout) == (0, "pts/ptmx\n0\n"), result.stderr


def test_a_device_the_host_lacks_in_a_user_namespace_is_refused_saying_why(
    any_runtime: Runtime, open_bundle: Bundle
) -> None:
    """A user namespace cannot make device nodes, so the host's node at the same path is bound
    (as runc does): a device renamed in the container (podman --device /dev/zero:/dev/z)
    has none. Both runtimes refuse it; galley-runc says why."""
    bundle = open_bundle
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/galley-renamed-zero", "type": "c", "major": 1, "minor": 5},
    ]
    in_user_namespace(bundle)
    cid = any_runtime.new_id()
    result = any_runtime("run", "--bundle", str(bundle.write()), cid)
    assert result.returncode == 1
    assert "/dev/galley-renamed-zero" in result.stderr
    if any_runtime.binary != RUNTIMES.get("runc"):
        assert "the host has no node there to bind" in result.stderr, result.stderr
    assert any_runtime("state", cid).returncode == 1


def test_stdio_on_the_hosts_dev_null_is_the_containers_own(
    any_runtime: Runtime, bundle: Bundle
) -> None:
    """A detached container's stdio on the host's /dev/null is moved to the container's
    /dev/null, as runc moves it: the same node, where the host's would be a file of the
    host's /dev. (A foreground runc gives the container pipes instead.)"""
    script = "stat -L -c %F:%t,%T:%d:%i /proc/self/fd/0 /dev/null > /stdio"
    bundle.config["process"]["args"] = ["sh", "-c", script]
    bundle.config["linux"]["maskedPaths"] = []
    cid = any_runtime.detached(bundle)
    wait_status(any_runtime, cid, "stopped")
    stdin, null = (bundle.rootfs / "stdio").read_text().splitlines()
    assert stdin == null and null.startswith("character special file:1,3:")
    host = os.stat("/dev/null")
    assert not null.endswith(f":{host.st_dev}:{host.st_ino}")


@pytest.mark.parametrize(
    ("kind", "options"), [("tmpfs", []), ("tmpfs", ["mode=700", "ro"]), ("proc", ["nosuid"])]
)
def test_a_mount_without_a_source_has_an_empty_one(
    any_runtime: Runtime, bundle: Bundle, kind: str, options: list[str]
) -> None:
    """mount(2) with source "" as runc makes it; galley-runc named the type instead where it
    makes the filesystem with fsopen (a read-only tmpfs, which mounts inside it need; mutfuzz
    seed 7). /proc/mounts shows the source, and tools that read it see what runc gives."""
    bundle.config["mounts"].append({"destination": "/mnt", "type": kind, "options": options})
    bundle.config["process"]["args"] = ["sh", "-c", "grep ' /mnt ' /proc/self/mountinfo"]
    line = run_bundle(any_runtime, bundle).stdout
    assert line.split(" - ")[1].startswith(f"{kind}  "), line  # the type, then "" as source


@pytest.mark.parametrize(
    "options",
    [["rbind", "rro", "rrw"], ["rbind", "rnoexec", "rexec"], ["rbind", "rnosuid", "rsuid"]],
    ids=["rro-rrw", "rnoexec-rexec", "rnosuid-rsuid"],
)
def test_a_recursive_restriction_then_its_undoing_keeps_the_restriction(
    bundle: Bundle, tmp_path: Path, options: list[str]
) -> None:
    """A bind of a host directory with a submount, "rro" then "rrw" (or noexec, nosuid):
    runc gathers the recursive options and the restriction holds on every mount of the tree;
    galley let the last one win, and the container wrote through the bind (session 39)."""
    host = tmp_path / "host"
    (host / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(host / "sub")], check=True)
    try:
        bundle.config["mounts"].append(
            {"destination": "/mnt", "type": "bind", "source": str(host), "options": options}
        )
        script = "cat /proc/self/mountinfo"
        galley = normalised(seen("galley", bundle, tmp_path, script))
        runc = normalised(seen("runc", bundle, tmp_path, script))
    finally:
        subprocess.run(["umount", "-R", str(host / "sub")], check=True)
    flag = {"rrw": "ro", "rexec": "noexec", "rsuid": "nosuid"}[options[-1]]
    for point in ("/mnt", "/mnt/sub"):
        ours = next(entry for entry in galley if entry[0] == point)
        theirs = next(entry for entry in runc if entry[0] == point)
        assert flag in ours[1].split(","), ours
        assert ours[1] == theirs[1], (ours, theirs)
