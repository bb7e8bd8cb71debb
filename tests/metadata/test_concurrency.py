"""Several processes writing one metadata database at once: no lost update, no corruption."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from galley.content.digest import Digest
from galley.images.mediatypes import OCI_MANIFEST, Descriptor
from galley.metadata.db import MetadataStore
from galley.metadata.images import Image

WORKERS = 4
ROUNDS = 25


def _work(args: tuple[str, int]) -> None:
    """Tag images, and bump a shared counter label read-modify-write, ROUNDS times."""
    path, worker = args
    meta = MetadataStore(path)
    for i in range(ROUNDS):
        target = Descriptor(OCI_MANIFEST, Digest.of_bytes(f"{worker}-{i}".encode()), 1)
        meta.put_image("default", Image(f"w{worker}/img:{i}", target))
        meta.tag_image("default", f"w{worker}/img:{i}", f"w{worker}/tag:{i}")
        with meta.tx() as conn:
            row = conn.execute(
                "SELECT labels_json FROM images WHERE namespace='default' AND name='counter'"
            ).fetchone()
            count = int(row[0].split('"')[3]) if row else 0
            conn.execute(
                "UPDATE images SET labels_json = ? WHERE namespace='default' AND name='counter'",
                (f'{{"n": "{count + 1}"}}',),
            )
    meta.close()


def test_parallel_writers_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "meta.db")
    meta = MetadataStore(path)
    meta.put_image(
        "default", Image("counter", Descriptor(OCI_MANIFEST, Digest.of_bytes(b"c"), 1), {"n": "0"})
    )
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(_work, [(path, w) for w in range(WORKERS)]))
    assert len(meta.list_images("default")) == 1 + 2 * WORKERS * ROUNDS
    assert meta.get_image("default", "counter").labels == {"n": str(WORKERS * ROUNDS)}
    assert meta.get_image("default", "w3/tag:7").target.digest == Digest.of_bytes(b"3-7")
    meta.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()


def _open_and_count(path: str) -> int:
    meta = MetadataStore(path)
    count = len(meta.list_images("default"))
    meta.close()
    return count


def test_fresh_database_opened_by_many_processes_migrates_once(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    with ProcessPoolExecutor(WORKERS) as pool:
        list(pool.map(_open_and_count, [path] * WORKERS))
    assert MetadataStore(path).list_images("default") == []


_KILLED_WRITER = """
import sys
from galley.content.digest import Digest
from galley.images.mediatypes import OCI_MANIFEST, Descriptor
from galley.metadata.db import MetadataStore
from galley.metadata.images import Image
meta = MetadataStore(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    target = Descriptor(OCI_MANIFEST, Digest.of_bytes(str(i).encode()), i)
    meta.put_image("default", Image(f"img:{i}", target, {"n": str(i)}))
    with meta.tx() as conn:
        conn.execute("UPDATE images SET labels_json = ? WHERE name = 'img:0'", (f'{{"n": "{i}"}}',))
    i += 1
"""


def test_writer_killed_mid_transaction_leaves_a_whole_database(tmp_path: Path) -> None:
    path = str(tmp_path / "meta.db")
    for delay in (0.05, 0.13, 0.21):
        proc = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WRITER, path], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    meta = MetadataStore(path)
    for image in meta.list_images("default"):
        n = int(image.name.partition(":")[2])
        assert image.target.size == n
        assert image.target.digest == Digest.of_bytes(str(n).encode())
    assert len(meta.list_images("default")) > 0
    meta.close()
