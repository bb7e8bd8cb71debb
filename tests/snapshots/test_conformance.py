"""The snapshotter conformance suite, run against overlayfs and native with real mounts."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.snapshots import open_snapshotter
from galley.snapshots.api import Snapshotter
from galley.snapshots.native import NativeSnapshotter
from galley.snapshots.overlay import OverlaySnapshotter
from galley.snapshots.testsuite import BEHAVIOURS, Harness

pytestmark = pytest.mark.root

FACTORIES = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
@pytest.mark.parametrize("snapshotter", sorted(FACTORIES))
def test_conformance(snapshotter: str, behaviour: str, tmp_path: Path) -> None:
    with Harness.open(FACTORIES[snapshotter], str(tmp_path)) as h:
        BEHAVIOURS[behaviour](h)
    assert mounts_under(tmp_path) == []


def test_overlay_mount_shapes(tmp_path: Path) -> None:
    sn = OverlaySnapshotter(str(tmp_path))
    try:
        (base,) = sn.prepare("k")
        assert (base.type, base.options) == ("bind", ("rw", "rbind"))
        sn.commit("l1", "k")
        sn.prepare("k2", "l1")
        sn.commit("l2", "k2")
        (active,) = sn.prepare("c", "l2")
        assert active.type == "overlay"
        lower = next(o for o in active.options if o.startswith("lowerdir="))
        assert lower == f"lowerdir={tmp_path}/snapshots/2/fs:{tmp_path}/snapshots/1/fs"
        assert "index=off" in active.options
        (one,) = sn.view("v1", "l1")
        assert (one.type, one.source, one.options) == (
            "bind",
            f"{tmp_path}/snapshots/1/fs",
            ("ro", "rbind"),
        )
        (two,) = sn.view("v2", "l2")
        assert two.type == "overlay" and not any(o.startswith("upperdir") for o in two.options)
    finally:
        sn.close()


def test_open_snapshotter_by_name(tmp_path: Path) -> None:
    sn = open_snapshotter("native", str(tmp_path))
    assert isinstance(sn, Snapshotter)
    assert sn.root == str(tmp_path / "snapshots" / "native")
    sn.close()
    with pytest.raises(ValueError, match="zfs"):
        open_snapshotter("zfs", str(tmp_path))
