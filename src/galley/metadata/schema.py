"""The metadata schema, its version, and every migration to it, in one place.

Version 1 (PRAGMA user_version = 1), in <root>/meta.db, WAL journal:

    images           (namespace, name) ─┐ target_json: the Descriptor the name points at
      namespace, name, target_json, labels_json, created_at, updated_at
                                        │ target digest
                                        ▼
    content          (namespace, digest)  a blob this namespace holds (blob bytes: ContentStore)
      namespace, digest, size, labels_json, created_at, updated_at
         labels "containerd.io/gc.ref.content.<x>"       ─▶ child content digests
         labels "containerd.io/gc.ref.snapshot.<sn>"     ─▶ snapshot key in snapshotter <sn>
         label  "containerd.io/gc.root"                  ─▶ this row is a GC root

    leases           (namespace, id)      a temporary GC root (a pull in flight)
      namespace, id, labels_json, created_at, expire_at (NULL: never)
    lease_resources  (namespace, lease, kind, id)   ON DELETE CASCADE with its lease
         kind "content" (id: digest) | "snapshots/<sn>" (id: key) | "ingests" (id: ref)

    snapshots        (namespace, snapshotter, key)  snapshots this namespace uses
      namespace, snapshotter, key, labels_json, created_at

Times are Unix seconds (REAL). Labels are JSON objects of strings.
A migration is a list of SQL statements applied in one transaction with the version bump;
never edit a shipped one: append the next.
"""

from __future__ import annotations

import sqlite3

from galley.errors import FailedPrecondition

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE images (
            namespace TEXT NOT NULL, name TEXT NOT NULL,
            target_json TEXT NOT NULL, labels_json TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, name))""",
        """CREATE TABLE content (
            namespace TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
            labels_json TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, digest))""",
        """CREATE TABLE leases (
            namespace TEXT NOT NULL, id TEXT NOT NULL, labels_json TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL, expire_at REAL,
            PRIMARY KEY (namespace, id))""",
        """CREATE TABLE lease_resources (
            namespace TEXT NOT NULL, lease TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL,
            PRIMARY KEY (namespace, lease, kind, id),
            FOREIGN KEY (namespace, lease) REFERENCES leases (namespace, id) ON DELETE CASCADE)""",
        """CREATE TABLE snapshots (
            namespace TEXT NOT NULL, snapshotter TEXT NOT NULL, key TEXT NOT NULL,
            labels_json TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL,
            PRIMARY KEY (namespace, snapshotter, key))""",
    ),
)

VERSION = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    """The schema version the database is at (0: empty)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _check_version(conn: sqlite3.Connection, path: str) -> int:
    current = version(conn)
    if current > VERSION:
        raise FailedPrecondition(
            f"metadata database {path!r} has schema version {current}, newer than this "
            f"galley's {VERSION}; upgrade galley"
        )
    return current


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the database to VERSION inside one BEGIN IMMEDIATE transaction; returns it.

    Several processes may open a fresh database at once: the write lock serialises them and
    the second finds the work done.
    """
    if version(conn) == VERSION:
        return VERSION
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _check_version(conn, path)
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return VERSION
