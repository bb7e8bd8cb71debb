"""ContentStore: verified ingest, atomic publish, walk, delete, usage, ingest bookkeeping."""

from __future__ import annotations

import os

import pytest

from galley.content.digest import Digest
from galley.content.store import ContentStore
from galley.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

DATA = os.urandom(3 << 20)
DIGEST = Digest.of_bytes(DATA)


def test_put_and_read_back(store: ContentStore) -> None:
    info = store.put(b"hello")
    assert info.digest == Digest.of_bytes(b"hello")
    assert info.size == 5
    assert store.exists(info.digest)
    assert store.read(info.digest) == b"hello"
    with store.open(info.digest) as f:
        assert f.read() == b"hello"
    assert store.info(info.digest).size == 5
    assert os.stat(store.path(info.digest)).st_mode & 0o777 == 0o444
    assert store.put(b"hello") == info


def test_missing_blob_is_not_found(store: ContentStore) -> None:
    missing = Digest.of_bytes(b"nothing")
    assert not store.exists(missing)
    for call in (store.info, store.open, store.read, store.delete):
        with pytest.raises(NotFound, match=str(missing)):
            call(missing)


def test_read_refuses_oversized_blob(store: ContentStore) -> None:
    info = store.put(b"x" * 100)
    with pytest.raises(InvalidArgument, match="larger than 99 bytes"):
        store.read(info.digest, max_size=99)


def test_writer_verifies_digest_and_publishes_nothing_on_mismatch(store: ContentStore) -> None:
    wrong = Digest.of_bytes(b"something else")
    with store.writer("layer-1", wrong, len(DATA)) as w:
        w.write(DATA)
        with pytest.raises(InvalidArgument) as err:
            w.commit()
    assert str(DIGEST) in str(err.value)
    assert str(wrong) in str(err.value)
    assert list(store.walk()) == []
    assert store.ingests() == []


def test_writer_refuses_short_and_long_content(store: ContentStore) -> None:
    w = store.writer("short", DIGEST, len(DATA))
    w.write(DATA[:100])
    with pytest.raises(InvalidArgument, match=f"got 100 bytes, expected {len(DATA)}"):
        w.commit()
    w = store.writer("long", DIGEST, 10)
    with pytest.raises(InvalidArgument, match="more than the expected 10 bytes"):
        w.write(DATA[:11])
    assert list(store.walk()) == []
    assert store.ingests() == []


def test_writer_commits_streamed_chunks(store: ContentStore) -> None:
    with store.writer("layer", DIGEST, len(DATA)) as w:
        assert w.offset == 0
        for i in range(0, len(DATA), 65536):
            w.write(DATA[i : i + 65536])
        info = w.commit()
    assert info.digest == DIGEST
    assert info.size == len(DATA)
    assert store.usage() == len(DATA)
    assert store.ingests() == []


def test_writer_without_expected_digest_reports_it(store: ContentStore) -> None:
    w = store.writer("anonymous")
    w.write(b"abc")
    assert w.commit().digest == Digest.of_bytes(b"abc")


def test_resume_after_close_continues_at_offset(store: ContentStore) -> None:
    w = store.writer("layer", DIGEST, len(DATA))
    w.write(DATA[:1000])
    w.close()
    [ingest] = store.ingests()
    assert (ingest.ref, ingest.offset, ingest.expected, ingest.total) == (
        "layer",
        1000,
        DIGEST,
        len(DATA),
    )
    assert store.ingest_usage() == 1000
    w = store.writer("layer", DIGEST, len(DATA))
    assert w.offset == 1000
    w.write(DATA[1000:])
    assert w.commit().digest == DIGEST


def test_resume_with_other_expected_digest_starts_over(store: ContentStore) -> None:
    w = store.writer("layer", Digest.of_bytes(b"old"), 3)
    w.write(b"ol")
    w.close()
    w = store.writer("layer", DIGEST, len(DATA))
    assert w.offset == 0
    w.write(DATA)
    assert w.commit().digest == DIGEST


def test_reset_restarts_from_zero(store: ContentStore) -> None:
    w = store.writer("layer", DIGEST, len(DATA))
    w.write(b"garbage")
    w.reset()
    assert w.offset == 0
    w.write(DATA)
    assert w.commit().size == len(DATA)


def test_context_manager_aborts_on_error(store: ContentStore) -> None:
    with pytest.raises(RuntimeError), store.writer("layer", DIGEST, len(DATA)) as w:
        w.write(DATA[:10])
        raise RuntimeError("network broke")
    assert store.ingests() == []


def test_context_manager_keeps_partial_on_keyboard_interrupt(store: ContentStore) -> None:
    with pytest.raises(KeyboardInterrupt), store.writer("layer", DIGEST, len(DATA)) as w:
        w.write(DATA[:10])
        raise KeyboardInterrupt
    assert [i.offset for i in store.ingests()] == [10]


def test_commit_succeeds_when_blob_exists(store: ContentStore) -> None:
    store.put(DATA)
    w = store.writer("again", DIGEST, len(DATA))
    assert w.done
    with pytest.raises(FailedPrecondition, match="already exists"):
        w.write(b"x")
    assert w.commit().digest == DIGEST
    w = store.writer("again-written", None, None)
    w.write(DATA)
    assert w.commit().digest == DIGEST
    assert [i.digest for i in store.walk()] == [DIGEST]


def test_locked_ingest_refuses_second_writer_without_waiting(store: ContentStore) -> None:
    first = store.writer("layer", DIGEST, len(DATA))
    with pytest.raises(Unavailable, match="'layer' is locked"):
        store.writer("layer", DIGEST, len(DATA), timeout=0)
    with pytest.raises(FailedPrecondition, match="being written"):
        store.abort("layer")
    first.close()
    store.abort("layer")
    assert store.ingests() == []
    with pytest.raises(NotFound):
        store.abort("layer")


def test_delete_and_walk(store: ContentStore) -> None:
    a, b = store.put(b"a"), store.put(b"b")
    assert {i.digest for i in store.walk()} == {a.digest, b.digest}
    store.delete(a.digest)
    assert [i.digest for i in store.walk()] == [b.digest]
    assert store.usage() == 1


def test_bad_refs_refused(store: ContentStore) -> None:
    with pytest.raises(InvalidArgument):
        store.writer("")
    with pytest.raises(InvalidArgument):
        store.writer("x", size=-1)


def test_leftovers_of_crashed_writers_are_removed_when_old(store: ContentStore) -> None:
    ingest = os.path.join(store.root, "ingest")
    os.makedirs(os.path.join(ingest, ".trash-1-dead", "sub"))
    with open(os.path.join(ingest, ".trash-put-1-dead"), "wb") as f:
        f.write(b"x")
    w = store.writer("live")
    w.write(b"partial")
    w.close()
    assert store.remove_leftovers() == 0
    assert store.remove_leftovers(older_than_s=-1) == 2
    assert os.listdir(ingest) != []
    assert [i.ref for i in store.ingests()] == ["live"]
