"""An image's content tree as stored: children of indexes and manifests, and their GC labels.

    index ──m.0, m.1…──▶ manifest ──config──▶ config
                                  └─l.0, l.1…─▶ layers

`containerd.io/gc.ref.content.<x>` labels on a parent keep its children alive in GC; the walk
below is what push and export send and what import labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from galley.content.store import ContentStore
from galley.errors import InvalidArgument
from galley.images import mediatypes as mt
from galley.images.mediatypes import Descriptor

MAX_MANIFEST = 4 << 20
GC_CONTENT = "containerd.io/gc.ref.content."
GC_SNAPSHOT = "containerd.io/gc.ref.snapshot."  # on a config: its top snapshot, by snapshotter
UNCOMPRESSED = "containerd.io/uncompressed"  # on a layer: its diffID


def read_json(content: ContentStore, desc: Descriptor) -> dict[str, Any]:
    """A manifest, index or config blob parsed (it must be a JSON object)."""
    data = content.read(desc.digest, MAX_MANIFEST)
    return mt.parse_json_object(data, f"{desc.media_type} {desc.digest}")


def children(content: ContentStore, desc: Descriptor) -> list[tuple[str, Descriptor]]:
    """(label suffix, child) pairs of an index or manifest; nothing for other blobs."""
    if mt.is_index(desc.media_type):
        obj = read_json(content, desc)
        entries = mt.descriptors(obj, "manifests", f"index {desc.digest}")
        return [(f"m.{i}", e) for i, e in enumerate(entries)]
    if mt.is_manifest(desc.media_type):
        obj = read_json(content, desc)
        out = [("config", Descriptor.from_json(obj.get("config")))]
        layers = mt.descriptors(obj, "layers", f"manifest {desc.digest}")
        return out + [(f"l.{i}", e) for i, e in enumerate(layers)]
    return []


def gc_labels(pairs: list[tuple[str, Descriptor]]) -> dict[str, str]:
    """The GC reference labels a parent carries for its children."""
    return {GC_CONTENT + suffix: str(child.digest) for suffix, child in pairs}


def walk(
    content: ContentStore, top: Descriptor, *, present_only: bool = True
) -> Iterator[Descriptor]:
    """Every descriptor under top (top included), parents before children.

    With present_only, index entries whose manifests are not in the store are skipped (a pull
    fetches one platform); a missing manifest config or layer is an error.
    """
    yield top
    for _suffix, child in children(content, top):
        if mt.is_index(top.media_type) and present_only and not content.exists(child.digest):
            continue
        if not content.exists(child.digest) and not mt.is_index(top.media_type):
            raise InvalidArgument(
                f"image content {child.digest} ({child.media_type}) is missing from the store"
            )
        yield from walk(content, child, present_only=present_only)


def manifest_json(media_type: str, config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A schema 2 manifest of the given media type over config and layers (compact JSON)."""
    obj = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    return json.dumps(obj, separators=(",", ":")).encode()
