"""The offline image builder: deterministic, well-formed, readable by umoci and skopeo."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from galley.fixtures import images as fi
from galley.images import mediatypes as mt
from galley.images.unpack import chain_ids


def test_builds_are_deterministic() -> None:
    a = fi.busybox_image(seed=3, compression="zstd")
    b = fi.busybox_image(seed=3, compression="zstd")
    assert a.descriptor == b.descriptor
    assert fi.busybox_image(seed=4).descriptor != a.descriptor
    assert a.layers[0].descriptor.media_type == mt.OCI_LAYER_ZSTD


def test_busybox_layer_has_hard_links_after_their_target() -> None:
    with tarfile.open(fileobj=io.BytesIO(fi.busybox_layer())) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    links = [m for m in members if m.islnk()]
    assert links, "applets are hard links"
    assert all(names.index(m.linkname) < names.index(m.name) for m in links)
    assert all(m.uid == 0 and m.gid == 0 for m in members)


def test_manifest_config_and_chain_ids_agree() -> None:
    image = fi.build_image([fi.random_layer(100, seed=1), fi.hardlink_layer()], fmt="docker")
    manifest = json.loads(image.manifest)
    config = json.loads(image.config)
    assert manifest["mediaType"] == mt.DOCKER_MANIFEST
    assert manifest["config"]["digest"] == str(image.config_descriptor.digest)
    assert config["rootfs"]["diff_ids"] == [str(x.diff_id) for x in image.layers]
    assert image.chain_ids == chain_ids([x.diff_id for x in image.layers])
    with tarfile.open(fileobj=io.BytesIO(fi.whiteout_layer(["a/b"], ["c"]))) as tar:
        assert tar.getnames() == ["c", "c/.wh..wh..opq", "a/.wh.b"]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_oci_layout_is_readable_by_skopeo(tmp_path: Path) -> None:
    amd = fi.build_image([fi.random_layer(100, seed=2)])
    arm = fi.build_image([fi.random_layer(100, seed=3)], platform=mt.Platform("linux", "arm64"))
    index = fi.build_index([amd, arm])
    layout = fi.write_oci_layout(tmp_path / "layout", index, "v1")
    out = subprocess.run(
        ["skopeo", "inspect", "--override-arch", "arm64", f"oci:{layout}:v1"],
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(out.stdout)
    assert found["Architecture"] == "arm64"
    assert found["Layers"] == [str(arm.layers[0].descriptor.digest)]
