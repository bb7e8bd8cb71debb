"""Mount: options split into mount(2) flags and filesystem data; binds remounted; rollback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galley.kernel import mount as kmount
from galley.snapshots.api import Mount, mount_all


def test_options_split_into_flags_and_data() -> None:
    m = Mount("overlay", "overlay", ("ro", "nosuid", "lowerdir=/a:/b", "index=off", "nodev"))
    flags, data = m.flags_and_data()
    assert flags == kmount.MS_RDONLY | kmount.MS_NOSUID | kmount.MS_NODEV
    assert data == "lowerdir=/a:/b,index=off"
    assert Mount("none", "/x", ("ro", "rw")).flags_and_data() == (0, "")
    assert Mount("none", "/x", ("rbind",)).is_bind and Mount("bind", "/x").is_bind


def mounted(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split()[4] == str(path)]


@pytest.mark.root
def test_read_only_bind_is_remounted(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    Mount("bind", str(src), ("ro", "nosuid", "rbind")).mount(str(target))
    try:
        options = mounted(target)[0].split()[5].split(",")
        assert "ro" in options and "nosuid" in options
        with pytest.raises(OSError, match="Read-only"):
            (target / "f").write_text("x")
    finally:
        Mount.unmount(str(target))
    assert mounted(target) == []


@pytest.mark.root
def test_mount_all_undoes_what_it_did_on_failure(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    good = Mount("bind", str(src), ("rbind",))
    bad = Mount("overlay", "overlay", (f"lowerdir={tmp_path}/missing",))
    with pytest.raises(OSError, match="mount overlay"):
        mount_all([good, bad], str(target))
    assert mounted(target) == []
    assert os.listdir(target) == []
