"""A hostile container with runc's default capabilities, through `run`, galley-runc and runc side
by side: every privileged operation outside the default set fails with EPERM, and the control
container that keeps the capability succeeds at the same operation."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.oci.defaults import DEFAULT_CAPS
from tests.oci.conftest import Runtime, run_bundle
from tests.oci.process_probe import shared_root_bundle

pytestmark = pytest.mark.root

# (busybox command line, the capability that would allow it)
ATTEMPTS = {
    "mount": ("mount -t tmpfs none /tmp", "CAP_SYS_ADMIN"),
    "hostname": ("hostname evil", "CAP_SYS_ADMIN"),
    "mknod": ("mknod /tmp/null c 1 3", "CAP_MKNOD"),
    "chroot": ("chroot / true", "CAP_SYS_CHROOT"),
    "chown": ("chown 1:1 /tmp", "CAP_CHOWN"),
    "renice": ("renice -n -5 -p $$", "CAP_SYS_NICE"),
}


def attempt(rt: Runtime, tmp_path: Path, rootfs: Path, command: str, caps: list[str]) -> str:
    script = f"{command} 2>/dev/null; echo rc=$?"
    bundle = shared_root_bundle(tmp_path, rootfs, ["sh", "-c", script])
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    bundle.config["process"]["capabilities"] = {
        k: list(caps) for k in ("bounding", "effective", "permitted")
    }
    result = run_bundle(rt, bundle)
    return result.stdout.strip()


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_default_caps_refuse(
    any_runtime: Runtime, tmp_path: Path, busybox_rootfs: Path, name: str
) -> None:
    command, _ = ATTEMPTS[name]
    assert attempt(any_runtime, tmp_path, busybox_rootfs, command, list(DEFAULT_CAPS)) == "rc=1"


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_control_with_the_capability(
    tmp_path: Path, busybox_rootfs: Path, runtime: Runtime, name: str
) -> None:
    command, cap = ATTEMPTS[name]
    assert attempt(runtime, tmp_path, busybox_rootfs, command, [*DEFAULT_CAPS, cap]) == "rc=0"
