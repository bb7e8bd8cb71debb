"""Leases: temporary GC roots (a pull in flight holds one over what it has fetched so far)."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from galley.errors import AlreadyExists, InvalidArgument, NotFound
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
    from collections.abc import Iterator, Mapping

CONTENT = "content"
INGESTS = "ingests"
SNAPSHOTS_PREFIX = "snapshots/"
DEFAULT_LEASE_TTL = timedelta(hours=24)


def snapshots_kind(snapshotter: str) -> str:
    """The lease resource kind of snapshots of one snapshotter ("snapshots/overlayfs")."""
    return SNAPSHOTS_PREFIX + snapshotter


@dataclass(frozen=True)
class Lease:
    """A lease: id, labels, creation time and optional expiry."""

    id: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at: datetime = EPOCH
    expire_at: datetime | None = None

    def expired(self, at: datetime | None = None) -> bool:
        """Whether the lease had expired at the given time (default: now)."""
        return self.expire_at is not None and self.expire_at <= (at or datetime.now(UTC))


@dataclass(frozen=True)
class LeaseResource:
    """One thing a lease holds: kind "content" | "ingests" | "snapshots/<sn>", and its id."""

    kind: str
    id: str


def _check_kind(kind: str) -> None:
    if kind not in (CONTENT, INGESTS) and not (
        kind.startswith(SNAPSHOTS_PREFIX) and len(kind) > len(SNAPSHOTS_PREFIX)
    ):
        raise InvalidArgument(f"lease resource kind {kind!r} is unknown")


class LeasesTable(Database):
    """Leases per namespace and the resources they hold."""

    def create_lease(
        self,
        namespace: str,
        id: str | None = None,
        expire_at: datetime | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Lease:
        """Create a lease (random id when none is given); AlreadyExists if id is taken."""
        lease_id = id or "galley-" + secrets.token_hex(8)
        stamp = now()
        with self.tx() as conn:
            found = conn.execute(
                "SELECT 1 FROM leases WHERE namespace = ? AND id = ?",
                (check_namespace(namespace), lease_id),
            ).fetchone()
            if found:
                raise AlreadyExists(f"lease {lease_id!r} already exists in {namespace!r}")
            conn.execute(
                "INSERT INTO leases (namespace, id, labels_json, created_at, expire_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    namespace,
                    lease_id,
                    dump_labels(labels),
                    stamp,
                    expire_at.timestamp() if expire_at else None,
                ),
            )
        return Lease(lease_id, dict(labels or {}), datetime.fromtimestamp(stamp, UTC), expire_at)

    def list_leases(self, namespace: str) -> list[Lease]:
        """Every lease of the namespace, oldest first."""
        rows = self.conn().execute(
            "SELECT id, labels_json, created_at, expire_at FROM leases WHERE namespace = ? "
            "ORDER BY created_at",
            (check_namespace(namespace),),
        )
        return [
            Lease(
                lid,
                load_labels(labels),
                datetime.fromtimestamp(created, UTC),
                datetime.fromtimestamp(expire, UTC) if expire is not None else None,
            )
            for lid, labels, created, expire in rows.fetchall()
        ]

    def add_lease_resource(self, namespace: str, lease: str, kind: str, id: str) -> None:
        """Hold resource (kind, id) under the lease; add it BEFORE creating the resource."""
        _check_kind(kind)
        with self.tx() as conn:
            self._require_lease(conn, namespace, lease)
            conn.execute(
                "INSERT OR IGNORE INTO lease_resources (namespace, lease, kind, id) "
                "VALUES (?, ?, ?, ?)",
                (namespace, lease, kind, id),
            )

    def delete_lease_resource(self, namespace: str, lease: str, kind: str, id: str) -> None:
        """Stop holding resource (kind, id) under the lease."""
        with self.tx() as conn:
            self._require_lease(conn, namespace, lease)
            conn.execute(
                "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND kind = ? "
                "AND id = ?",
                (namespace, lease, kind, id),
            )

    def lease_resources(self, namespace: str, lease: str) -> list[LeaseResource]:
        """What the lease holds."""
        rows = self.conn().execute(
            "SELECT kind, id FROM lease_resources WHERE namespace = ? AND lease = ? "
            "ORDER BY kind, id",
            (check_namespace(namespace), lease),
        )
        return [LeaseResource(kind, rid) for kind, rid in rows.fetchall()]

    def delete_lease(self, namespace: str, lease: str) -> None:
        """Delete the lease and release what it held (collected at the next GC)."""
        with self.tx() as conn:
            cur = conn.execute(
                "DELETE FROM leases WHERE namespace = ? AND id = ?",
                (check_namespace(namespace), lease),
            )
            if cur.rowcount == 0:
                raise NotFound(f"lease {lease!r} not found in namespace {namespace!r}")

    @contextlib.contextmanager
    def lease(self, namespace: str, ttl: timedelta = DEFAULT_LEASE_TTL) -> Iterator[Lease]:
        """A lease for the duration of a block (expiring after ttl if the process dies)."""
        held = self.create_lease(namespace, expire_at=datetime.now(UTC) + ttl)
        try:
            yield held
        finally:
            with contextlib.suppress(NotFound):
                self.delete_lease(namespace, held.id)

    @staticmethod
    def _require_lease(conn: sqlite3.Connection, namespace: str, lease: str) -> None:
        found = conn.execute(
            "SELECT 1 FROM leases WHERE namespace = ? AND id = ?",
            (check_namespace(namespace), lease),
        ).fetchone()
        if not found:
            raise NotFound(f"lease {lease!r} not found in namespace {namespace!r}")
