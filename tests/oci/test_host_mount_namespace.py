"""A container without a mount namespace inherits the runtime's (galley.oci.hostmounts).

Every runtime command here runs inside a throwaway mount namespace, held by a sleeping
process and entered with nsenter through a wrapper named like the runtime. What the
container mounts lands in that namespace, and a regression cannot touch this machine's
mounts. runc builds such a container the same way but leaves its mounts behind; galley
takes them down at delete and after a failed create.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.fixtures.busybox import default_config
from tests.oci.conftest import (
    Bundle,
    Runtime,
    create_held_before_its_state,
    create_in_files,
    in_namespace,
    mount_namespace,
    wait_status,
)
from tests.oci.test_conformance import is_galley, output_of

pytestmark = pytest.mark.root

NO_MOUNT_NS = [{"type": "pid"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}]


@pytest.fixture
def holder() -> Iterator[int]:
    """The pid of a process sleeping in a throwaway private mount namespace."""
    with mount_namespace() as pid:
        yield pid


@pytest.fixture
def inside(any_runtime: Runtime, holder: int, tmp_path: Path) -> Iterator[Runtime]:
    """any_runtime, run in the holder's mount namespace."""
    with in_namespace(any_runtime, holder, tmp_path / "wrap") as rt:
        yield rt


@pytest.fixture
def shared_bundle(bundle: Bundle) -> Bundle:
    bundle.config["linux"]["namespaces"] = list(NO_MOUNT_NS)
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "cgroup"]
    for key in ("maskedPaths", "readonlyPaths"):
        bundle.config["linux"].pop(key, None)
    return bundle


@pytest.fixture
def bundle_copy(tmp_path: Path, busybox_rootfs: Path) -> Bundle:
    """A second bundle, with the default config (a mount namespace of its own)."""
    path = tmp_path / "second"
    path.mkdir()
    subprocess.run(["cp", "-a", str(busybox_rootfs), str(path / "rootfs")], check=True)
    return Bundle(path=path, config=copy.deepcopy(default_config(["sleep", "60"])))


def built_at(rt: Runtime, cid: str, bundle: Bundle) -> Path:
    """Where the container's root is mounted in the runtime's namespace: galley attaches its
    rootfs clone in the state directory; runc mounts on the bundle's rootfs itself."""
    return rt.root / cid / "rootfs" if is_galley(rt) else bundle.path / "rootfs"


def mounts_under(holder: int, path: Path) -> list[str]:
    """Mount points at or under path in the holder's mount namespace."""
    found = []
    with open(f"/proc/{holder}/mountinfo") as mountinfo:
        for line in mountinfo:
            where = line.split()[4]
            if where == str(path) or where.startswith(f"{path}/"):
                found.append(where)
    return found


def root_line(holder: int) -> str:
    """The holder's "/" mount: its id, parent, flags and propagation fields."""
    with open(f"/proc/{holder}/mountinfo") as mountinfo:
        return next(line for line in mountinfo if line.split()[4] == "/")


