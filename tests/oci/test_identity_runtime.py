"""process.user and process.rlimits through `run`, galley-runc and runc side by side."""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.fixtures.busybox import make_rootfs
from galley.oci.spec import Process, User
from tests.oci.conftest import Bundle, Runtime, run_bundle
from tests.oci.process_probe import shared_root_bundle

pytestmark = pytest.mark.root

SCRIPT = (
    "grep -E '^(Uid|Gid|Groups|Umask):' /proc/self/status; echo HOME=$HOME; ulimit -n; ulimit -Hn"
)


def run(
    rt: Runtime, tmp_path: Path, rootfs: Path, process: Process
) -> subprocess.CompletedProcess[str]:
    bundle = shared_root_bundle(tmp_path, rootfs, ["sh", "-c", SCRIPT])
    bundle.config["process"].update(process)
    return rt("run", "--bundle", str(bundle.write()), rt.new_id())


def test_user_groups_umask_home_and_nofile(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    process: Process = {
        "user": {"uid": 65534, "gid": 65534, "additionalGids": [5, 7], "umask": 0o077},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 99, "hard": 512}],
    }
    result = run(any_runtime, tmp_path, busybox_rootfs, process)
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines == [
        "Umask: 0077",
        "Uid: 65534 65534 65534 65534",
        "Gid: 65534 65534 65534 65534",
        "Groups: 5 7",
        "HOME=/nonexistent",
        "99",
        "512",
    ]


def test_defaults_root_umask_0022(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    result = run(
        any_runtime, tmp_path, busybox_rootfs, {"user": {"uid": 0, "gid": 0}, "rlimits": []}
    )
    assert result.returncode == 0, result.stderr
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[:5] == ["Umask: 0022", "Uid: 0 0 0 0", "Gid: 0 0 0 0", "Groups:", "HOME=/root"]


@pytest.mark.parametrize("command", ["run", "exec"])
def test_an_empty_home_is_filled_in_as_a_missing_one(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, command: str
) -> None:
    """ "HOME=" (podman passes it to an exec whose user has no home) counts as no HOME: the
    user's home from /etc/passwd, or "/" without an entry, as runc sets it."""
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, ["sh", "-c", "echo $HOME"])
    process = bundle.config["process"]
    process["env"] = [*process["env"], "HOME="]
    if command == "run":
        result = any_runtime("run", "--bundle", str(bundle.write()), any_runtime.new_id())
        assert (result.returncode, result.stdout) == (0, "/root\n"), result.stderr
        return
    process["args"] = ["sleep", "60"]
    cid = any_runtime.detached(bundle)
    for user, home in (("0", "/root"), ("1234", "/")):
        exec_ = ["exec", "-u", user, "--env", "HOME=", cid, "sh", "-c", "echo $HOME"]
        result = any_runtime(*exec_)
        assert (result.returncode, result.stdout) == (0, f"{home}\n"), result.stderr


def test_raising_the_hard_rlimit_fails_create(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit to exceed")
    process: Process = {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1}]}
    result = run(any_runtime, tmp_path, busybox_rootfs, process)
    if result.returncode == 0:
        pytest.skip("this host's root may raise hard limits (CAP_SYS_RESOURCE)")
    assert result.returncode == 1
    assert "operation not permitted" in result.stderr.lower()


@pytest.fixture(scope="module")
def open_rootfs() -> Iterator[Path]:
    """A busybox rootfs that a user namespace's root (host uid 100000) can reach: pytest's
    temporary directories are 0700."""
    top = Path(tempfile.mkdtemp(prefix="galley-userns-", dir="/tmp"))
    top.chmod(0o755)
    yield make_rootfs(top / "rootfs")
    shutil.rmtree(top)


def userns_bundle(tmp_path: Path, rootfs: Path, user: User) -> Bundle:
    bundle = shared_root_bundle(tmp_path, rootfs, ["sh", "-c", SCRIPT])
    linux = bundle.config["linux"]
    linux["namespaces"].append({"type": "user"})
    linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.config["mounts"] = [
        m for m in bundle.config["mounts"] if m["type"] not in ("cgroup", "sysfs")
    ]
    bundle.config["process"]["user"] = user
    return bundle


def test_user_namespace_ids(any_runtime: Runtime, tmp_path: Path, open_rootfs: Path) -> None:
    user: User = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6]}
    bundle = userns_bundle(tmp_path, open_rootfs, user)
    result = run_bundle(any_runtime, bundle)
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert lines[1:4] == ["Uid: 1000 1000 1000 1000", "Gid: 1000 1000 1000 1000", "Groups: 5 6"]


def test_user_namespace_unmapped_uid_fails(
    any_runtime: Runtime, tmp_path: Path, open_rootfs: Path
) -> None:
    bundle = userns_bundle(tmp_path, open_rootfs, {"uid": 70000, "gid": 0})
    result = run_bundle(any_runtime, bundle, status=1)
    assert "unmapped" in result.stderr or "not mapped" in result.stderr
