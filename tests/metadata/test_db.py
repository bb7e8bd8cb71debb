"""MetadataStore: images, content refs, leases, snapshot refs, schema, namespaces."""

from __future__ import annotations

import gc
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from galley.content.digest import Digest
from galley.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from galley.images.mediatypes import OCI_MANIFEST, Descriptor
from galley.metadata import schema
from galley.metadata.db import MetadataStore
from galley.metadata.images import Image

D1 = Digest.of_bytes(b"one")
D2 = Digest.of_bytes(b"two")


def image(name: str, digest: Digest = D1, **labels: str) -> Image:
    return Image(name, Descriptor(OCI_MANIFEST, digest, 10, {"a": "b"}), labels)


def test_schema_is_at_current_version_and_wal(meta: MetadataStore) -> None:
    assert schema.version(meta.conn()) == schema.VERSION
    assert meta.conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "meta.db")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    conn.close()
    with pytest.raises(FailedPrecondition, match="newer than this galley"):
        MetadataStore(path)


def test_image_put_get_list_delete(meta: MetadataStore) -> None:
    stored = meta.put_image("default", image("docker.io/library/a:1", team="x"))
    assert stored.target.annotations == {"a": "b"}
    assert meta.get_image("default", "docker.io/library/a:1") == stored
    replaced = meta.put_image("default", image("docker.io/library/a:1", D2))
    assert replaced.target.digest == D2
    assert replaced.created_at == stored.created_at
    assert replaced.updated_at >= stored.updated_at
    assert [i.name for i in meta.list_images("default")] == ["docker.io/library/a:1"]
    assert meta.list_images("k8s.io") == []
    meta.delete_image("default", "docker.io/library/a:1")
    with pytest.raises(NotFound, match=r"image 'docker.io/library/a:1' not found"):
        meta.get_image("default", "docker.io/library/a:1")
    with pytest.raises(NotFound):
        meta.delete_image("default", "docker.io/library/a:1")


def test_create_image_refuses_duplicates(meta: MetadataStore) -> None:
    meta.create_image("default", image("a"))
    with pytest.raises(AlreadyExists, match="image 'a' already exists"):
        meta.create_image("default", image("a"))


def test_tag_and_labels(meta: MetadataStore) -> None:
    meta.put_image("default", image("a", keep="1", drop="2"))
    tagged = meta.tag_image("default", "a", "b")
    assert tagged.target == meta.get_image("default", "a").target
    assert meta.update_image_labels("default", "b", {"drop": None, "new": "3"}).labels == {
        "keep": "1",
        "new": "3",
    }
    with pytest.raises(NotFound):
        meta.tag_image("default", "missing", "c")


def test_namespaces_are_isolated_and_validated(meta: MetadataStore) -> None:
    meta.put_image("k8s.io", image("a"))
    with pytest.raises(NotFound):
        meta.get_image("default", "a")
    assert meta.namespaces() == ["k8s.io"]
    for bad in ("", "a/b", "-x", "a" * 77):
        with pytest.raises(InvalidArgument, match="namespace"):
            meta.list_images(bad)


def test_content_refs_and_labels(meta: MetadataStore) -> None:
    meta.add_content("default", D1, 3, {"x": "1"})
    meta.add_content("default", D1, 3, {"y": "2"})
    assert meta.content_labels("default", D1) == {"x": "1", "y": "2"}
    meta.set_content_labels("default", D1, {"z": "3"})
    assert meta.content_labels("default", D1) == {"z": "3"}
    assert [(ns, r.digest) for ns, r in meta.list_content()] == [("default", D1)]
    meta.delete_content("default", D1)
    with pytest.raises(NotFound, match=f"content {D1} not found"):
        meta.content_labels("default", D1)
    with pytest.raises(NotFound):
        meta.set_content_labels("default", D1, {})


def test_leases_hold_resources_until_deleted(meta: MetadataStore) -> None:
    lease = meta.create_lease("default", "pull-1")
    with pytest.raises(AlreadyExists, match="lease 'pull-1'"):
        meta.create_lease("default", "pull-1")
    meta.add_lease_resource("default", "pull-1", "content", str(D1))
    meta.add_lease_resource("default", "pull-1", "snapshots/overlayfs", "sha256:abc")
    assert [(r.kind, r.id) for r in meta.lease_resources("default", lease.id)] == [
        ("content", str(D1)),
        ("snapshots/overlayfs", "sha256:abc"),
    ]
    meta.delete_lease_resource("default", "pull-1", "content", str(D1))
    with pytest.raises(InvalidArgument, match="kind 'bogus'"):
        meta.add_lease_resource("default", "pull-1", "bogus", "x")
    with pytest.raises(NotFound, match="lease 'nope'"):
        meta.add_lease_resource("default", "nope", "content", str(D1))
    meta.delete_lease("default", "pull-1")
    assert meta.conn().execute("SELECT COUNT(*) FROM lease_resources").fetchone()[0] == 0


def test_lease_context_manager_and_expiry(meta: MetadataStore) -> None:
    with meta.lease("default", ttl=timedelta(minutes=5)) as held:
        [listed] = meta.list_leases("default")
        assert listed.id == held.id
        assert not listed.expired()
        assert listed.expired(datetime.now(UTC) + timedelta(minutes=6))
    assert meta.list_leases("default") == []


def test_snapshot_refs(meta: MetadataStore) -> None:
    meta.add_snapshot_ref("default", "overlayfs", "sha256:top", {"l": "1"})
    meta.add_snapshot_ref("k8s.io", "native", "c1")
    assert [(ns, r.key) for ns, r in meta.snapshot_refs(snapshotter="overlayfs")] == [
        ("default", "sha256:top")
    ]
    assert len(meta.snapshot_refs()) == 2
    meta.remove_snapshot_ref("k8s.io", "native", "c1")
    with pytest.raises(NotFound, match="snapshot 'c1'"):
        meta.remove_snapshot_ref("k8s.io", "native", "c1")


def test_failed_transaction_leaves_nothing(meta: MetadataStore) -> None:
    with pytest.raises(RuntimeError), meta.tx() as conn:
        conn.execute("INSERT INTO content VALUES ('default', ?, 1, '{}', 0, 0)", (str(D1),))
        raise RuntimeError("half-way")
    assert meta.list_content() == []


def _db_fds(path: str) -> int:
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if _readlink(f"/proc/self/fd/{fd}") == path)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _round_of_threads(meta: MetadataStore) -> int:
    """32 reads on 8 short-lived threads; then the fds open on the database file."""
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda _: len(meta.list_images("default")), range(32)))
    assert names == [1] * 32
    gc.collect()
    return _db_fds(meta.path)


def test_connections_of_finished_threads_do_not_pile_up(meta: MetadataStore) -> None:
    # SQLite keeps a closed connection's fd for reuse while another connection of the
    # process holds a POSIX lock on the file; what must not happen is growth per round.
    meta.put_image("default", image("a"))
    first = _round_of_threads(meta)
    later = [_round_of_threads(meta) for _ in range(5)]
    assert max(later) < first + 16, (first, later)  # leaking: +8 every round


def test_next_migration_upgrades_an_existing_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "meta.db")
    old = MetadataStore(path)
    old.put_image("default", image("kept"))
    old.close()
    step = ("ALTER TABLE images ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0",)
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, step))
    monkeypatch.setattr(schema, "VERSION", len(schema.MIGRATIONS))
    new = MetadataStore(path)
    assert schema.version(new.conn()) == 2
    assert new.get_image("default", "kept").target.digest == D1
    assert new.conn().execute("SELECT pinned FROM images").fetchall() == [(0,)]
    new.close()
