"""Two processes unpack one image into one root at once: both succeed, layers stored once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from galley.fixtures.images import build_image, busybox_layer, random_layer
from galley.images.store import Store
from tests.images.support import put_blobs

pytestmark = pytest.mark.root

CHILD = textwrap.dedent(
    """
    import json, sys
    from galley.images.store import Store
    from galley.images.unpack import unpack_image

    root, snapshotter, manifest, config = sys.argv[1:5]
    with Store.open(root) as store:
        print(unpack_image(store, json.loads(manifest), json.loads(config), snapshotter))
    """
)


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_two_processes_one_image(snapshotter: str, tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    layers = [busybox_layer()] + [random_layer(256 << 10, seed=i, prefix=f"r{i}") for i in range(4)]
    image = build_image(layers)
    with Store.open(root) as store:
        put_blobs(store, image)
    args = [root, snapshotter, image.manifest.decode(), image.config.decode()]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=120) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err.decode()
        assert out.decode().strip() == str(image.chain_ids[-1])
    with Store.open(root) as store:
        infos = list(store.snapshotter(snapshotter).walk())
    assert [i.name for i in infos] == [str(c) for c in image.chain_ids]
