"""The snapshot database opened by several processes at once, fresh, never fails."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from galley.snapshots.storage import SCHEMA_VERSION, Storage


def _open_and_insert(path: str, start: multiprocessing.synchronize.Event, key: str) -> None:
    from galley.snapshots.api import Kind  # noqa: PLC0415 - in the child

    start.wait()
    storage = Storage(path)
    with storage.transaction() as tx:
        tx.create(key, Kind.ACTIVE, "", None)
    storage.close()


@pytest.mark.parametrize("round_", range(3))
def test_many_processes_create_one_database(tmp_path: Path, round_: int) -> None:
    path = str(tmp_path / "metadata.db")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    children = [ctx.Process(target=_open_and_insert, args=(path, start, f"k{i}")) for i in range(8)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(timeout=60)
    assert [child.exitcode for child in children] == [0] * 8
    storage = Storage(path)
    with storage.transaction(write=False) as tx:
        assert sorted(r.info.name for r in tx.walk()) == sorted(f"k{i}" for i in range(8))
    assert storage._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert storage._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    storage.close()
