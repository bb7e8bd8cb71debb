"""setup_rootfs on a busybox bundle in fresh namespaces, checked from inside the container."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci.conftest import Bundle, Runtime
from tests.oci.rootfs_harness import FAILED, host_mounts, mountinfo, run_in_rootfs

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def host_unchanged() -> Iterator[None]:
    """Every test leaves the host's mount table exactly as it found it."""
    before = host_mounts()
    yield
    assert host_mounts() == before


def run(bundle: Bundle, script: str, **kw: object) -> str:
    result = run_in_rootfs(bundle.path, bundle.config, script, **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_default_spec_mounts(bundle: Bundle) -> None:
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo"))
    assert table["/"]["root"].endswith("/rootfs")
    assert table["/proc"]["fstype"] == "proc"
    dev = table["/dev"]
    assert dev["fstype"] == "tmpfs"
    assert "nosuid" in dev["options"]
    assert "mode=755" in dev["super"]
    assert table["/dev/pts"]["fstype"] == "devpts"
    assert "ptmxmode=666" in table["/dev/pts"]["super"]
    assert table["/dev/shm"]["options"].startswith("rw,nosuid,nodev,noexec")
    assert table["/dev/mqueue"]["fstype"] == "mqueue"
    assert table["/sys"]["fstype"] == "sysfs"
    assert table["/sys"]["options"].startswith("ro,")
    assert table["/sys/fs/cgroup"]["options"].startswith("ro,")
    # Nothing of the host's tree is left reachable after pivot_root.
    assert all(not point.startswith(str(bundle.path)) for point in table)


def test_default_devices_and_links(bundle: Bundle) -> None:
    out = run(bundle, "ls -ln /dev | sed 's/  */ /g'")
    lines = {line.split()[-1] if "->" not in line else line.split()[-3]: line for line in
             out.splitlines() if line and not line.startswith("total")}  # fmt: skip
    for name, numbers in {
        "null": "1, 3",
        "zero": "1, 5",
        "full": "1, 7",
        "random": "1, 8",
        "urandom": "1, 9",
        "tty": "5, 0",
    }.items():
        assert lines[name].startswith("crw-rw-rw- 1 0 0"), lines[name]
        assert numbers in lines[name]
    assert lines["ptmx"].endswith("ptmx -> pts/ptmx")
    assert lines["fd"].endswith("fd -> /proc/self/fd")
    assert lines["stdin"].endswith("-> /proc/self/fd/0")
    assert lines["stderr"].endswith("-> /proc/self/fd/2")
    assert ("core" in lines) == os.path.exists("/proc/kcore")
    assert run(bundle, "echo hi > /dev/null && head -c 4 /dev/zero | wc -c").strip() == "4"


def test_masked_and_readonly_paths(bundle: Bundle) -> None:
    out = run(
        bundle,
        "cat /proc/keys | wc -c; ls /proc/acpi | wc -l; ls /sys/firmware | wc -l;"
        " echo 1 > /proc/sys/kernel/ns_last_pid && echo WROTE; touch /proc/acpi/x && echo MADE;"
        " true",
    )
    assert out.split() == ["0", "0", "0"]
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo"))
    assert table["/proc/sys"]["options"].startswith("ro")
    assert (
        table["/proc/acpi"]["options"].startswith("ro") and table["/proc/acpi"]["fstype"] == "tmpfs"
    )


def test_root_readonly(bundle: Bundle) -> None:
    bundle.config["root"]["readonly"] = True
    out = run(bundle, "touch /newfile 2>&1; echo x > /dev/shm/ok && cat /dev/shm/ok")
    assert "Read-only file system" in out
    assert out.strip().endswith("x")
    assert not (bundle.rootfs / "newfile").exists()


def test_no_pivot(bundle: Bundle) -> None:
    out = run(bundle, "cat /proc/self/mountinfo; ls /", no_pivot=True)
    table = mountinfo(out)
    assert table["/"]["root"].endswith("/rootfs")
    assert "busybox" not in out.split() and "bin" in out.split()


def test_bind_mounts_of_dirs_and_files(bundle: Bundle, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "hello").write_text("hi from host\n")
    (tmp_path / "file.txt").write_text("single file\n")
    bundle.config["mounts"] += [
        {"destination": "/deep/in/data", "type": "bind", "source": str(tmp_path / "data"),
         "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]},
        {"destination": "/etc/new/file.txt", "source": str(tmp_path / "file.txt"),
         "options": ["bind"]},
    ]  # fmt: skip
    out = run(
        bundle,
        "cat /deep/in/data/hello /etc/new/file.txt; touch /deep/in/data/x 2>&1;"
        " grep -E ' /(deep|etc/new)' /proc/self/mountinfo",
    )
    assert "hi from host" in out and "single file" in out
    assert "Read-only file system" in out
    table = mountinfo(out)
    assert table["/deep/in/data"]["options"].startswith("ro,nosuid,nodev,noexec")
    assert table["/etc/new/file.txt"]["options"].startswith("rw")
    assert (bundle.rootfs / "etc/new/file.txt").is_file()
    assert (bundle.rootfs / "deep/in/data").is_dir()


def test_recursive_readonly_and_plain_ro(bundle: Bundle) -> None:
    # Sources relative to the bundle; rootfs/a gets a submount first (mounts apply in order).
    bundle.config["mounts"] += [
        {"destination": "/a", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/a/sub", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/rro", "source": "rootfs/a", "options": ["rbind", "rro"]},
        {"destination": "/ro", "source": "rootfs/a", "options": ["rbind", "ro"]},
    ]
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo"))
    assert table["/rro"]["options"].startswith("ro")
    assert table["/rro/sub"]["options"].startswith("ro")
    assert table["/ro"]["options"].startswith("ro")
    assert table["/ro/sub"]["options"].startswith("rw")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["noatime", "nodiratime"], {"noatime", "nodiratime"}),
        (["strictatime"], set()),
        (["relatime", "sync", "dirsync"], {"relatime", "sync", "dirsync"}),
        (["ro", "nosuid", "nodev", "noexec"], {"ro", "nosuid", "nodev", "noexec"}),
        (["nosymfollow"], {"nosymfollow"}),
        (["lazytime", "mode=700", "size=1m"], set()),
    ],
)
def test_tmpfs_flag_options(bundle: Bundle, options: list[str], expected: set[str]) -> None:
    bundle.config["mounts"].append(
        {"destination": "/opts", "type": "tmpfs", "source": "tmpfs", "options": options}
    )
    entry = mountinfo(run(bundle, "cat /proc/self/mountinfo"))["/opts"]
    flags = set(entry["options"].split(",")) | set(entry["super"].split(","))
    assert expected <= flags
    if "strictatime" in options:
        assert not {"relatime", "noatime"} & flags
    if "mode=700" in options:
        assert "mode=700" in entry["super"] and "size=1024k" in entry["super"]


