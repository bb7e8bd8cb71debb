"""Resumable, locked, verified writes of one blob, keyed by a caller-chosen ref.

    <content root>/ingest/<sha256(ref)>/
    ├── lock        flock(2) held by the one writer of this ref (other writers wait)
    ├── ref         the ref text, for listing
    ├── expected    the digest the blob must have, when the caller knows it
    ├── total       the size the blob must have, when the caller knows it
    └── data        the bytes received so far; its length is the resume offset

A writer that dies leaves `data` behind; the next writer with the same ref re-hashes it and
continues from its end (an HTTP Range request in the puller). Nothing here is visible as a blob
until `commit()` has checked size and digest, fsynced the data, and renamed it into place.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from galley.content.digest import Digest
from galley.errors import FailedPrecondition, InvalidArgument, Unavailable

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from galley.content.store import BlobInfo

_CHUNK = 1 << 20
_LOCK_POLL_S = 0.02
TRASH_PREFIX = ".trash-"


@dataclass(frozen=True)
class IngestInfo:
    """An in-progress (or abandoned) ingest."""

    ref: str
    offset: int
    expected: Digest | None
    total: int | None
    updated_at: datetime
    path: str


def ingest_dir(ingest_root: str, ref: str) -> str:
    """The directory that holds the ingest for ref."""
    return os.path.join(ingest_root, hashlib.sha256(ref.encode()).hexdigest())


def _read_text(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write_text(directory: str, name: str, text: str) -> None:
    tmp = os.path.join(directory, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, os.path.join(directory, name))


def read_ingest(directory: str) -> IngestInfo | None:
    """Describe the ingest stored in directory, or None if it holds none."""
    ref = _read_text(directory, "ref")
    if ref is None:
        return None
    expected = _read_text(directory, "expected")
    total = _read_text(directory, "total")
    data = os.path.join(directory, "data")
    try:
        st = os.stat(data)
        offset, updated = st.st_size, st.st_mtime
    except FileNotFoundError:
        offset, updated = 0, os.stat(directory).st_mtime
    return IngestInfo(
        ref=ref,
        offset=offset,
        expected=Digest.parse(expected) if expected else None,
        total=int(total) if total else None,
        updated_at=datetime.fromtimestamp(updated, UTC),
        path=directory,
    )


def lock_ingest(directory: str, ref: str, timeout: float | None) -> int:
    """Create directory if needed and flock its lock file; returns the locked fd.

    Waits up to timeout seconds (None: for ever) while another writer holds it. The lock file
    is re-checked after locking: a writer that committed meanwhile has removed the directory,
    and a lock on its unlinked file would protect nothing.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    lock_path = os.path.join(directory, "lock")
    while True:
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # another writer's, or one being retired right now
            pass
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the directory was just committed away: start over
            continue
        if _try_flock(fd, deadline):
            if _still_linked(fd, lock_path):
                return fd
            os.close(fd)
            continue
        os.close(fd)
        raise Unavailable(f"ingest {ref!r} is locked by another writer")


def _still_linked(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _try_flock(fd: int, deadline: float | None) -> bool:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_LOCK_POLL_S)


