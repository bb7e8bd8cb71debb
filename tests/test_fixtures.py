"""The busybox fixtures build what the other tests rely on."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from galley.fixtures.busybox import make_bundle
from galley.fixtures.processes import cgroup_mounts, remove_cgroup_everywhere
from galley.oci.cgroups.layout import detect


def test_bundle_has_hardlinked_applets_and_config(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b", ["echo", "hi"])
    busybox = bundle / "rootfs" / "bin" / "busybox"
    ls = bundle / "rootfs" / "bin" / "ls"
    assert not ls.is_symlink()
    assert os.stat(ls).st_ino == os.stat(busybox).st_ino
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["echo", "hi"]
    assert config["root"]["path"] == "rootfs"
    assert oct(os.stat(bundle / "rootfs" / "tmp").st_mode & 0o7777) == "0o1777"


def test_remove_cgroup_everywhere_takes_every_hierarchy_and_what_is_under_it() -> None:
    name = f"/galley-test-fixtures-{os.getpid()}"
    made = [f"{mount}{name}" for mount in cgroup_mounts()]
    for top in made:
        os.makedirs(f"{top}/child")
    try:
        found = remove_cgroup_everywhere(name, deadline=0)
        assert sorted(found) == sorted(made)
        assert not [top for top in made if os.path.exists(top)]
        assert remove_cgroup_everywhere(name, deadline=0) == []
    finally:
        for top in made:
            for directory in (f"{top}/child", top):
                if os.path.isdir(directory):
                    os.rmdir(directory)


def test_remove_cgroup_everywhere_thaws_a_frozen_cgroup_to_end_what_is_in_it() -> None:
    """A frozen process does not die of SIGKILL until thawed (v1's freezer)."""
    layout = detect()
    hierarchy = layout.v1.get("freezer") or layout.unified
    assert hierarchy is not None
    name = f"/galley-test-frozen-{os.getpid()}"
    directory = f"{hierarchy.mount}{name}"
    freeze, frozen, thawed = (
        ("freezer.state", "FROZEN", "THAWED")
        if hierarchy is not layout.unified  # v1
        else ("cgroup.freeze", "1", "0")
    )
    os.mkdir(directory)
    sleeper = subprocess.Popen(["sleep", "100"])
    try:
        Path(directory, "cgroup.procs").write_text(str(sleeper.pid))
        Path(directory, freeze).write_text(frozen)
        assert remove_cgroup_everywhere(name, time.monotonic() + 2, [hierarchy.mount]) == [
            directory
        ]
        assert not os.path.exists(directory)
        assert sleeper.wait(timeout=5) == -9
    finally:
        if os.path.isdir(directory):  # the fixture failed: thawed, or the kill would wait
            Path(directory, freeze).write_text(thawed)
        sleeper.kill()
        sleeper.wait()
        if os.path.isdir(directory):
            os.rmdir(directory)
