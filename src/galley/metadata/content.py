"""Content references per namespace: which blobs a namespace holds, and their labels.

The GC follows labels between blobs, as containerd does:
`containerd.io/gc.ref.content.<x>` = child digest, `containerd.io/gc.ref.snapshot.<sn>` = key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from galley.content.digest import Digest
from galley.errors import NotFound
from galley.metadata.transaction import (
    EPOCH,
    Database,
    check_namespace,
    dump_labels,
    load_labels,
    now,
)

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping

GC_ROOT = "containerd.io/gc.root"
GC_REF_CONTENT = "containerd.io/gc.ref.content."
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."


@dataclass(frozen=True)
class ContentRef:
    """A namespace's reference to a blob, with its labels."""

    digest: Digest
    size: int
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at: datetime = EPOCH
    updated_at: datetime = EPOCH


def _row_ref(row: tuple[str, int, str, float, float]) -> ContentRef:
    digest, size, labels, created, updated = row
    return ContentRef(
        Digest.parse(digest),
        size,
        load_labels(labels),
        datetime.fromtimestamp(created, UTC),
        datetime.fromtimestamp(updated, UTC),
    )


_COLUMNS = "digest, size, labels_json, created_at, updated_at"


def _select(conn: sqlite3.Connection, namespace: str, digest: Digest) -> ContentRef | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM content WHERE namespace = ? AND digest = ?",
        (namespace, str(digest)),
    ).fetchone()
    return _row_ref(row) if row else None


class ContentTable(Database):
    """Content references and labels per namespace."""

    def add_content(
        self, namespace: str, digest: Digest, size: int, labels: Mapping[str, str] | None = None
    ) -> ContentRef:
        """Record that namespace holds the blob; labels given are merged into existing ones."""
        check_namespace(namespace)
        with self.tx() as conn:
            old = _select(conn, namespace, digest)
            merged = {**(old.labels if old else {}), **(labels or {})}
            stamp = now()
            conn.execute(
                "INSERT OR REPLACE INTO content (namespace, digest, size, labels_json, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    namespace,
                    str(digest),
                    size,
                    dump_labels(merged),
                    old.created_at.timestamp() if old else stamp,
                    stamp,
                ),
            )
            found = _select(conn, namespace, digest)
        assert found is not None
        return found

    def get_content(self, namespace: str, digest: Digest) -> ContentRef:
        """The namespace's reference to the blob; NotFound if it holds none."""
        found = _select(self.conn(), check_namespace(namespace), digest)
        if found is None:
            raise NotFound(f"content {digest} not found in namespace {namespace!r}")
        return found

    def content_labels(self, namespace: str, digest: Digest) -> dict[str, str]:
        """The labels of the namespace's reference to the blob."""
        return dict(self.get_content(namespace, digest).labels)

    def set_content_labels(
        self, namespace: str, digest: Digest, labels: Mapping[str, str]
    ) -> ContentRef:
        """Replace the labels of the namespace's reference to the blob."""
        with self.tx() as conn:
            cur = conn.execute(
                "UPDATE content SET labels_json = ?, updated_at = ? "
                "WHERE namespace = ? AND digest = ?",
                (dump_labels(labels), now(), check_namespace(namespace), str(digest)),
            )
            if cur.rowcount == 0:
                raise NotFound(f"content {digest} not found in namespace {namespace!r}")
            found = _select(conn, namespace, digest)
        assert found is not None
        return found

    def list_content(self, namespace: str | None = None) -> list[tuple[str, ContentRef]]:
        """(namespace, ref) for every content reference, in one namespace or all."""
        sql = f"SELECT namespace, {_COLUMNS} FROM content"
        args: tuple[str, ...] = ()
        if namespace is not None:
            sql, args = sql + " WHERE namespace = ?", (check_namespace(namespace),)
        rows = self.conn().execute(sql + " ORDER BY namespace, digest", args).fetchall()
        return [(row[0], _row_ref(row[1:])) for row in rows]

    def delete_content(self, namespace: str, digest: Digest) -> None:
        """Drop the namespace's reference to the blob (the bytes go at GC)."""
        with self.tx() as conn:
            cur = conn.execute(
                "DELETE FROM content WHERE namespace = ? AND digest = ?",
                (check_namespace(namespace), str(digest)),
            )
            if cur.rowcount == 0:
                raise NotFound(f"content {digest} not found in namespace {namespace!r}")