def test_bind_atime_and_rw_clearing(bundle: Bundle, tmp_path: Path) -> None:
    bundle.config["mounts"] += [
        {"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "noexec"]},
        {"destination": "/y", "source": "rootfs/x", "options": ["bind", "rw", "exec", "noatime"]},
    ]
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo"))
    assert table["/x"]["options"].startswith("ro,") and "noexec" in table["/x"]["options"]
    assert table["/y"]["options"].startswith("rw,")
    assert "noexec" not in table["/y"]["options"] and "noatime" in table["/y"]["options"]


@pytest.mark.parametrize(
    ("option", "tag"),
    [("rshared", "shared:"), ("shared", "shared:"), ("private", ""), ("unbindable", "unbindable")],
)
def test_mount_propagation_options(bundle: Bundle, option: str, tag: str) -> None:
    bundle.config["mounts"].append(
        {"destination": "/p", "type": "tmpfs", "source": "tmpfs", "options": [option]}
    )
    entry = mountinfo(run(bundle, "cat /proc/self/mountinfo"))["/p"]
    if tag:
        assert tag in entry["optional"]
    else:
        assert entry["optional"] == ""


@pytest.mark.parametrize(("propagation", "tag"), [("rshared", "shared:"), ("rprivate", "")])
def test_rootfs_propagation(bundle: Bundle, propagation: str, tag: str) -> None:
    bundle.config["linux"]["rootfsPropagation"] = propagation
    entry = mountinfo(run(bundle, "cat /proc/self/mountinfo"))["/"]
    assert (tag in entry["optional"]) if tag else ("shared:" not in entry["optional"])


def test_sysctl_and_idempotent_reapply(bundle: Bundle) -> None:
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048"}
    out = run(bundle, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni")
    assert out.split() == ["1", "2048"]


def test_linux_devices(bundle: Bundle) -> None:
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600,
         "uid": 1000, "gid": 1001},
        {"path": "/dev/sub/loop9", "type": "b", "major": 7, "minor": 9},
        {"path": "/dev/pipe", "type": "p"},
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640},
        {"path": "/dev/slash/", "type": "b", "major": 7, "minor": 8},  # as runc: cleaned
    ]  # fmt: skip
    out = run(
        bundle, "ls -ln /dev/fuse /dev/sub/loop9 /dev/pipe /dev/null /dev/slash | sed 's/  */ /g'"
    )
    lines = {line.split()[-1]: line for line in out.splitlines()}
    assert lines["/dev/slash"].startswith("brw-rw-rw- 1 0 0 7, 8")
    assert lines["/dev/fuse"].startswith("crw------- 1 1000 1001 10, 229")
    assert lines["/dev/sub/loop9"].startswith("brw-rw-rw- 1 0 0 7, 9")
    assert lines["/dev/pipe"].startswith("prw-rw-rw-")
    assert lines["/dev/null"].startswith("crw-r----- 1 0 0 1, 3")


