"""An unpack killed mid-layer: the next unpack removes its leftovers and succeeds."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from galley.fixtures.images import busybox_image, busybox_layer
from galley.images.store import Store
from galley.images.unpack import unpack_image
from galley.snapshots.api import Kind
from tests.images.support import put_blobs

pytestmark = pytest.mark.root

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys
    from galley.images import tarapply
    from galley.images.store import Store
    from galley.images.unpack import unpack_image

    root, snapshotter, after, manifest, config = sys.argv[1:6]
    real, seen = tarapply.TarApplier.entry, []
    def entry(self, member, tar):
        seen.append(member.name)
        if len(seen) == int(after):
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, member, tar)
    tarapply.TarApplier.entry = entry
    with Store.open(root) as store:
        unpack_image(store, json.loads(manifest), json.loads(config), snapshotter)
    """
)


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
@pytest.mark.parametrize("where", ["first-layer", "second-layer"])
def test_unpack_killed_then_rerun(snapshotter: str, where: str, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    image = busybox_image(extra_layers=1)
    with Store.open(root) as store:
        put_blobs(store, image)
    with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as tar:
        after = 100 if where == "first-layer" else len(tar.getmembers()) + 2
    args = [root, snapshotter, str(after), image.manifest.decode(), image.config.decode()]
    child = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    with Store.open(root) as store:
        sn = store.snapshotter(snapshotter)
        assert any(i.kind is Kind.ACTIVE for i in sn.walk())  # what the dead unpack left
        top = unpack_image(store, json.loads(image.manifest), json.loads(image.config), snapshotter)
        assert top == str(image.chain_ids[-1])
        assert [i.name for i in sn.walk()] == [str(c) for c in image.chain_ids]
