"""A writer killed mid-ingest leaves a resumable partial; concurrent writers publish once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from galley.content.digest import Digest
from galley.content.store import ContentStore

DATA = bytes(range(256)) * 8192  # 2 MiB
DIGEST = Digest.of_bytes(DATA)

_KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from galley.content.digest import Digest
    from galley.content.store import ContentStore
    data = bytes(range(256)) * 8192
    w = ContentStore(sys.argv[1]).writer("layer", Digest.of_bytes(data), len(data))
    w.write(data[: int(sys.argv[2])])
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_killed_writer_leaves_partial_that_resumes(tmp_path: Path) -> None:
    root = str(tmp_path / "content")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, root, "1234567"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "written"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = ContentStore(root)
    assert list(store.walk()) == []
    [ingest] = store.ingests()
    assert ingest.offset == 1234567
    # The dead writer's lock is gone with it: no waiting here.
    w = store.writer("layer", DIGEST, len(DATA), timeout=0)
    assert w.offset == 1234567
    w.write(DATA[w.offset :])
    assert w.commit().digest == DIGEST
    assert store.ingests() == []
    assert store.read(DIGEST) == DATA


def _write_same_blob(root: str) -> tuple[bool, int]:
    """Write DATA under a shared ref unless another process already has; (wrote, size)."""
    store = ContentStore(root)
    with store.writer("shared-layer", DIGEST, len(DATA)) as w:
        wrote = not w.done
        if wrote:
            w.reset()
            for i in range(0, len(DATA), 1 << 16):
                w.write(DATA[i : i + (1 << 16)])
        return wrote, w.commit().size


def test_concurrent_writers_of_one_blob_write_it_once(tmp_path: Path) -> None:
    root = str(tmp_path / "content")
    ContentStore(root)
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_write_same_blob, [root] * 8))
    assert [size for _, size in results] == [len(DATA)] * 8
    assert sum(wrote for wrote, _ in results) == 1
    store = ContentStore(root)
    assert [i.digest for i in store.walk()] == [DIGEST]
    assert store.ingests() == []
    assert store.read(DIGEST) == DATA


def _commit_many(args: tuple[str, int]) -> list[Digest]:
    """Commit 30 distinct blobs one after another under one ref shared with other processes."""
    root, worker = args
    store = ContentStore(root)
    out = []
    for i in range(30):
        with store.writer("busy-ref") as w:
            w.reset()
            w.write(f"{worker}-{i}".encode())
            out.append(w.commit().digest)
    return out


def test_ref_reused_by_racing_processes_never_mixes_writers(tmp_path: Path) -> None:
    root = str(tmp_path / "content")
    ContentStore(root)
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_commit_many, [(root, w) for w in range(4)]))
    want = {Digest.of_bytes(f"{w}-{i}".encode()) for w in range(4) for i in range(30)}
    assert {d for r in results for d in r} == want
    store = ContentStore(root)
    assert {i.digest for i in store.walk()} == want
    assert store.ingests() == []
    assert os.listdir(os.path.join(root, "ingest")) == []