def test_user_namespace_binds_devices(bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    devpts = bundle.config["mounts"][2]
    devpts["options"] = [o for o in devpts["options"] if o != "gid=5"]  # as `runc spec --rootless`
    out = run(
        bundle,
        "cat /proc/self/mountinfo; echo hi > /dev/null && echo NULLOK",
        unshare=("--user", "--map-root-user", "--pid", "--fork", "--net", "--ipc", "--uts"),
    )
    table = mountinfo(out)
    assert table["/dev/null"]["source"] in {"udev", "devtmpfs"} or table["/dev/null"]["root"] in {
        "/null",
        "/dev/null",
    }
    assert "NULLOK" in out


def test_sysfs_without_network_namespace_is_host_bind(bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"] = [
        ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "network"
    ]
    out = run(bundle, "cat /proc/self/mountinfo", unshare=("--pid", "--fork"))
    table = mountinfo(out)
    assert table["/sys"]["fstype"] == "sysfs" and table["/sys"]["options"].startswith("ro")
    assert "/sys/fs/cgroup" in table


def test_dev_bind_mount_skips_device_creation(bundle: Bundle, tmp_path: Path) -> None:
    devdir = tmp_path / "mydev"
    devdir.mkdir()
    (devdir / "marker").write_text("")
    bundle.config["mounts"][1] = {"destination": "/dev", "source": str(devdir),
                                  "options": ["rbind"]}  # fmt: skip
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] == "/dev"
                               or not m["destination"].startswith("/dev/")]  # fmt: skip
    bundle.config["linux"]["maskedPaths"] = []
    out = run(bundle, "ls /dev")
    assert out.split() == ["marker"]


def test_console_is_bound(bundle: Bundle) -> None:
    master, slave = os.openpty()
    try:
        out = run(bundle, "stat -c '%t:%T' /dev/console", console=os.ttyname(slave))
        st = os.stat(os.ttyname(slave))
        assert out.strip() == f"{os.major(st.st_rdev):x}:{os.minor(st.st_rdev):x}"
    finally:
        os.close(master)
        os.close(slave)


def test_mounts_file_shows_tree_before_pivot(bundle: Bundle, tmp_path: Path) -> None:
    dump = tmp_path / "mounts"
    run(bundle, "true", mounts_file=str(dump))
    table = mountinfo(dump.read_text())
    assert str(bundle.rootfs / "dev/pts") in table
    assert (bundle.rootfs / "dev").exists()


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ({"destination": "/x", "type": "tmpfs", "source": "t", "options": ["bogus=1"]},
         "mounts[7] '/x': mount tmpfs t on "),
        ({"destination": "/x", "type": "bind", "source": "/nonexistent/src"},
         "mounts[7] '/x': bind source '/nonexistent/src' does not exist"),
        ({"destination": "/proc/self/attr", "type": "tmpfs", "source": "t"},
         "cannot be mounted inside /proc"),
        ({"destination": "/proc", "type": "tmpfs", "source": "t"}, "not of type proc"),
    ],
)  # fmt: skip
def test_bad_mounts_fail_with_named_field(
    bundle: Bundle, mount: dict[str, object], message: str
) -> None:
    bundle.config["mounts"].append(mount)
    result = run_in_rootfs(bundle.path, bundle.config, "true")
    assert result.returncode == FAILED
    assert message in result.stderr


