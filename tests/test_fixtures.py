"""The busybox fixtures build what the other tests rely on."""

from __future__ import annotations

import json
import os
from pathlib import Path

from galley.fixtures.busybox import make_bundle


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
