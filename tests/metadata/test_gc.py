"""Garbage collection: exactly the unshared blobs and snapshots go; leases protect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from galley.content.digest import Digest
from galley.fixtures.images import BuiltImage, build_image, build_index, random_layer
from galley.images.store import Store
from galley.metadata.content import GC_REF_CONTENT, GC_REF_SNAPSHOT, GC_ROOT
from galley.metadata.gc import chain_id, collect
from galley.metadata.images import Image
from galley.metadata.leases import CONTENT, INGESTS, snapshots_kind

SN = "native"
L1, L2, L3 = (random_layer(2048, seed=s) for s in (1, 2, 3))


def add_image(store: Store, name: str, image: BuiltImage, *, labelled: bool) -> None:
    """Store an image's blobs and snapshots the way a pull does (with or without GC labels)."""
    for blob in image.blobs().values():
        store.content.put(blob)
    sn = store.snapshotter(SN)
    parent = ""
    for chain in image.chain_ids:
        key = str(chain)
        if key not in {i.name for i in sn.walk()}:
            sn.prepare(f"extract {key}", parent)
            sn.commit(key, f"extract {key}")
        parent = key
    for layer in image.layers:
        store.meta.add_content("default", layer.descriptor.digest, layer.descriptor.size)
    config = image.config_descriptor
    manifest_labels = {f"{GC_REF_CONTENT}config": str(config.digest)} | {
        f"{GC_REF_CONTENT}l.{i}": str(layer.descriptor.digest)
        for i, layer in enumerate(image.layers)
    }
    config_labels = {f"{GC_REF_SNAPSHOT}{SN}": parent}
    store.meta.add_content("default", config.digest, config.size, config_labels if labelled else {})
    store.meta.add_content(
        "default",
        image.descriptor.digest,
        image.descriptor.size,
        manifest_labels if labelled else {},
    )
    store.meta.put_image("default", Image(name, image.descriptor))


def snapshot_names(store: Store) -> set[str]:
    return {info.name for info in store.snapshotter(SN).walk()}


@pytest.mark.parametrize("labelled", [True, False], ids=["gc-labels", "parsed-manifests"])
def test_removing_one_of_two_images_frees_exactly_its_own_parts(
    store: Store, labelled: bool
) -> None:
    a, b = build_image([L1, L2]), build_image([L1, L3])
    add_image(store, "a", a, labelled=labelled)
    add_image(store, "b", b, labelled=labelled)
    assert collect(store).removed_blobs == ()
    all_blobs = {i.digest for i in store.content.walk()}
    store.meta.delete_image("default", "a")
    planned = collect(store, dry_run=True)
    assert {i.digest for i in store.content.walk()} == all_blobs
    result = collect(store)
    assert planned.removed_blobs == result.removed_blobs
    assert planned.removed_snapshots == result.removed_snapshots
    only_a = set(a.blobs()) - set(b.blobs())
    assert set(result.removed_blobs) == only_a
    assert result.freed_bytes == sum(len(a.blobs()[d]) for d in only_a)
    assert {i.digest for i in store.content.walk()} == all_blobs - only_a
    assert {k for _, k in result.removed_snapshots} == {str(a.chain_ids[1])}
    assert snapshot_names(store) == {str(c) for c in b.chain_ids}
    assert {r.digest for _, r in store.meta.list_content()} == set(b.blobs())
    store.meta.delete_image("default", "b")
    collect(store)
    assert list(store.content.walk()) == []
    assert snapshot_names(store) == set()


def test_index_holds_every_platform_manifest(store: Store) -> None:
    a, b = build_image([L1]), build_image([L2])
    index = build_index([a, b])
    for blob in index.blobs().values():
        store.content.put(blob)
    store.meta.put_image("default", Image("multi", index.descriptor))
    store.content.put(b"orphan")
    assert collect(store).removed_blobs == (Digest.of_bytes(b"orphan"),)
    assert {i.digest for i in store.content.walk()} == set(index.blobs())


def test_lease_protects_in_flight_content_and_snapshots(store: Store) -> None:
    blob = store.content.put(b"half-pulled layer")
    sn = store.snapshotter(SN)
    sn.prepare("extract x", "")
    sn.commit("sha256:x", "extract x")
    with store.meta.lease("default") as lease:
        store.meta.add_lease_resource("default", lease.id, CONTENT, str(blob.digest))
        store.meta.add_lease_resource("default", lease.id, snapshots_kind(SN), "sha256:x")
        assert collect(store).removed_blobs == ()
        assert snapshot_names(store) == {"sha256:x"}
    result = collect(store)
    assert result.removed_blobs == (blob.digest,)
    assert result.removed_snapshots == ((SN, "sha256:x"),)


def test_expired_lease_protects_nothing(store: Store) -> None:
    blob = store.content.put(b"abandoned")
    lease = store.meta.create_lease("default", expire_at=datetime.now(UTC) - timedelta(seconds=1))
    store.meta.add_lease_resource("default", lease.id, CONTENT, str(blob.digest))
    result = collect(store)
    assert result.removed_leases == 1
    assert result.removed_blobs == (blob.digest,)
    assert store.meta.list_leases("default") == []


def test_gc_root_label_and_active_snapshots_are_kept(store: Store) -> None:
    rooted = store.content.put(b"rooted")
    store.meta.add_content("k8s.io", rooted.digest, rooted.size, {GC_ROOT: "x"})
    sn = store.snapshotter(SN)
    sn.prepare("extract base", "")
    sn.commit("base", "extract base")
    sn.prepare("container-1", "base")
    sn.prepare("extract lonely", "")
    sn.commit("lonely", "extract lonely")
    result = collect(store)
    assert result.removed_blobs == ()
    assert result.removed_snapshots == ((SN, "lonely"),)
    assert snapshot_names(store) == {"base", "container-1"}


def test_chain_id_matches_oci_definition() -> None:
    image = build_image([L1, L2, L3])
    assert chain_id([str(layer.diff_id) for layer in image.layers]) == str(image.chain_ids[-1])
    assert chain_id([]) == ""


def test_abandoned_ingests_go_after_max_age_unless_locked_or_leased(store: Store) -> None:
    for ref in ("abandoned", "leased", "locked"):
        w = store.content.writer(ref)
        w.write(b"partial")
        w.close()
    lease = store.meta.create_lease("default")
    store.meta.add_lease_resource("default", lease.id, INGESTS, "leased")
    held = store.content.writer("locked")
    assert collect(store).removed_ingests == ()
    result = collect(store, ingest_max_age=timedelta(0))
    assert result.removed_ingests == ("abandoned",)
    assert sorted(i.ref for i in store.content.ingests()) == ["leased", "locked"]
    held.close()