def test_bad_rootfs_propagation(bundle: Bundle) -> None:
    bundle.config["linux"]["rootfsPropagation"] = "sideways"
    result = run_in_rootfs(bundle.path, bundle.config, "true")
    assert result.returncode == FAILED
    assert "linux.rootfsPropagation: unknown propagation 'sideways'" in result.stderr


def test_a_destination_through_a_long_dangling_symlink_is_made(bundle: Bundle) -> None:
    """/run is the image's symlink to a missing path of 100 components: the mount's
    directories are all made inside the root (the walk's budget was the destination's own
    length, and the create failed; runc makes them)."""
    (bundle.rootfs / "run").rmdir()
    deep = "/".join(f"d{i}" for i in range(100))
    os.symlink("/" + deep, bundle.rootfs / "run")
    bundle.config["mounts"].append(
        {"destination": "/run/secrets", "type": "tmpfs", "source": "tmpfs", "options": []}
    )
    result = run_in_rootfs(bundle.path, bundle.config, "grep -c ' /" + deep + "/secrets ' "
                           "/proc/self/mountinfo")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
    assert (bundle.rootfs / deep / "secrets").is_dir()


def test_tmpcopyup_copies_the_covered_directory(bundle: Bundle) -> None:
    etc = bundle.rootfs / "etc"
    (etc / "sub").mkdir()
    (etc / "sub" / "deep.txt").write_text("deep\n")
    os.chmod(etc / "sub" / "deep.txt", 0o640)
    os.chown(etc / "sub" / "deep.txt", 1234, 5678)
    os.symlink("../passwd", etc / "sub" / "link")
    bundle.config["mounts"].append(
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
         "options": ["tmpcopyup", "ro", "mode=755"]}
    )  # fmt: skip
    out = run(
        bundle,
        "grep ' /etc ' /proc/self/mountinfo; cat /etc/sub/deep.txt; readlink /etc/sub/link;"
        " stat -c '%a %u %g' /etc/sub/deep.txt; head -1 /etc/passwd; touch /etc/x 2>&1; true",
    )
    lines = out.splitlines()
    assert " - tmpfs " in lines[0] and " ro," in lines[0]
    assert lines[1:5] == ["deep", "../passwd", "640 1234 5678", "root:x:0:0:root:/root:/bin/sh"]
    assert "Read-only file system" in lines[5]


SWAP_ONCE_MOUNTED = """
from galley.kernel import mount as k
from galley.oci import mounts
shared = os.path.join(sys.argv[3], "rootfs", "shared")
swapped = []
def swap(source):
    if source == "racing" and not swapped:  # what a container sharing /shared could do
        swapped.append(1)
        os.rename(os.path.join(shared, "sub"), os.path.join(shared, "sub.moved"))
        os.symlink("/etc", os.path.join(shared, "sub"))
real_mount, real_new = k.mount, mounts.new_filesystem
def mount(source, *args):
    real_mount(source, *args)
    swap(source)
def new_filesystem(kind, source, *args):
    tree = real_new(kind, source, *args)
    swap(source)
    return tree
k.mount, mounts.new_filesystem = mount, new_filesystem
"""


