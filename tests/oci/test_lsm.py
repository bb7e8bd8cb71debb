"""AppArmor and SELinux labels: written to the process's exec attribute through the host's
procfs, never through whatever the container put at /proc; mountLabel as a mount context.

This host has neither LSM, so the kernel refuses every write with EINVAL: these tests show
that the label reaches the kernel's attribute file (it is not dropped), and that a fake
/proc cannot take the write instead (CVE-2025-52881). Whether the kernel then confines the
process needs a host with the LSM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galley.kernel import mount as k
from galley.kernel import ns
from galley.oci.lsm import Labels, mount_data
from galley.oci.spec import Process
from tests.oci.process_probe import BUSYBOX, SETUP_FAILED, run_child

pytestmark = pytest.mark.root

LSM_HOST = os.path.exists("/sys/kernel/security/apparmor") or os.path.exists("/sys/fs/selinux")
needs_no_lsm = pytest.mark.skipif(LSM_HOST, reason="the host has an LSM: writes may succeed")


def test_mount_label_becomes_the_context_of_fresh_filesystems() -> None:
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    assert mount_data("mode=755", "tmpfs", label) == f'mode=755,context="{label}"'
    assert mount_data("", "devpts", label) == f'context="{label}"'
    for kind in ("proc", "sysfs", "mqueue", "cgroup", "bind"):
        assert mount_data("ro", kind, label) == "ro"
    assert mount_data("mode=755", "tmpfs", "") == "mode=755"


def test_no_labels_touch_nothing() -> None:
    labels = Labels({"args": ["true"]})
    labels.apply()  # no attribute opened, nothing written
    labels.key_label(True)
    assert not labels.exec_needs_own_file
    labels.close()


@needs_no_lsm
@pytest.mark.parametrize(
    ("process", "field"),
    [
        ({"apparmorProfile": "galley-test"}, "process.apparmorProfile"),
        ({"selinuxLabel": "system_u:system_r:container_t:s0"}, "process.selinuxLabel"),
    ],
)
def test_the_label_reaches_the_exec_attribute(tmp_path: Path, process: Process, field: str) -> None:
    probe = run_child(lambda: Labels(process).apply(), [BUSYBOX, "true"], tmp_path)
    assert probe.status == SETUP_FAILED
    assert f"{field}: writing /proc/thread-self/attr/exec: Invalid argument" in probe.stderr


@needs_no_lsm
def test_a_fake_proc_cannot_take_the_write(tmp_path: Path) -> None:
    fake = tmp_path / "fakeproc"
    (fake / "thread-self" / "attr").mkdir(parents=True)
    decoy = fake / "thread-self" / "attr" / "exec"
    decoy.write_text("")

    def setup() -> None:
        labels = Labels({"selinuxLabel": "system_u:system_r:spc_t:s0"})  # before the mount
        ns.unshare(ns.CLONE_NEWNS)
        k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
        k.mount(str(fake), "/proc", None, k.MS_BIND)  # what a hostile rootfs could do
        labels.apply()

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    assert decoy.read_text() == ""  # the path-based write would have "succeeded" here
    assert probe.status == SETUP_FAILED
    assert "process.selinuxLabel: writing /proc/thread-self/attr/exec" in probe.stderr
