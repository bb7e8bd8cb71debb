"""process.capabilities: the name table, and the five sets seen by a real program after execve."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from galley.errors import FailedPrecondition
from galley.kernel import caps as kcaps
from galley.oci.capabilities import (
    ALL_CAPABILITIES,
    apply_capabilities,
    unavailable,
    unknown_capabilities,
)
from galley.oci.defaults import DEFAULT_CAPS
from galley.oci.identity import apply_user
from tests.oci.process_probe import BUSYBOX, Probe, run_child

pytestmark = pytest.mark.root

STATUS = [BUSYBOX, "cat", "/proc/self/status"]


@pytest.mark.skipif(shutil.which("capsh") is None, reason="capsh (libcap2-bin) is not installed")
def test_names_match_libcap() -> None:
    """Every number decodes to the same name in capsh (libcap), up to CAP_CHECKPOINT_RESTORE."""
    assert len(ALL_CAPABILITIES) == 41 and kcaps.CAPABILITY_NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    for number, name in enumerate(ALL_CAPABILITIES):
        out = subprocess.run(
            ["capsh", f"--decode={1 << number:x}"], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip().endswith(f"={name.lower()}"), (number, out)


def test_unavailable_is_unknown_past_cap_last_cap_or_outside_our_bounding_set() -> None:
    """Checked in a child that dropped CAP_SYS_TIME from its own bounding set: a runtime in a
    restricted environment cannot grant what it lacks."""
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    past = set(ALL_CAPABILITIES[last + 1 :])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            kcaps.bounding_drop(kcaps.CAPABILITY_NUMBERS["CAP_SYS_TIME"])
            found = unavailable({"CAP_KILL", "CAP_SYS_TIME", "CAP_NOPE", *past})
            os.write(write, " ".join(sorted(found)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as reply:
        found = set(reply.read().split())
    os.waitpid(pid, 0)
    assert found == {"CAP_SYS_TIME", "CAP_NOPE", *past}


def mask(names: list[str]) -> str:
    return f"{kcaps.mask_of(names):016x}"


def warnings_to_stderr() -> None:
    """In the child: send the capability module's warnings to fd 2 (pytest owns the root logger)."""
    logger = logging.getLogger("galley.oci.capabilities")
    logger.addHandler(logging.StreamHandler(open(2, "w", buffering=1, closefd=False)))  # noqa: SIM115
    logger.propagate = False


def probe_caps(tmp_path: Path, caps: dict[str, Any], uid: int | None = None) -> Probe:
    def setup() -> None:
        warnings_to_stderr()
        if uid is not None:
            apply_user({"uid": uid, "gid": uid})
        apply_capabilities(caps)  # type: ignore[arg-type]

    probe = run_child(setup, STATUS, tmp_path)
    assert probe.status == 0, probe.stderr
    return probe


def test_all_five_sets_as_non_root(tmp_path: Path) -> None:
    """uid 1000 has no file-cap magic: after execve, permitted = ambient (inheritable ∩ ...)."""
    caps = {
        "bounding": [*DEFAULT_CAPS, "CAP_CHOWN"],
        "effective": list(DEFAULT_CAPS),
        "permitted": list(DEFAULT_CAPS),
        "inheritable": list(DEFAULT_CAPS),
        "ambient": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
    }
    probe = probe_caps(tmp_path, caps, uid=1000)
    assert probe.field("Uid").split() == ["1000"] * 4
    assert probe.field("CapBnd") == mask([*DEFAULT_CAPS, "CAP_CHOWN"])
    assert probe.field("CapInh") == mask(DEFAULT_CAPS)
    assert probe.field("CapAmb") == mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert probe.field("CapPrm") == mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"])
    assert probe.field("CapEff") == mask(["CAP_KILL", "CAP_NET_BIND_SERVICE"])


def test_root_gets_its_bounding_set(tmp_path: Path) -> None:
    caps = {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    probe = probe_caps(tmp_path, caps)
    for field in ("CapBnd", "CapPrm", "CapEff"):
        assert probe.field(field) == mask(DEFAULT_CAPS)
    assert probe.field("CapInh") == probe.field("CapAmb") == "0" * 16


def test_no_capabilities_at_all(tmp_path: Path) -> None:
    probe = probe_caps(tmp_path, {})
    for field in ("CapBnd", "CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert probe.field(field) == "0" * 16


def test_caps_survive_the_uid_switch(tmp_path: Path) -> None:
    """Effective is cleared by the kernel on setuid; apply_capabilities brings it back."""

    def setup() -> None:
        apply_user({"uid": 1000, "gid": 1000})
        apply_capabilities(
            {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}
        )
        os.write(1, f"Python: {kcaps.capget().effective:x}\n".encode())

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    assert probe.status == 0, probe.stderr
    assert probe.field("Python") == f"{kcaps.mask_of(['CAP_KILL']):x}"


def test_unknown_names_are_ignored_with_a_warning(tmp_path: Path) -> None:
    caps = {k: ["CAP_KILL", "CAP_NOT_A_THING"] for k in ("bounding", "effective", "permitted")}
    probe = probe_caps(tmp_path, caps)
    assert probe.field("CapBnd") == mask(["CAP_KILL"])
    assert "ignoring unknown or unavailable capabilities: ['CAP_NOT_A_THING']" in probe.stderr


def test_ambient_without_inheritable_is_skipped_quietly(tmp_path: Path) -> None:
    """runc's default config lists ambient caps but no inheritable ones: runc 1.1 says nothing."""
    caps = {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted", "ambient")}
    caps["inheritable"] = ["CAP_KILL"]
    probe = probe_caps(tmp_path, caps, uid=1000)
    assert probe.field("CapAmb") == mask(["CAP_KILL"])
    assert probe.stderr == ""


def test_effective_outside_permitted_fails_with_a_clear_error(tmp_path: Path) -> None:
    def setup() -> None:
        try:
            apply_capabilities(
                {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": []}
            )
        except FailedPrecondition as e:
            os.write(1, f"Error: {e}\n".encode())

    probe = run_child(setup, [BUSYBOX, "true"], tmp_path)
    assert "process.capabilities" in probe.field("Error")
    assert "CAP_KILL" in probe.field("Error")


def test_unknown_capabilities_for_the_runtime_warning() -> None:
    caps = {
        "bounding": ["CAP_KILL", "CAP_ZED"],
        "ambient": ["CAP_ALPHA", "CAP_ZED"],
        "effective": None,
    }
    assert unknown_capabilities(caps) == ["CAP_ALPHA", "CAP_ZED"]  # type: ignore[arg-type]
    assert unknown_capabilities({}) == []
