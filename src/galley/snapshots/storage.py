"""A snapshotter's own SQLite store: snapshots by key, their parents, kinds, labels and usage.

    <home>/metadata.db  (WAL; PRAGMA user_version = SCHEMA_VERSION)

    snapshots
    ├── id          INTEGER PRIMARY KEY AUTOINCREMENT   dir snapshots/<id>; never reused
    ├── key         TEXT UNIQUE NOT NULL                active/view key, or committed name
    ├── kind        TEXT NOT NULL                       'view' | 'active' | 'committed'
    ├── parent_id   INTEGER → snapshots.id              NULL for a base layer; RESTRICT on delete
    ├── created_at, updated_at   REAL (seconds since the epoch)
    └── size, inodes             INTEGER                measured at commit (committed only)
    labels
    └── (snapshot_id → snapshots.id ON DELETE CASCADE, name, value)  PK (snapshot_id, name)

Every change runs in one `BEGIN IMMEDIATE` transaction, so several processes (galleyd and a
CLI, two pulls) share the store without lost updates; readers never see half a change.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from galley.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound
from galley.snapshots.api import Info, Kind, Usage

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
    parent_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    inodes INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS labels (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, name)
);
"""


@dataclass(frozen=True)
class Record:
    """One snapshot row: its directory id, its Info, and its measured usage."""

    id: int
    parent_id: int | None
    info: Info
    usage: Usage


class Transaction:
    """The queries of one open transaction (only valid inside Storage.transaction())."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def find(self, key: str) -> Record | None:
        """The snapshot with this key or name, or None."""
        row = self._conn.execute(
            "SELECT s.id, s.parent_id, s.key, s.kind, COALESCE(p.key, ''), s.created_at,"
            " s.updated_at, s.size, s.inodes FROM snapshots s"
            " LEFT JOIN snapshots p ON p.id = s.parent_id WHERE s.key = ?",
            (key,),
        ).fetchone()
        return None if row is None else self._record(row)

    def get(self, key: str) -> Record:
        """The snapshot with this key or name; NotFound otherwise."""
        record = self.find(key)
        if record is None:
            raise NotFound(f"snapshot {key!r} does not exist")
        return record

    def _record(self, row: Any) -> Record:
        sid, parent_id, key, kind, parent, created, updated, size, inodes = row
        labels = dict(
            self._conn.execute("SELECT name, value FROM labels WHERE snapshot_id = ?", (sid,))
        )
        info = Info(
            name=str(key),
            kind=Kind(kind),
            parent=str(parent),
            labels=labels,
            created_at=float(created),
            updated_at=float(updated),
        )
        usage = Usage(int(size), int(inodes))
        return Record(int(sid), None if parent_id is None else int(parent_id), info, usage)

    def check_new(self, key: str, parent: str) -> list[int]:
        """Check that key is free and parent committed; the parent chain's ids, nearest first."""
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        if self.find(key) is not None:
            raise AlreadyExists(f"snapshot {key!r} already exists")
        if not parent:
            return []
        above = self.get(parent)
        if above.info.kind is not Kind.COMMITTED:
            raise FailedPrecondition(
                f"snapshot {parent!r} is {above.info.kind.value}; only a committed snapshot "
                "can be a parent"
            )
        return [above.id, *self.chain(above)]

    def create(self, key: str, kind: Kind, parent: str, labels: Mapping[str, str] | None) -> Record:
        """Insert a new active or view snapshot on committed parent ("" for none)."""
        parents = self.check_new(key, parent)
        now = time.time()
        self._conn.execute(
            "INSERT INTO snapshots (key, kind, parent_id, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (key, kind.value, parents[0] if parents else None, now, now),
        )
        record = self.get(key)
        self._set_labels(record.id, labels or {})
        return self.get(key)

    def commit(self, name: str, key: str, usage: Usage, labels: Mapping[str, str] | None) -> Record:
        """Turn active snapshot key into committed snapshot name, recording its usage."""
        record = self.get(key)
        if record.info.kind is not Kind.ACTIVE:
            raise FailedPrecondition(
                f"snapshot {key!r} is {record.info.kind.value}; only an active one can be committed"
            )
        if self.find(name) is not None:
            raise AlreadyExists(f"snapshot {name!r} already exists")
        self._conn.execute(
            "UPDATE snapshots SET key = ?, kind = 'committed', updated_at = ?, size = ?,"
            " inodes = ? WHERE id = ?",
            (name, time.time(), usage.size, usage.inodes, record.id),
        )
        if labels is not None:
            self._set_labels(record.id, labels)
        return self.get(name)

    def remove(self, key: str) -> Record:
        """Delete snapshot key, refusing a committed snapshot that still has children."""
        record = self.get(key)
        child = self._conn.execute(
            "SELECT key FROM snapshots WHERE parent_id = ? LIMIT 1", (record.id,)
        ).fetchone()
        if child is not None:
            raise FailedPrecondition(
                f"snapshot {key!r} is the parent of snapshot {child[0]!r}; remove that first"
            )
        self._conn.execute("DELETE FROM snapshots WHERE id = ?", (record.id,))
        return record

    def update_labels(self, key: str, labels: Mapping[str, str]) -> Record:
        """Replace snapshot key's labels."""
        record = self.get(key)
        self._set_labels(record.id, labels)
        self._conn.execute(
            "UPDATE snapshots SET updated_at = ? WHERE id = ?", (time.time(), record.id)
        )
        return self.get(key)

    def _set_labels(self, sid: int, labels: Mapping[str, str]) -> None:
        self._conn.execute("DELETE FROM labels WHERE snapshot_id = ?", (sid,))
        self._conn.executemany(
            "INSERT INTO labels (snapshot_id, name, value) VALUES (?, ?, ?)",
            [(sid, str(k), str(v)) for k, v in labels.items()],
        )

    def chain(self, record: Record) -> list[int]:
        """The directory ids of record's parents, nearest first."""
        ids: list[int] = []
        parent_id = record.parent_id
        while parent_id is not None:
            ids.append(parent_id)
            row = self._conn.execute(
                "SELECT parent_id FROM snapshots WHERE id = ?", (parent_id,)
            ).fetchone()
            if row is None:
                raise Internal(f"snapshot id {parent_id} is missing from its child's chain")
            parent_id = row[0]
        return ids

    def walk(self) -> list[Record]:
        """Every snapshot, in creation order."""
        keys = [row[0] for row in self._conn.execute("SELECT key FROM snapshots ORDER BY id")]
        return [self.get(key) for key in keys]

    def ids(self) -> set[int]:
        """Every snapshot's directory id."""
        return {row[0] for row in self._conn.execute("SELECT id FROM snapshots")}


class Storage:
    """The SQLite database of one snapshotter, shared safely by threads and processes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._enter_wal()
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self.transaction():
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise FailedPrecondition(
                    f"snapshot database {path!r} has schema {version}, newer than this galley's "
                    f"{SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _enter_wal(self) -> None:
        """Switch a new database to WAL; two processes creating it at once may see it locked.

        Changing the journal mode needs the database to itself, and SQLite answers "locked"
        at once rather than waiting (no busy handler), so wait here.
        """
        deadline = time.monotonic() + 30
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield Transaction(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
