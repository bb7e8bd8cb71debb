"""A snapshotter process killed halfway leaves a store that reopens clean and keeps working."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from galley.snapshots.native import NativeSnapshotter
from galley.snapshots.overlay import OverlaySnapshotter

pytestmark = pytest.mark.root

CLASSES = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}

# The child prepares "base" with a file, commits it, then dies by SIGKILL at `point`.
CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys
    from galley.snapshots.native import NativeSnapshotter
    from galley.snapshots.overlay import OverlaySnapshotter

    cls = {"overlayfs": OverlaySnapshotter, "native": NativeSnapshotter}[sys.argv[1]]
    home, point = sys.argv[2], sys.argv[3]
    sn = cls(home)
    (m,) = sn.prepare("k-base")
    src = m.source if m.type == "bind" else m.options[1].split("=", 1)[1]
    open(os.path.join(src, "file"), "w").write("base")
    sn.commit("base", "k-base")

    def die(*_a, **_k):
        os.kill(os.getpid(), signal.SIGKILL)

    real_rename = os.rename
    def rename_then_die(a, b):
        real_rename(a, b)
        die()

    if point == "populate":
        cls._populate = die
        sn.prepare("k-next", "base")
    elif point == "rename":
        os.rename = rename_then_die
        sn.prepare("k-next", "base")
    elif point == "commit":
        sn.prepare("k-next", "base")
        import galley.snapshots.directory as d
        d.disk_usage = die
        sn.commit("next", "k-next")
    elif point == "remove":
        sn.prepare("k-next", "base")
        shutil.rmtree = die
        sn.remove("k-next")
    """
)


@pytest.mark.parametrize("point", ["populate", "rename", "commit", "remove"])
@pytest.mark.parametrize("name", sorted(CLASSES))
def test_killed_midway(name: str, point: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, name, str(home), point], capture_output=True, check=False
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    sn = CLASSES[name](str(home))
    try:
        names = {i.name for i in sn.walk()}
        assert names in ({"base"}, {"base", "k-next"}), names
        assert os.listdir(home / "tmp") == []
        dirs = set(os.listdir(home / "snapshots"))
        assert len(dirs) == len(names), (dirs, names)
        if "k-next" in names:
            sn.remove("k-next")
        sn.prepare("k-next", "base")  # the same key works again
        sn.commit("next", "k-next")
        assert sn.stat("next").parent == "base"
    finally:
        sn.close()