def test_the_container_shares_the_runtime_mount_namespace(
    inside: Runtime, holder: int, shared_bundle: Bundle
) -> None:
    script = "ls /; test -c /dev/null && echo null-ok; grep -c proc /proc/self/mountinfo; sleep 60"
    shared_bundle.config["process"]["args"] = ["sh", "-c", script]
    root_before = root_line(holder)
    cid = inside.new_id()
    made = create_in_files(inside, shared_bundle, cid)
    assert made.returncode == 0, made.stderr
    inside("start", cid, check=True)
    pid = json.loads(inside("state", cid, check=True).stdout)["pid"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{holder}/ns/mnt")
    assert os.readlink(f"/proc/{pid}/ns/pid") != os.readlink(f"/proc/{holder}/ns/pid")
    deadline = time.monotonic() + 10
    while "null-ok" not in (out := output_of(shared_bundle)):
        assert time.monotonic() < deadline, out
        time.sleep(0.02)
    assert out.split()[:3] == ["bin", "dev", "etc"], out  # its own root, not the host's
    root = built_at(inside, cid, shared_bundle)
    assert f"{root}/proc" in mounts_under(holder, root)
    assert root_line(holder) == root_before  # "/" keeps its propagation
    inside("kill", cid, "KILL", check=True)
    wait_status(inside, cid, "stopped")
    inside("delete", cid, check=True)
    if is_galley(inside):
        assert mounts_under(holder, root) == []
        assert mounts_under(holder, shared_bundle.path) == []


def test_exec_enters_the_container_root(
    inside: Runtime, holder: int, shared_bundle: Bundle
) -> None:
    shared_bundle.config["process"]["args"] = ["sleep", "60"]
    (shared_bundle.path / "rootfs" / "only-in-the-container").write_text("here\n")
    cid = inside.new_id()
    assert create_in_files(inside, shared_bundle, cid).returncode == 0
    inside("start", cid, check=True)
    seen = inside("exec", cid, "cat", "/only-in-the-container")
    if is_galley(inside):
        assert (seen.returncode, seen.stdout) == (0, "here\n"), seen.stderr
    # runc 1.1 joins the namespaces only: its exec sees the runtime's root, not the container's
    assert inside("exec", cid, "test", "-d", "/proc/self").returncode == 0
    inside("delete", "--force", cid, check=True)


def test_a_failed_create_takes_its_mounts_down(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        missing = str(tmp_path / "no-such-source")
        shared_bundle.config["mounts"].append(
            {"destination": "/late", "type": "bind", "source": missing, "options": ["rbind"]}
        )
        rootfs = shared_bundle.path / "rootfs"
        cid = inside.new_id()
        made = create_in_files(inside, shared_bundle, cid)
        assert made.returncode == 1
        assert "no-such-source" in made.stderr
        assert mounts_under(holder, rootfs) == []
        assert mounts_under(holder, inside.root) == []
        assert inside("state", cid).returncode == 1


def test_rootfs_propagation_needs_a_mount_namespace(
    runtime: Runtime, shared_bundle: Bundle
) -> None:
    shared_bundle.config["linux"]["rootfsPropagation"] = "rshared"
    result = runtime("create", "--bundle", str(shared_bundle.write()), runtime.new_id())
    assert result.returncode == 1
    assert "linux.rootfsPropagation: needs a private mount namespace" in result.stderr


def test_a_user_namespace_needs_a_mount_namespace(runtime: Runtime, shared_bundle: Bundle) -> None:
    linux = shared_bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = linux["gidMappings"] = [
        {"containerID": 0, "hostID": 100000, "size": 65536}
    ]
    result = runtime("create", "--bundle", str(shared_bundle.write()), runtime.new_id())
    assert result.returncode == 1
    assert "linux.namespaces: a user namespace needs a mount namespace with it" in result.stderr


def test_masked_paths_need_a_mount_namespace(runtime: Runtime, shared_bundle: Bundle) -> None:
    shared_bundle.config["linux"]["maskedPaths"] = ["/proc/kcore"]
    result = runtime("create", "--bundle", str(shared_bundle.write()), runtime.new_id())
    assert result.returncode == 1
    assert "linux.maskedPaths: needs a private mount namespace" in result.stderr


def test_a_config_without_namespaces_inherits_them_all(
    inside: Runtime, holder: int, shared_bundle: Bundle
) -> None:
    """No linux.namespaces at all, as runtime-tools' linux_ns_itype asks: every one is the
    runtime's."""
    del shared_bundle.config["linux"]["namespaces"]
    shared_bundle.config.pop("hostname", None)
    script = "readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid"
    shared_bundle.config["process"]["args"] = ["sh", "-c", script]
    cid = inside.new_id()
    ran = inside("run", "--bundle", str(shared_bundle.write()), cid, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    ours = [os.readlink(f"/proc/{holder}/ns/{kind}") for kind in ("mnt", "pid")]
    assert ran.stdout.split() == ours
    if is_galley(inside):
        assert mounts_under(holder, inside.root) == []
        assert mounts_under(holder, shared_bundle.path) == []


def test_delete_force_after_a_killed_create_takes_its_mounts_down(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    shared_bundle.config["process"]["args"] = ["sleep", "60"]
    rootfs = shared_bundle.path / "rootfs"
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        cid = inside.new_id()
        root = built_at(inside, cid, shared_bundle)
        with create_held_before_its_state(inside, shared_bundle, cid, tmp_path):
            assert f"{root}/proc" in mounts_under(holder, root)
        assert inside("state", cid).returncode == 1
        inside("delete", "--force", cid, check=True)
        assert mounts_under(holder, root) == []
        assert mounts_under(holder, rootfs) == []
        assert not (inside.root / cid).exists()


def nested(holder: int, propagation: str) -> list[str]:
    """The argv prefix of a command run in a new mount namespace made from the holder's."""
    return [
        "nsenter",
        "-t",
        str(holder),
        "-m",
        "--",
        "unshare",
        "--mount",
        "--propagation",
        propagation,
    ]


def in_holder(holder: int, script: str) -> None:
    """Run a shell script in the holder's mount namespace."""
    subprocess.run(["nsenter", "-t", str(holder), "-m", "--", "sh", "-c", script], check=True)


def overlay_stand_in(holder: int, rootfs: Path) -> str:
    """A tmpfs on the rootfs path in the holder's namespace, as containerd's overlay would be
    (holding a copy of the rootfs); the line that identifies it in mountinfo."""
    in_holder(
        holder,
        f"cp -a {rootfs} {rootfs}.copy && mount -t tmpfs overlay-stand-in {rootfs} && "
        f"cp -a {rootfs}.copy/. {rootfs}/",
    )
    return "overlay-stand-in"


def sources_under(holder: int, path: Path) -> list[str]:
    with open(f"/proc/{holder}/mountinfo") as mountinfo:
        return [
            line.split(" - ")[1].split()[1]
            for line in mountinfo
            if line.split()[4] == str(path) or line.split()[4].startswith(f"{path}/")
        ]


def test_a_mount_already_on_the_rootfs_is_never_taken_down(
    inside: Runtime, holder: int, shared_bundle: Bundle
) -> None:
    """containerd mounts the image on the rootfs before create: a delete, a failed create and
    a delete --force after a killed one detach only what galley stacked on it."""
    rootfs = shared_bundle.path / "rootfs"
    overlay_stand_in(holder, rootfs)
    cid = inside.new_id()
    ran = inside("run", "--bundle", str(shared_bundle.write()), cid, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr
    shared_bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    failed = inside("run", "--bundle", str(shared_bundle.write()), inside.new_id())
    assert failed.returncode == 1
    if is_galley(inside):
        assert sources_under(holder, rootfs) == ["overlay-stand-in"]


def test_the_hosts_root_is_refused_as_a_rootfs(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    """root.path reaching "/" (here through a symlink) would put the container's mounts
    over the host's own /proc and /dev."""
    (shared_bundle.path / "to-root").symlink_to("/")
    shared_bundle.config["root"]["path"] = "to-root"
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        before = Path(f"/proc/{holder}/mountinfo").read_text()
        made = inside("create", "--bundle", str(shared_bundle.write()), inside.new_id())
        assert made.returncode == 1
        assert "is the host's root directory" in made.stderr
        assert Path(f"/proc/{holder}/mountinfo").read_text() == before


def test_a_rootfs_reached_through_a_symlink_and_dotdot_is_released(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    """The stage builds on the rootfs's real path: delete releases that one, and a mount on
    the lexical path is left alone."""
    real = tmp_path / "elsewhere" / "rootfs"
    real.parent.mkdir()
    (shared_bundle.path / "rootfs").rename(real)
    (tmp_path / "elsewhere" / "sub").mkdir()
    (shared_bundle.path / "link").symlink_to(tmp_path / "elsewhere" / "sub")
    (shared_bundle.path / "rootfs").mkdir()  # what normpath("link/../rootfs") names
    shared_bundle.config["root"]["path"] = "link/../rootfs"
    overlay_stand_in(holder, shared_bundle.path / "rootfs")
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        cid = inside.new_id()
        ran = inside("run", "--bundle", str(shared_bundle.write()), cid, stdin=subprocess.DEVNULL)
        assert ran.returncode == 0, ran.stderr
        assert mounts_under(holder, real) == []
        assert sources_under(holder, shared_bundle.path / "rootfs") == ["overlay-stand-in"]


def test_another_container_is_created_beside_one_without_a_mount_namespace(
    runtime: Runtime, holder: int, shared_bundle: Bundle, bundle_copy: Bundle, tmp_path: Path
) -> None:
    """The first container's cgroup mounts sit in the host's mount table: the cgroup layout
    must still be the host's /sys/fs/cgroup, not those."""
    shared_bundle.config["mounts"].append(
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        }
    )
    shared_bundle.config["process"]["args"] = ["sleep", "60"]
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        first = inside.new_id()
        assert create_in_files(inside, shared_bundle, first).returncode == 0
        root = built_at(inside, first, shared_bundle)
        # one mount per hierarchy under it (v1, hybrid), or the cgroup2 mount on it (pure v2)
        assert any(
            m.endswith("/sys/fs/cgroup") or "/sys/fs/cgroup/" in m
            for m in mounts_under(holder, root)
        )
        second = inside.new_id()
        made = create_in_files(inside, bundle_copy, second)
        assert made.returncode == 0, made.stderr
        inside("delete", "--force", second, check=True)
        inside("delete", "--force", first, check=True)
        assert mounts_under(holder, root) == []


def test_nothing_the_container_mounts_propagates_to_other_namespaces(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    """On a host whose mounts are shared (systemd's), another mount namespace that receives
    them gets at most the bare rootfs clone, none of the container's own mounts."""
    shared = tmp_path / "shared"
    shared.mkdir()
    in_holder(holder, f"mount --bind {shared} {shared} && mount --make-shared {shared}")
    peer = subprocess.Popen(
        [*nested(holder, "slave"), "sleep", "60"],
    )
    try:
        deadline = time.monotonic() + 5
        while os.readlink(f"/proc/{peer.pid}/ns/mnt") == os.readlink(f"/proc/{holder}/ns/mnt"):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        shared_bundle.config["process"]["args"] = ["sleep", "60"]
        with in_namespace(Runtime(runtime.binary, shared / "state"), holder, tmp_path / "w") as rt:
            cid = rt.new_id()
            assert create_in_files(rt, shared_bundle, cid).returncode == 0
            root = rt.root / cid / "rootfs"
            assert f"{root}/proc" in mounts_under(holder, root)
            assert [m for m in mounts_under(peer.pid, root) if m != str(root)] == []
            rt("delete", "--force", cid, check=True)
            assert mounts_under(peer.pid, root) == []
    finally:
        peer.kill()
        peer.wait()


def test_two_containers_on_one_rootfs_see_only_their_own_mounts(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("a's\n")
    (shared_bundle.path / "rootfs" / "secret").mkdir()
    shared_bundle.config["process"]["args"] = ["sleep", "60"]
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        volume = {
            "destination": "/secret",
            "type": "bind",
            "source": str(secret),
            "options": ["rbind"],
        }
        shared_bundle.config["mounts"].append(volume)
        a = inside.new_id()
        assert create_in_files(inside, shared_bundle, a).returncode == 0
        shared_bundle.config["mounts"].remove(volume)
        b = inside.new_id()
        assert create_in_files(inside, shared_bundle, b).returncode == 0
        for cid in (a, b):
            inside("start", cid, check=True)
        assert inside("exec", a, "cat", "/secret/key").stdout == "a's\n"
        assert inside("exec", b, "ls", "/secret").stdout == ""
        inside("delete", "--force", a, check=True)
        assert inside("exec", b, "test", "-d", "/proc/self").returncode == 0
        inside("delete", "--force", b, check=True)
        assert mounts_under(holder, inside.root) == []
        assert mounts_under(holder, shared_bundle.path) == []


def test_a_delete_from_another_mount_namespace_deletes_no_files(
    runtime: Runtime, holder: int, shared_bundle: Bundle, tmp_path: Path
) -> None:
    """There the rootfs clone is a copy with another mount id: delete must refuse, and never
    walk into it (it holds the bundle's files and the container's volumes)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "data").write_text("keep\n")
    (shared_bundle.path / "rootfs" / "vol").mkdir()
    shared_bundle.config["mounts"].append(
        {"destination": "/vol", "type": "bind", "source": str(volume), "options": ["rbind"]}
    )
    shared_bundle.config["process"]["args"] = ["sleep", "60"]
    files = sorted(p.name for p in (shared_bundle.path / "rootfs").iterdir())
    with in_namespace(runtime, holder, tmp_path / "wrap") as inside:
        cid = inside.new_id()
        assert create_in_files(inside, shared_bundle, cid).returncode == 0
        elsewhere = subprocess.run(
            [
                *nested(holder, "private"),
                runtime.binary,
                "--root",
                str(inside.root),
                "delete",
                "--force",
                cid,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert elsewhere.returncode == 1
        assert "not as the create that made it recorded" in elsewhere.stderr
        assert (volume / "data").read_text() == "keep\n"
        assert sorted(p.name for p in (shared_bundle.path / "rootfs").iterdir()) == files
        status = json.loads(inside("state", cid, check=True).stdout)["status"]
        assert status == "created"  # untouched, to delete from its own namespace
        inside("delete", "--force", cid, check=True)
        assert mounts_under(holder, inside.root) == []
        assert (volume / "data").read_text() == "keep\n"
