"""Unpacking an image already in the content store (after an import), as `ctr import` does.

    target ─▶ manifest for the platform (an index's entry present in the store)
           ─▶ config's diff_ids ─▶ unpack_image: snapshots by ChainID (present ones skipped)
           ─▶ labels: config  containerd.io/gc.ref.snapshot.<snapshotter> = top ChainID
                      layers  containerd.io/uncompressed = diffID

The ChainIDs join the caller's lease before any is written, so a GC running meanwhile keeps
them; once the config carries its snapshot label the image record holds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from galley.errors import NotFound
from galley.images import mediatypes as mt
from galley.images import platforms, tree
from galley.images.mediatypes import Descriptor, Platform
from galley.images.unpack import chain_ids, unpack_image
from galley.metadata.leases import snapshots_kind

if TYPE_CHECKING:
    from galley.images.store import Store


def platform_manifest(store: Store, target: Descriptor, want: Platform | None) -> Descriptor | None:
    """target if it is a manifest; else the index's present manifest for want (None if none)."""
    if mt.is_manifest(target.media_type):
        return target
    if not mt.is_index(target.media_type):
        return None
    present = [
        child
        for _suffix, child in tree.children(store.content, target)
        if store.content.exists(child.digest)
    ]
    try:
        chosen = platforms.select([d for d in present if mt.is_manifest(d.media_type)], want)
    except NotFound:
        nested = [d for d in present if mt.is_index(d.media_type)]
        found = (platform_manifest(store, d, want) for d in nested)
        return next((d for d in found if d is not None), None)
    return chosen


def unpack_stored(
    store: Store,
    namespace: str,
    target: Descriptor,
    *,
    lease: str,
    snapshotter: str = "overlayfs",
    platform: Platform | None = None,
) -> str | None:
    """Unpack the platform's image under target; its top ChainID, or None if it has no such image.

    Images without layers unpack to nothing (None) as well.
    """
    manifest_desc = platform_manifest(store, target, platform)
    if manifest_desc is None:
        return None
    manifest = tree.read_json(store.content, manifest_desc)
    config_desc = Descriptor.from_json(manifest.get("config"))
    config = tree.read_json(store.content, config_desc)
    layers = mt.descriptors(manifest, "layers", f"manifest {manifest_desc.digest}")
    diff_ids = mt.diff_ids(config, f"image config {config_desc.digest}")
    if not layers:
        return None
    kind = snapshots_kind(snapshotter)
    for chain in chain_ids(diff_ids):  # held before they exist
        store.meta.add_lease_resource(namespace, lease, kind, str(chain))
    top = unpack_image(store, manifest, config, snapshotter)
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        store.meta.add_content(
            namespace, layer.digest, layer.size, {tree.UNCOMPRESSED: str(diff_id)}
        )
    label = {f"{tree.GC_SNAPSHOT}{snapshotter}": top}
    store.meta.add_content(namespace, config_desc.digest, config_desc.size, label)
    return top
