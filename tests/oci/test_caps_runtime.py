"""Capabilities and noNewPrivileges through `run`, galley-runc and runc side by side."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.kernel import caps as kcaps
from galley.oci.defaults import DEFAULT_CAPS
from tests.oci.conftest import Bundle, Runtime, run_bundle
from tests.oci.process_probe import set_file_caps, shared_root_bundle

pytestmark = pytest.mark.root

STATUS = ["cat", "/proc/self/status"]
SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def run_status(rt: Runtime, bundle: Bundle) -> dict[str, str]:
    return status_fields(run_bundle(rt, bundle).stdout)


def status_fields(text: str) -> dict[str, str]:
    """/proc/<pid>/status as a dict."""
    fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
    return {k: v.strip() for k, v in fields.items()}


def names(status: dict[str, str], field: str) -> list[str]:
    return kcaps.names_of(int(status[field], 16))


def test_default_config(any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path) -> None:
    """runc's default: ambient listed without inheritable (skipped), root gets the bounding set."""
    status = run_status(any_runtime, shared_root_bundle(tmp_path, busybox_rootfs, STATUS))
    for field in ("CapPrm", "CapEff", "CapBnd"):
        assert names(status, field) == sorted(
            DEFAULT_CAPS, key=lambda cap: kcaps.CAPABILITY_NUMBERS[cap]
        )
    assert names(status, "CapInh") == names(status, "CapAmb") == []
    assert status["NoNewPrivs"] == "1"


def test_root_with_no_new_privileges_keeps_its_sets_narrower_than_bounding(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    """Without no_new_privs, root's execve raises permitted to the bounding set; with it, the
    process keeps the permitted and effective sets it was given. (galley-runc once let the
    trampoline's own execve raise them, so CAP_SYS_ADMIN in bounding alone became effective.)"""
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, STATUS)
    process = bundle.config["process"]
    process["noNewPrivileges"] = True
    process["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"],
        "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL"],
    }
    status = run_status(any_runtime, bundle)
    for field in ("CapPrm", "CapEff"):  # root's execve makes effective its permitted set
        assert names(status, field) == ["CAP_KILL", "CAP_NET_BIND_SERVICE"], field
    assert status["NoNewPrivs"] == "1"


def test_every_set_as_a_non_root_user(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, STATUS)
    process = bundle.config["process"]
    process["user"] = {"uid": 1000, "gid": 1000}
    process["noNewPrivileges"] = False
    process["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_TIME"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL", "CAP_NET_RAW"],
    }
    status = run_status(any_runtime, bundle)
    assert names(status, "CapBnd") == ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_TIME"]
    assert names(status, "CapInh") == ["CAP_KILL", "CAP_NET_RAW"]
    for field in ("CapAmb", "CapPrm", "CapEff"):  # after execve, a non-root user keeps ambient
        assert names(status, field) == ["CAP_KILL", "CAP_NET_RAW"]
    assert status["NoNewPrivs"] == "0"


def test_unknown_capability_is_warned_about_and_ignored(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    """runtime-spec: a capability that cannot be mapped MUST be logged as a warning and
    SHOULD NOT fail the container; runc's warning, whether the name looks like one or not
    ("kill" is no CAP_KILL; crun's unknown-caps test)."""
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, STATUS)
    unknown = ["CAP_LAST_OF_THE_MOHICANS", "UNKNOWN_CAP", "kill"]
    bundle.config["process"]["capabilities"] = {
        k: ["CAP_KILL", *unknown] for k in ("bounding", "effective", "permitted")
    }
    result = run_bundle(any_runtime, bundle)
    assert names(status_fields(result.stdout), "CapBnd") == ["CAP_KILL"]
    warning = f"ignoring unknown or unavailable capabilities: [{' '.join(sorted(unknown))}]"
    assert warning in result.stderr


def test_a_capability_the_runtime_lacks_is_warned_about_and_dropped(
    runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    """galley-runc without CAP_SYS_TIME in its own bounding set (a restricted environment;
    this test VM lacks CAP_SYS_RESOURCE so): the runtime-spec says SHOULD NOT fail, so the
    container runs without it, with runc's warning (runc 1.1 fails the capset)."""
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, STATUS)
    bundle.config["process"]["capabilities"] = {
        k: ["CAP_KILL", "CAP_SYS_TIME"] for k in ("bounding", "effective", "permitted")
    }
    cid = runtime.new_id()
    runtime.created.append(cid)
    time_cap = kcaps.CAPABILITY_NUMBERS["CAP_SYS_TIME"]
    result = subprocess.run(
        [runtime.binary, "--root", str(runtime.root), "run", "-b", str(bundle.write()), cid],
        check=False, capture_output=True, text=True, timeout=30,
        preexec_fn=lambda: kcaps.bounding_drop(time_cap),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status = status_fields(result.stdout)
    for field in ("CapBnd", "CapPrm", "CapEff"):
        assert names(status, field) == ["CAP_KILL"], field
    assert "ignoring unknown or unavailable capabilities: [CAP_SYS_TIME]" in result.stderr


@pytest.fixture
def file_cap_dir() -> Iterator[Path]:
    """A host dir with busybox copied as `cat`, carrying file capability cap_kill+ep."""
    path = Path(tempfile.mkdtemp(prefix="galley-fcap-", dir="/tmp"))
    path.chmod(0o755)
    shutil.copy2("/bin/busybox", path / "cat")
    set_file_caps(path / "cat", ["CAP_KILL"], effective=True)
    yield path
    shutil.rmtree(path)


@pytest.mark.parametrize(("nnp", "expected"), [(True, []), (False, ["CAP_KILL"])])
def test_no_new_privileges_blocks_file_capabilities(
    any_runtime: Runtime,
    tmp_path: Path,
    busybox_rootfs: Path,
    file_cap_dir: Path,
    nnp: bool,
    expected: list[str],
) -> None:
    bundle = shared_root_bundle(tmp_path, busybox_rootfs, ["/var/cat", "/proc/self/status"])
    bundle.config["mounts"].append(
        {
            "destination": "/var",
            "type": "bind",
            "source": str(file_cap_dir),
            "options": ["rbind", "ro"],
        }
    )
    process = bundle.config["process"]
    process["user"] = {"uid": 1000, "gid": 1000}
    process["noNewPrivileges"] = nnp
    process["capabilities"] = {"bounding": list(DEFAULT_CAPS)}
    status = run_status(any_runtime, bundle)
    assert names(status, "CapEff") == expected
    assert names(status, "CapPrm") == expected
    assert os.stat(file_cap_dir / "cat").st_size > 0
