"""Inside a user namespace, overlay layers use user.overlay.* xattrs and mounts add userxattr."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

# Run in a new user+mount namespace (root mapped to root): apply a base layer and a layer that
# makes "etc" opaque, then mount the top through the snapshotter and list what shows.
CHILD = textwrap.dedent(
    """
    import io, json, os, sys
    from galley.fixtures.images import TarEntry, tar_layer
    from galley.images import mediatypes as mt
    from galley.images.unpack import apply_layer, layer_dirs
    from galley.snapshots.api import mount_all
    from galley.snapshots.overlay import OverlaySnapshotter, in_user_namespace

    home, target = sys.argv[1:3]
    sn = OverlaySnapshotter(home)
    layers = [
        [TarEntry("etc", "dir", mode=0o755), TarEntry("etc/old", data=b"o")],
        [TarEntry("etc", "dir", mode=0o755), TarEntry("etc/.wh..wh..opq"),
         TarEntry("etc/new", data=b"n")],
    ]
    parent = ""
    for i, entries in enumerate(layers):
        dest, lowers, whiteouts = layer_dirs(sn.prepare(f"k{i}", parent))
        apply_layer(io.BytesIO(tar_layer(entries)), mt.OCI_LAYER, dest,
                    whiteouts=whiteouts, lower_dirs=lowers)
        sn.commit(f"l{i}", f"k{i}")
        parent = f"l{i}"
    mounts = sn.prepare("top", parent)
    mount_all(mounts, target)
    print(json.dumps({
        "userns": in_user_namespace(),
        "options": list(mounts[0].options),
        "etc": sorted(os.listdir(os.path.join(target, "etc"))),
        "xattrs": sorted(os.listxattr(os.path.join(home, "snapshots", "2", "fs", "etc"))),
    }))
    """
)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_overlay_in_a_user_namespace(tmp_path: Path) -> None:
    target = tmp_path / "mnt"
    target.mkdir()
    argv = ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", CHILD]
    child = subprocess.run(
        [*argv, str(tmp_path / "home"), str(target)], capture_output=True, text=True, check=False
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["userns"] is True
    assert "userxattr" in result["options"]
    assert result["etc"] == ["new"]
    assert result["xattrs"] == ["user.overlay.opaque"]
    with open("/proc/self/mountinfo") as f:
        assert str(target) not in f.read()  # the mount died with the child's namespace
