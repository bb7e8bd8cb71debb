"""Snapshot references per namespace: which snapshots of which snapshotter a namespace uses.

The bytes and the parent links live in the snapshotter's own store (galley.snapshots); these
rows say who uses a snapshot. A reference labelled `containerd.io/gc.root` is a GC root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

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
    from collections.abc import Mapping


@dataclass(frozen=True)
class SnapshotRef:
    """A namespace's use of snapshot key in snapshotter."""

    snapshotter: str
    key: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at: datetime = EPOCH


class SnapshotsTable(Database):
    """Snapshot references per namespace."""

    def add_snapshot_ref(
        self, namespace: str, snapshotter: str, key: str, labels: Mapping[str, str] | None = None
    ) -> SnapshotRef:
        """Record (or relabel) the namespace's use of snapshot key."""
        stamp = now()
        with self.tx() as conn:
            old = conn.execute(
                "SELECT created_at FROM snapshots WHERE namespace = ? AND snapshotter = ? "
                "AND key = ?",
                (check_namespace(namespace), snapshotter, key),
            ).fetchone()
            created = old[0] if old else stamp
            conn.execute(
                "INSERT OR REPLACE INTO snapshots "
                "(namespace, snapshotter, key, labels_json, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (namespace, snapshotter, key, dump_labels(labels), created),
            )
        return SnapshotRef(
            snapshotter, key, dict(labels or {}), datetime.fromtimestamp(created, UTC)
        )

    def remove_snapshot_ref(self, namespace: str, snapshotter: str, key: str) -> None:
        """Drop the namespace's use of snapshot key; NotFound if it had none."""
        with self.tx() as conn:
            cur = conn.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (check_namespace(namespace), snapshotter, key),
            )
            if cur.rowcount == 0:
                raise NotFound(
                    f"snapshot {key!r} of {snapshotter} not referenced in namespace {namespace!r}"
                )

    def snapshot_refs(
        self, namespace: str | None = None, snapshotter: str | None = None
    ) -> list[tuple[str, SnapshotRef]]:
        """(namespace, ref) for the references in one namespace/snapshotter, or all."""
        clauses, args = [], []
        if namespace is not None:
            clauses.append("namespace = ?")
            args.append(check_namespace(namespace))
        if snapshotter is not None:
            clauses.append("snapshotter = ?")
            args.append(snapshotter)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.conn().execute(
            "SELECT namespace, snapshotter, key, labels_json, created_at FROM snapshots"
            + where
            + " ORDER BY namespace, snapshotter, key",
            args,
        )
        return [
            (ns, SnapshotRef(sn, key, load_labels(labels), datetime.fromtimestamp(created, UTC)))
            for ns, sn, key, labels, created in rows.fetchall()
        ]