class Writer:
    """One locked ingest: write() bytes, then commit() to verify and publish the blob.

    `offset` is where writing resumes (non-zero after a crash). `done` is True when the
    expected blob is already in the store: skip writing and call commit(). As a context
    manager it aborts (drops the partial data) when the block raises an Exception, and keeps
    the partial data on KeyboardInterrupt/SystemExit, as it does when the process dies.
    """

    def __init__(
        self,
        directory: str,
        ref: str,
        *,
        expected: Digest | None,
        total: int | None,
        lock_fd: int,
        publish: Callable[[str, Digest], BlobInfo],
        existing: Callable[[Digest], BlobInfo | None],
    ) -> None:
        self.ref = ref
        self.expected = expected
        self.total = total
        self._dir = directory
        self._lock_fd: int | None = lock_fd
        self._publish = publish
        self._existing = existing
        self._hasher = hashlib.sha256()
        self.offset = 0
        self.done = expected is not None and existing(expected) is not None
        self._data = self._open_data()

    def _open_data(self) -> int:
        """Open the data file, discarding it if it was written for another blob."""
        prev_expected = _read_text(self._dir, "expected")
        prev_total = _read_text(self._dir, "total")
        want_expected = str(self.expected) if self.expected else ""
        want_total = str(self.total) if self.total is not None else ""
        stale = (prev_expected or "") != want_expected or (prev_total or "") != want_total
        data_path = os.path.join(self._dir, "data")
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if stale else 0)
        fd = os.open(data_path, flags, 0o600)
        _write_text(self._dir, "ref", self.ref)
        _write_text(self._dir, "expected", want_expected)
        _write_text(self._dir, "total", want_total)
        self._rehash(fd)
        if self.total is not None and self.offset > self.total:
            self._truncate(fd)
        return fd

    def _rehash(self, fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, _CHUNK):
            self._hasher.update(chunk)
            self.offset += len(chunk)

    def _truncate(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        self._hasher = hashlib.sha256()
        self.offset = 0

    def reset(self) -> None:
        """Drop the bytes written so far and start again at offset 0."""
        self._check_open()
        self._truncate(self._data)

    def write(self, data: bytes | memoryview) -> None:
        """Append data; refuses to grow past the expected size."""
        self._check_open()
        if self.done:
            raise FailedPrecondition(f"ingest {self.ref!r}: blob {self.expected} already exists")
        if self.total is not None and self.offset + len(data) > self.total:
            size = self.offset + len(data)
            self.abort()
            raise InvalidArgument(
                f"blob {self.expected or self.ref}: got more than the expected {self.total} "
                f"bytes ({size} so far)"
            )
        view = memoryview(data)
        while view:
            written = os.write(self._data, view)
            view = view[written:]
        self._hasher.update(data)
        self.offset += len(data)

    @property
    def digest(self) -> Digest:
        """The digest of the bytes written so far."""
        return Digest.from_hasher(self._hasher)

    def commit(self) -> BlobInfo:
        """Verify size and digest, then publish the blob atomically; aborts on mismatch."""
        self._check_open()
        if self.done and self.expected is not None:
            info = self._existing(self.expected)
            if info is not None:
                self._remove()
                return info
        if self.total is not None and self.offset != self.total:
            got = self.offset
            self.abort()
            raise InvalidArgument(
                f"blob {self.expected or self.ref}: got {got} bytes, expected {self.total}"
            )
        actual = self.digest
        if self.expected is not None and actual != self.expected:
            self.abort()
            raise InvalidArgument(
                f"blob {self.ref!r}: content has digest {actual}, expected {self.expected}"
            )
        os.fsync(self._data)
        info = self._publish(os.path.join(self._dir, "data"), actual)
        self._remove()
        return info

    def abort(self) -> None:
        """Drop the partial data and release the ingest."""
        if self._lock_fd is not None:
            self._remove()

    def close(self) -> None:
        """Release the lock, keeping the partial data for a later resume."""
        if self._lock_fd is not None:
            os.close(self._data)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove(self) -> None:
        """Move the ingest directory out of the way while holding its lock, then unlock.

        The rename is atomic: a writer waiting on this lock finds the lock path gone (or
        new) and starts over, and no writer can create a file in a directory being deleted.
        """
        trash = os.path.join(
            os.path.dirname(self._dir), f"{TRASH_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        )
        try:
            os.rename(self._dir, trash)
        except FileNotFoundError:
            trash = ""
        self.close()
        if trash:
            shutil.rmtree(trash, ignore_errors=True)

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise FailedPrecondition(f"ingest {self.ref!r} is closed")

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, Exception):
            self.abort()
        else:
            self.close()