def test_tmpcopyup_never_looks_its_destination_up_again(bundle: Bundle) -> None:
    """A tmpfs with tmpcopyup under a directory another container shares: once the tmpfs
    existed, galley looked its destination up again to copy into it, and a swap to a
    symlink meanwhile sent the copy elsewhere in the root (found by a review, raced for real)."""
    sub = bundle.rootfs / "shared" / "sub"
    sub.mkdir(parents=True)
    (sub / "marker").write_text("copied\n")
    bundle.config["mounts"].append(
        {"destination": "/shared/sub", "type": "tmpfs", "source": "racing",
         "options": ["tmpcopyup", "rnosuid"]}
    )  # fmt: skip
    result = run_in_rootfs(
        bundle.path, bundle.config, "cat /shared/sub.moved/marker", prelude=SWAP_ONCE_MOUNTED
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "copied\n"  # into the tmpfs, on the directory it was made for
    assert not (bundle.rootfs / "etc" / "marker").exists()


def test_tmpcopyup_copies_a_tree_deeper_than_the_recursion_limit(bundle: Bundle) -> None:
    bundle.config["mounts"].append(
        {"destination": "/deep", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
    )
    try:
        _deep_tree(bundle.rootfs / "deep", 1100)
        script = "grep -c ' /deep ' /proc/self/mountinfo; cat /deep/" + "d/" * 1100 + "bottom"
        assert run(bundle, script).split() == ["1", "reached"]
    finally:  # rm walks without recursion; pytest's own cleanup (shutil.rmtree) would not
        subprocess.run(["rm", "-rf", str(bundle.rootfs / "deep")], check=True)


def test_tmpcopyup_copies_a_directory_wider_than_the_open_file_limit(bundle: Bundle) -> None:
    """600 subdirectories under a limit of 256 open files: each waited its turn with two fds
    open, and the create failed with EMFILE (session 39's review; runc copies it)."""
    wide = bundle.rootfs / "wide"
    for i in range(600):
        (wide / f"d{i}").mkdir(parents=True)
    (wide / "d599" / "last").write_text("copied\n")
    bundle.config["mounts"].append(
        {"destination": "/wide", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
    )
    result = run_in_rootfs(
        bundle.path,
        bundle.config,
        "ls /wide | wc -l; cat /wide/d599/last",
        prelude="import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["600", "copied"]


def _deep_tree(top: Path, depth: int) -> None:
    """top/d/d/.../d/bottom, depth levels, made one level at a time (makedirs recurses)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = below
        bottom = os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(bottom, b"reached\n")
        os.close(bottom)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("covered", "options", "mode"),
    [
        (0o700, [], "700"),
        (0o755, ["mode=1777"], "755"),
        (None, ["mode=750"], "750"),
        (0o750, ["ro"], "750"),  # the mode first, then read-only
    ],
)
def test_a_tmpfs_takes_the_mode_of_the_directory_it_covers(
    any_runtime: Runtime, bundle: Bundle, covered: int | None, options: list[str], mode: str
) -> None:
    """As runc: an image's 0700 directory did not become a world-writable 1777 tmpfs."""
    if covered is not None:
        (bundle.rootfs / "covered").mkdir()
        os.chmod(bundle.rootfs / "covered", covered)
    bundle.config["mounts"].append(
        {"destination": "/covered", "type": "tmpfs", "source": "tmpfs", "options": options}
    )
    bundle.config["process"]["args"] = ["stat", "-c", "%a", "/covered"]
    result = any_runtime("run", "-b", str(bundle.write()), any_runtime.new_id())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == mode


def test_dev_readonly_after_devices(bundle: Bundle) -> None:
    bundle.config["mounts"][1]["options"].append("ro")
    bundle.config["mounts"].append({"destination": "/rw", "type": "tmpfs", "source": "t",
                                    "options": ["ro"]})  # fmt: skip
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo; ls /dev/null"))
    assert table["/dev"]["options"].startswith("ro,")
    assert table["/rw"]["options"].startswith("ro,")


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_idmapped_bind(bundle: Bundle, tmp_path: Path, option: str) -> None:
    data = tmp_path / "idmapped"
    data.mkdir()
    (data / "mine").write_text("")
    os.chown(data / "mine", 0, 0)
    (data / "theirs").write_text("")
    os.chown(data / "theirs", 7, 8)
    bundle.config["mounts"].append(
        {"destination": "/idm", "type": "bind", "source": str(data), "options": ["rbind", option],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
         "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]}
    )  # fmt: skip
    out = run(
        bundle, "stat -c '%n %u %g' /idm/mine /idm/theirs; grep ' /idm ' /proc/self/mountinfo"
    )
    lines = out.splitlines()
    assert lines[:2] == ["/idm/mine 1000 2000", "/idm/theirs 1007 2008"]
    assert "idmapped" in lines[2]
    assert (data / "mine").stat().st_uid == 0  # the files themselves are untouched


@pytest.mark.parametrize(("option", "below"), [("idmap", "0 0"), ("ridmap", "1000 2000")])
def test_only_ridmap_idmaps_the_submounts_of_an_rbind(
    bundle: Bundle, tmp_path: Path, option: str, below: str
) -> None:
    """The runtime-spec's `idmap` maps the bind's own mount and `ridmap` its submounts too;
    an rbind copies the submounts either way (runc's idmap.bats: "child mounts were not
    remapped")."""
    data = tmp_path / "tree"
    (data / "sub").mkdir(parents=True)
    (data / "top").write_text("")
    subprocess.run(["mount", "-t", "tmpfs", "galley-test", str(data / "sub")], check=True)
    try:
        (data / "sub" / "file").write_text("")
        bundle.config["mounts"].append(
            {"destination": "/idm", "type": "bind", "source": str(data),
             "options": ["rbind", option],
             "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
             "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}]}
        )  # fmt: skip
        out = run(bundle, "stat -c '%u %g' /idm/top /idm/sub/file")
        assert out.splitlines() == ["1000 2000", below]
    finally:
        subprocess.run(["umount", str(data / "sub")], check=True)


def test_cgroup_mount_without_cgroup_namespace_binds_own_cgroup(bundle: Bundle) -> None:
    bundle.config["linux"]["namespaces"] = [
        ns for ns in bundle.config["linux"]["namespaces"] if ns["type"] != "cgroup"
    ]
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo"))
    with open("/proc/self/cgroup") as own:
        paths = {line.split(":")[1]: line.strip().split(":", 2)[2] for line in own}
    cgroup_mounts = {p: e for p, e in table.items() if e["fstype"] in {"cgroup", "cgroup2"}}
    assert cgroup_mounts
    for point, entry in cgroup_mounts.items():
        assert entry["options"].startswith("ro,")
        if entry["fstype"] == "cgroup" and point.endswith("/memory"):
            assert entry["root"] == paths["memory"]  # our own cgroup, not the hierarchy's root


def test_rshared_bind_propagates_back_to_host(bundle: Bundle, tmp_path: Path) -> None:
    """Kubernetes' Bidirectional: a mount made in the container under an rshared bind of a
    shared host mount shows up on the host; the rootfs's own mounts do not."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "galley-test", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        bundle.config["linux"]["rootfsPropagation"] = "rshared"
        bundle.config["mounts"].append(
            {"destination": "/s", "source": str(shared), "options": ["rbind", "rshared"]}
        )
        # the runtime's mount namespace keeps the host's propagation (as runc's does)
        keep = ("--propagation", "unchanged", "--pid", "--fork", "--net", "--ipc", "--uts")
        run(bundle, "mkdir /s/inner && mount -t tmpfs from-container /s/inner", unshare=keep)
        with open("/proc/self/mountinfo") as mountinfo_file:
            host = mountinfo(mountinfo_file.read())
        assert host[str(shared / "inner")]["source"] == "from-container"
        assert not any(point.startswith(str(bundle.rootfs)) for point in host)
    finally:
        subprocess.run(["umount", "-R", str(shared)], check=True)


def test_bad_device_names_it(bundle: Bundle) -> None:
    bundle.config["linux"]["devices"] = [{"path": "/dev/x", "type": "q", "major": 1, "minor": 1}]
    result = run_in_rootfs(bundle.path, bundle.config, "true")
    assert result.returncode == FAILED
    assert "linux.devices[0].type: unknown device type 'q'" in result.stderr


def test_missing_cwd_is_created_even_with_readonly_root(bundle: Bundle) -> None:
    bundle.config["process"]["cwd"] = "/work/here"
    bundle.config["root"]["readonly"] = True
    assert run(bundle, "cd /work/here && pwd").strip() == "/work/here"
    assert (bundle.rootfs / "work" / "here").is_dir()


def test_sysfs_of_a_foreign_netns_is_not_replaced_by_our_sys(bundle: Bundle) -> None:
    """The spec asks for a network namespace of its own, but the one the root is built in
    belongs to the host's user namespace: mounting sysfs is refused, and our /sys (another
    network namespace's devices) does not stand in for it. (galley-runc's stage makes the
    network namespace, or premade_filesystems the sysfs, so it never comes to this.)"""
    bundle.config["linux"]["namespaces"].append({"type": "user"})
    devpts = bundle.config["mounts"][2]
    devpts["options"] = [o for o in devpts["options"] if o != "gid=5"]
    keep_netns = ("--user", "--map-root-user", "--pid", "--fork", "--ipc", "--uts")
    result = run_in_rootfs(bundle.path, bundle.config, "true", unshare=keep_netns)
    assert result.returncode != 0
    assert "'/sys'" in result.stderr and "operation not permitted" in result.stderr


def test_remount_changes_an_earlier_mount(bundle: Bundle) -> None:
    bundle.config["mounts"] += [
        {"destination": "/r", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/r", "type": "tmpfs", "source": "tmpfs",
         "options": ["remount", "ro", "nosuid"]},
        {"destination": "/s", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        {"destination": "/s", "type": "tmpfs", "source": "tmpfs",
         "options": ["remount", "size=2m"]},
    ]  # fmt: skip
    table = mountinfo(run(bundle, "cat /proc/self/mountinfo"))
    assert table["/r"]["options"].startswith("ro,nosuid")
    assert "size=2048k" in table["/s"]["super"]
