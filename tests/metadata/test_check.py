"""The store check finds corrupt and missing blobs, and passes a clean store."""

from __future__ import annotations

import os

from galley.content.digest import Digest
from galley.fixtures.images import build_image, random_layer
from galley.images.check import check
from galley.images.store import Store
from galley.metadata.content import GC_REF_SNAPSHOT
from galley.metadata.images import Image

IMAGE = build_image([random_layer(1024, seed=7), random_layer(1024, seed=8)])


def seeded(store: Store) -> Store:
    for blob in IMAGE.blobs().values():
        store.content.put(blob)
    store.meta.put_image("default", Image("app", IMAGE.descriptor))
    return store


def test_clean_store_has_no_problems(store: Store) -> None:
    assert check(seeded(store)) == []


def test_corrupt_blob_is_found(store: Store) -> None:
    seeded(store)
    layer = IMAGE.layers[0].descriptor.digest
    path = store.content.path(layer)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"X")
    [problem] = check(store)
    assert problem.startswith(f"blob {layer} holds content with digest sha256:")


def test_missing_layer_content_and_snapshot_are_found(store: Store) -> None:
    seeded(store)
    layer = IMAGE.layers[1].descriptor.digest
    store.content.delete(layer)
    ghost = Digest.of_bytes(b"ghost")
    store.meta.add_content("default", ghost, 5)
    config = IMAGE.config_descriptor
    store.meta.add_content("default", config.digest, config.size, {GC_REF_SNAPSHOT + "native": "x"})
    assert sorted(check(store)) == sorted(
        [
            f"image 'app' in 'default': manifest {IMAGE.descriptor.digest}: "
            f"blob {layer} is missing",
            f"content {ghost} in 'default': blob is missing",
            "snapshot 'x' of native is missing",
        ]
    )
