"""linux.seccomp through `run`, galley-runc and runc side by side."""

from __future__ import annotations

import errno
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.oci.conftest import Runtime
from tests.oci.process_probe import shared_root_bundle

pytestmark = pytest.mark.root

SCRIPT = "mkdir /tmp/x; echo mkdir=$?; kill -0 $$; echo kill0=$?; kill -18 $$; echo kill18=$?"


def run_script(
    rt: Runtime,
    tmp_path: Path,
    rootfs: Path,
    seccomp: dict[str, Any],
    nnp: bool = True,
    args: tuple[str, ...] = ("sh", "-c", SCRIPT),
) -> Any:
    bundle = shared_root_bundle(tmp_path, rootfs, list(args))
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle.config["linux"]["seccomp"] = seccomp
    bundle.config["process"]["noNewPrivileges"] = nnp
    return rt("run", "--bundle", str(bundle.write()), rt.new_id())


def rules(*syscalls: dict[str, Any], default: str = "SCMP_ACT_ALLOW") -> dict[str, Any]:
    return {
        "defaultAction": default,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": list(syscalls),
    }


@pytest.mark.parametrize("nnp", [True, False])
def test_errno_rule_and_argument_conditions(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, nnp: bool
) -> None:
    seccomp = rules(
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
        {
            "names": ["kill"],
            "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}],
        },
        {"names": ["not_a_syscall_at_all"], "action": "SCMP_ACT_ERRNO"},
    )
    result = run_script(any_runtime, tmp_path, busybox_rootfs, seccomp, nnp)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mkdir=1", "kill0=1", "kill18=0"]
    assert "Function not implemented" in result.stderr


def test_kill_action_ends_the_container_with_sigsys(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    seccomp = rules({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"})
    result = run_script(any_runtime, tmp_path, busybox_rootfs, seccomp, args=("mkdir", "/tmp/x"))
    assert result.returncode == 128 + signal.SIGSYS
    assert result.stdout == ""


def test_bad_seccomp_config_fails_create(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path
) -> None:
    seccomp = rules({"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"})
    result = run_script(any_runtime, tmp_path, busybox_rootfs, seccomp)
    assert result.returncode == 1
    assert "SCMP_ACT_EXPLODE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
