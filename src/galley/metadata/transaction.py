"""The SQLite connection under every metadata table: WAL, busy timeout, BEGIN IMMEDIATE.

Each thread gets its own connection (sqlite3 connections are not shared across threads), closed
when the thread ends (only weak references are kept here, so a daemon's worker threads leak no
file descriptors);
every write runs in `tx()`, which takes the database write lock up front (BEGIN IMMEDIATE), so
a read-modify-write never loses an update to another process, and waits up to busy_timeout for
the lock instead of failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from galley.errors import InvalidArgument, Unavailable
from galley.metadata import schema

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

BUSY_TIMEOUT_S = 30.0
EPOCH = datetime.fromtimestamp(0, UTC)
_NAMESPACE = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")


def check_namespace(namespace: str) -> str:
    """Validate a containerd-style namespace name (e.g. "k8s.io", "default")."""
    if len(namespace) > 76 or not _NAMESPACE.match(namespace):
        raise InvalidArgument(f"namespace {namespace!r} is not a valid namespace name")
    return namespace


def dump_labels(labels: Mapping[str, str] | None) -> str:
    """Labels as stored: a JSON object of strings."""
    return json.dumps(dict(labels or {}), sort_keys=True)


def load_labels(text: str) -> dict[str, str]:
    """Labels as read back from a row."""
    return {str(k): str(v) for k, v in json.loads(text).items()}


def now() -> float:
    """The current Unix time, as rows store it."""
    return time.time()


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (so dead threads' connections close)."""


def _enable_wal(conn: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying while another process holds the file: switching the journal
    mode needs an exclusive lock, and SQLite answers "database is locked" at once for it
    instead of waiting in the busy handler (seen with many processes opening a fresh file)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class Database:
    """A metadata database file: per-thread connections, migrations run once on open."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._all: weakref.WeakSet[_Connection] = weakref.WeakSet()
        self._all_lock = threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        schema.migrate(self.conn(), path)

    def conn(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
                factory=_Connection,
            )
            _enable_wal(conn, self._busy_timeout)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.add(conn)
        return conn

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database write lock from its first statement."""
        conn = self.conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise Unavailable(f"metadata database {self.path!r} is busy: {exc}") from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one consistent state."""
        conn = self.conn()
        conn.execute("BEGIN DEFERRED")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened."""
        with self._all_lock:
            for conn in list(self._all):
                conn.close()
            self._all.clear()
        self._local = threading.local()
