"""Archive round trips: OCI layout tars and docker save tars, checked with skopeo too."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from galley.errors import InvalidArgument
from galley.fixtures import images as fi
from galley.images import mediatypes as mt
from galley.images.archive import export_archive, import_archive
from galley.images.store import Store
from tests.images.support import put_image

NS = "default"


def _members(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_export_import_round_trip(stores: tuple[Store, Store], tmp_path: Path, fmt: str) -> None:
    first, second = stores
    image = fi.build_image([fi.busybox_layer(), fi.random_layer(500, seed=1)])
    index = fi.build_index(
        [fi.build_image([fi.random_layer(300, seed=2)]),
         fi.build_image([fi.random_layer(300, seed=3)], platform=mt.Platform("linux", "arm64"))]
    )  # fmt: skip
    put_image(first, "docker.io/library/app:1", image)
    put_image(first, "example.com/multi:2", index)
    out = tmp_path / f"out-{fmt}.tar"
    export_archive(first, ["app:1", "example.com/multi:2"], str(out), NS, format=fmt)
    assert {"oci-layout", "index.json"} <= _members(out)
    if fmt == "docker":
        assert "manifest.json" in _members(out)
    got = {i.name: i.target.digest for i in import_archive(second, str(out), NS)}
    assert got == {
        "docker.io/library/app:1": image.descriptor.digest,
        "example.com/multi:2": index.descriptor.digest,
    }
    for digest, data in {**image.blobs(), **index.blobs()}.items():
        with second.content.open(digest) as fh:
            assert fh.read() == data
    labels = second.meta.content_labels(NS, image.descriptor.digest)
    assert labels["containerd.io/gc.ref.content.config"] == str(image.config_descriptor.digest)
    assert second.content.ingests() == [] and second.meta.list_leases(NS) == []


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
def test_skopeo_reads_our_archives(stores: tuple[Store, Store], tmp_path: Path) -> None:
    first, _ = stores
    image = fi.build_image([fi.random_layer(500, seed=4)])
    put_image(first, "docker.io/library/app:1", image)
    for fmt, transport in (("oci", "oci-archive"), ("docker", "docker-archive")):
        out = tmp_path / f"{fmt}.tar"
        export_archive(first, ["app:1"], str(out), NS, format=fmt)
        res = subprocess.run(
            ["skopeo", "inspect", "--raw", f"{transport}:{out}"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["config"]["digest"] == str(image.config_descriptor.digest)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_import_classic_docker_save(stores: tuple[Store, Store], tmp_path: Path) -> None:
    _, second = stores
    layer = fi.random_layer(800, seed=5)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [f"sha256:{fi.sha256_hex(layer)}"]}}).encode()  # fmt: skip
    path = tmp_path / "save.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "abc.json", config)
        _add(tar, "0123/layer.tar", layer)
        manifest = [{"Config": "abc.json", "RepoTags": ["me/app:3"], "Layers": ["0123/layer.tar"]}]
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    (image,) = import_archive(second, str(path), NS)
    assert image.name == "docker.io/me/app:3"
    assert image.target.media_type == mt.DOCKER_MANIFEST
    manifest_json = json.loads(second.content.read(image.target.digest))
    assert manifest_json["layers"][0]["mediaType"] == mt.DOCKER_LAYER
    assert manifest_json["layers"][0]["digest"] == f"sha256:{fi.sha256_hex(layer)}"


def test_import_refuses_bad_archives(stores: tuple[Store, Store], tmp_path: Path) -> None:
    _, second = stores
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(InvalidArgument, match="tar"):
        import_archive(second, str(tmp_path / "junk.tar"), NS)
    image = fi.build_image([fi.random_layer(100, seed=6)])
    layout = fi.write_oci_layout(tmp_path / "layout", image, "1")
    blob = layout / "blobs/sha256" / image.layers[0].descriptor.digest.hex
    blob.write_bytes(b"tampered" + blob.read_bytes()[8:])
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(tampered, "w") as tar:
        tar.add(layout, arcname=".")
    with pytest.raises(InvalidArgument, match="digest"):
        import_archive(second, str(tampered), NS, base_name="x/y")
    assert second.meta.list_images(NS) == [] and second.content.ingests() == []
    with tarfile.open(tmp_path / "empty.tar", "w") as tar:
        _add(tar, "hello", b"hi")
    with pytest.raises(InvalidArgument, match="neither"):
        import_archive(second, str(tmp_path / "empty.tar"), NS)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ([5], r"manifest\.json\[0\] is not a JSON object"),
        ([{"Config": 5}], r"manifest\.json\[0\]\.Config must be the config file's name"),
        ([{"Config": "abc.json", "Layers": 5}], r"\[0\]\.Layers must be a list of strings"),
        ([{"Config": "abc.json", "Layers": [7]}], r"\[0\]\.Layers must be a list of strings"),
        ([{"Config": "abc.json", "RepoTags": "me/app:3"}], r"\[0\]\.RepoTags must be a list"),
    ],
)
def test_import_refuses_a_malformed_docker_manifest_by_name(
    stores: tuple[Store, Store], tmp_path: Path, manifest: object, message: str
) -> None:
    """An untrusted `docker save` tar whose manifest.json had an entry, a Config, Layers or
    RepoTags of another kind ended in an AttributeError or TypeError, or (a string of
    RepoTags) tagged the image with each of its letters (session 26)."""
    _, second = stores
    path = tmp_path / "save.tar"
    with tarfile.open(path, "w") as tar:
        _add(tar, "abc.json", b"{}")
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    with pytest.raises(InvalidArgument, match=message):
        import_archive(second, str(path), NS)
    assert second.meta.list_images(NS) == []
