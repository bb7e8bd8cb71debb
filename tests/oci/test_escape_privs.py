"""Hostile processes under the default capability set: no way back to CAP_SYS_ADMIN, and no
privilege from setuid or file-capability binaries under noNewPrivileges.

Each test also runs the control case (the same binary without noNewPrivileges, or with the
capability kept), so a test that cannot fail would show up as a failing control.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galley.kernel import caps as kcaps
from galley.kernel import mount as kmount
from galley.oci.capabilities import apply_capabilities
from galley.oci.defaults import DEFAULT_CAPS
from galley.oci.identity import apply_user
from tests.oci.process_probe import BUSYBOX, run_child, set_file_caps

pytestmark = pytest.mark.root

DEFAULT = {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
SYS_ADMIN = kcaps.CAPABILITY_NUMBERS["CAP_SYS_ADMIN"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory uid 1000 can reach (pytest's tmp dirs are 0700), on a suid-capable mount."""
    path = Path(tempfile.mkdtemp(prefix="galley-escape-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def report(step: str, fn: Any, *args: Any) -> None:
    """Run fn(*args) in the child and print `step: ok` or `step: errno NAME`."""
    try:
        fn(*args)
        os.write(1, f"{step}: ok\n".encode())
    except OSError as e:
        os.write(1, f"{step}: {errno.errorcode.get(e.errno or 0, e.errno)}\n".encode())


def test_default_caps_cannot_mount_or_regain_sys_admin(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    every = (1 << (kcaps.last_cap() + 1)) - 1

    def hostile() -> None:
        apply_capabilities(DEFAULT)  # type: ignore[arg-type]
        report("mount", kmount.mount, "none", str(target), "tmpfs")
        report("capset", kcaps.capset, kcaps.CapSets(every, every, every))
        report("ambient", kcaps.ambient_raise, SYS_ADMIN)
        report("bounding", kcaps.bounding_has, SYS_ADMIN)
        os.write(1, f"has: {kcaps.bounding_has(SYS_ADMIN)}\n".encode())

    try:
        probe = run_child(hostile, [BUSYBOX, "true"], tmp_path)
    finally:
        if os.path.ismount(target):
            kmount.umount(str(target), kmount.MNT_DETACH)
    assert probe.status == 0, probe.stderr
    assert probe.stdout.splitlines() == [
        "mount: EPERM",
        "capset: EPERM",
        "ambient: EPERM",
        "bounding: ok",
        "has: False",
    ]


def test_control_with_sys_admin_can_mount(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    kept = {k: [*DEFAULT_CAPS, "CAP_SYS_ADMIN"] for k in ("bounding", "effective", "permitted")}

    def allowed() -> None:
        apply_capabilities(kept)  # type: ignore[arg-type]
        report("mount", kmount.mount, "none", str(target), "tmpfs")
        report("umount", kmount.umount, str(target))

    probe = run_child(allowed, [BUSYBOX, "true"], tmp_path)
    assert probe.stdout.split() == ["mount:", "ok", "umount:", "ok"]


def as_user_1000(nnp: bool, caps: dict[str, list[str]] = DEFAULT) -> Any:
    nnp_module = pytest.importorskip("galley.kernel.proc") if nnp else None

    def setup() -> None:
        apply_user({"uid": 1000, "gid": 1000})
        apply_capabilities(caps)  # type: ignore[arg-type]
        if nnp_module is not None:
            nnp_module.set_no_new_privs()

    return setup


def privileged_copy(shared_dir: Path, mode: int) -> str:
    path = shared_dir / "cat"
    shutil.copy2("/bin/cat", path)
    os.chown(path, 0, 0)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(("nnp", "euid"), [(True, "1000"), (False, "0")])
def test_setuid_root_binary_under_nnp(
    tmp_path: Path, shared_dir: Path, nnp: bool, euid: str
) -> None:
    cat = privileged_copy(shared_dir, 0o4755)
    probe = run_child(as_user_1000(nnp), [cat, "/proc/self/status"], tmp_path)
    assert probe.status == 0, probe.stderr
    assert probe.field("Uid").split() == ["1000", euid, euid, euid]
    # even the control case, root through setuid, stays inside the bounding set
    assert not int(probe.field("CapEff"), 16) & 1 << SYS_ADMIN


@pytest.mark.parametrize(("nnp", "expected"), [(True, []), (False, ["CAP_KILL"])])
def test_file_capabilities_under_nnp(
    tmp_path: Path, shared_dir: Path, nnp: bool, expected: list[str]
) -> None:
    """The process holds no capability (bounding keeps the defaults): only the file can grant."""
    cat = privileged_copy(shared_dir, 0o755)
    set_file_caps(cat, ["CAP_KILL"], effective=True)
    bounding_only = {"bounding": list(DEFAULT_CAPS)}
    probe = run_child(as_user_1000(nnp, bounding_only), [cat, "/proc/self/status"], tmp_path)
    assert probe.status == 0, probe.stderr
    assert kcaps.names_of(int(probe.field("CapEff"), 16)) == expected
    assert kcaps.names_of(int(probe.field("CapPrm"), 16)) == expected


def test_file_capability_outside_the_bounding_set_is_not_granted(
    tmp_path: Path, shared_dir: Path
) -> None:
    """The kernel refuses to exec an effective-bit binary it cannot give all its caps to."""
    cat = privileged_copy(shared_dir, 0o755)
    set_file_caps(cat, ["CAP_KILL", "CAP_SYS_ADMIN"], effective=True)
    probe = run_child(as_user_1000(False), [cat, "/proc/self/status"], tmp_path)
    assert probe.status == 126
    assert "PermissionError" in probe.stderr and "CapEff" not in probe.stdout
    set_file_caps(
        cat, ["CAP_KILL", "CAP_SYS_ADMIN"], effective=False
    )  # permitted only: exec works, SYS_ADMIN is masked
    probe = run_child(as_user_1000(False), [cat, "/proc/self/status"], tmp_path)
    assert probe.status == 0, probe.stderr
    assert kcaps.names_of(int(probe.field("CapPrm"), 16)) == ["CAP_KILL"]
