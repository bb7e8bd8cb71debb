"""Consistency check of a store root: what a crash must never leave behind.

    blobs       every blob's bytes hash to its name (no partial or corrupt blob visible)
    images      every image's target blob is present; every present manifest has its config
                and layers present (an image record is written last)
    content     every content reference names a blob that is present
    snapshots   every snapshot a config points at (gc.ref.snapshot) exists, committed

Partial ingests are not problems: they are kept to be resumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from galley.content.digest import Digest
from galley.errors import GalleyError, NotFound
from galley.images.mediatypes import Descriptor, is_manifest
from galley.images.store import read_document, walk_image
from galley.metadata.content import GC_REF_SNAPSHOT
from galley.snapshots.api import Kind

if TYPE_CHECKING:
    from galley.images.store import Store

_CHUNK = 1 << 20


def check(store: Store) -> list[str]:
    """Every inconsistency found, one readable line each (empty: the store is clean)."""
    return [*_check_blobs(store), *_check_images(store), *_check_content(store)]


def _check_blobs(store: Store) -> list[str]:
    problems = []
    for info in store.content.walk():
        hasher = info.digest.hasher()
        with store.content.open(info.digest) as f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
        actual = Digest.from_hasher(hasher)
        if actual != info.digest:
            problems.append(f"blob {info.digest} holds content with digest {actual}")
    return problems


def _check_images(store: Store) -> list[str]:
    problems = []
    for namespace in store.meta.namespaces():
        for image in store.meta.list_images(namespace):
            where = f"image {image.name!r} in {namespace!r}"
            if not store.content.exists(image.target.digest):
                problems.append(f"{where}: target blob {image.target.digest} is missing")
            for desc in walk_image(store.content, image.target):
                if is_manifest(desc.media_type):
                    problems += [f"{where}: {p}" for p in _check_manifest(store, desc)]
    return problems


def _check_manifest(store: Store, desc: Descriptor) -> list[str]:
    try:
        doc = read_document(store.content, desc)
        children = [Descriptor.from_json(doc.get("config"))]
        children += [Descriptor.from_json(layer) for layer in doc.get("layers") or []]
    except GalleyError as exc:
        return [f"manifest {desc.digest} is unreadable: {exc}"]
    return [
        f"manifest {desc.digest}: blob {child.digest} is missing"
        for child in children
        if not store.content.exists(child.digest)
    ]


def _check_content(store: Store) -> list[str]:
    problems = []
    for namespace, ref in store.meta.list_content():
        if not store.content.exists(ref.digest):
            problems.append(f"content {ref.digest} in {namespace!r}: blob is missing")
            continue
        for key, value in ref.labels.items():
            if key.startswith(GC_REF_SNAPSHOT):
                problems += _check_snapshot(store, key[len(GC_REF_SNAPSHOT) :], value)
    return problems


def _check_snapshot(store: Store, snapshotter: str, key: str) -> list[str]:
    try:
        info = store.snapshotter(snapshotter).stat(key)
    except NotFound:
        return [f"snapshot {key!r} of {snapshotter} is missing"]
    if info.kind is not Kind.COMMITTED:
        return [f"snapshot {key!r} of {snapshotter} is {info.kind.value}, not committed"]
    return []
