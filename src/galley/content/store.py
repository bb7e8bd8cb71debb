"""ContentStore: blobs by digest on disk, published only whole and verified.

    <root>/                         (the store root's content/ directory)
    ├── blobs/sha256/<hex>          committed blobs, mode 0444, renamed into place
    └── ingest/<sha256(ref)>/       in-progress writes (see galley.content.ingest)

Labels and references live in the metadata store; this layer knows only bytes and digests.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO

from galley.content.digest import SHA256, Digest
from galley.content.ingest import (
    TRASH_PREFIX,
    IngestInfo,
    Writer,
    ingest_dir,
    lock_ingest,
    read_ingest,
)
from galley.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

if TYPE_CHECKING:
    from collections.abc import Iterator


@dataclass(frozen=True)
class BlobInfo:
    """A committed blob."""

    digest: Digest
    size: int
    created_at: datetime


class ContentStore:
    """Blobs by digest under root; thread- and process-safe through ingest locks and rename."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._blobs = os.path.join(root, "blobs", SHA256)
        self._ingest = os.path.join(root, "ingest")
        os.makedirs(self._blobs, exist_ok=True)
        os.makedirs(self._ingest, exist_ok=True)

    def path(self, digest: Digest) -> str:
        """Where the blob with this digest lives (whether or not it exists)."""
        return os.path.join(self.root, "blobs", digest.algorithm, digest.hex)

    def info(self, digest: Digest) -> BlobInfo:
        """The committed blob's size and creation time; NotFound if absent."""
        found = self._stat(digest)
        if found is None:
            raise NotFound(f"content blob {digest} not found")
        return found

    def _stat(self, digest: Digest) -> BlobInfo | None:
        try:
            st = os.stat(self.path(digest))
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def exists(self, digest: Digest) -> bool:
        """Whether the blob is committed."""
        return os.path.exists(self.path(digest))

    def open(self, digest: Digest) -> BinaryIO:
        """Open the blob for reading; NotFound if absent."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content blob {digest} not found") from None

    def read(self, digest: Digest, max_size: int = 4 << 20) -> bytes:
        """The whole blob, refusing one larger than max_size (manifests, configs)."""
        with self.open(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise InvalidArgument(f"content blob {digest} is larger than {max_size} bytes")
        return data

    def put(self, data: bytes, expected: Digest | None = None) -> BlobInfo:
        """Store a small blob held in memory, verified against expected when given.

        No ingest lock is needed: the bytes are verified before they touch the disk, and two
        racing puts rename identical files into place.
        """
        digest = Digest.of_bytes(data)
        if expected is not None and digest != expected:
            raise InvalidArgument(f"blob content has digest {digest}, expected {expected}")
        found = self._stat(digest)
        if found is not None:
            return found
        tmp = os.path.join(self._ingest, f"{TRASH_PREFIX}put-{os.getpid()}-{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            return self._publish(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def writer(
        self,
        ref: str,
        expected: Digest | None = None,
        size: int | None = None,
        *,
        timeout: float | None = None,
    ) -> Writer:
        """Open (or resume) the ingest named ref; waits up to timeout s for its lock.

        Raises Unavailable if another writer still holds the ref after timeout seconds
        (None waits for ever, 0 does not wait).
        """
        if not ref or "\0" in ref:
            raise InvalidArgument(f"ingest ref {ref!r} is empty or contains NUL")
        if size is not None and size < 0:
            raise InvalidArgument(f"ingest {ref!r}: negative size {size}")
        directory = ingest_dir(self._ingest, ref)
        fd = lock_ingest(directory, ref, timeout)
        try:
            return self._open_writer(directory, ref, expected, size, fd)
        except BaseException:
            os.close(fd)
            raise

    def _open_writer(
        self, directory: str, ref: str, expected: Digest | None, size: int | None, fd: int
    ) -> Writer:
        return Writer(
            directory,
            ref,
            expected=expected,
            total=size,
            lock_fd=fd,
            publish=self._publish,
            existing=self._stat,
        )

    def _publish(self, data_path: str, digest: Digest) -> BlobInfo:
        """Rename a verified, fsynced data file into place and fsync the directory."""
        target = self.path(digest)
        os.chmod(data_path, 0o444)
        os.rename(data_path, target)
        dir_fd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return self.info(digest)

    def delete(self, digest: Digest) -> None:
        """Remove a committed blob; NotFound if absent."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"content blob {digest} not found") from None

    def walk(self) -> Iterator[BlobInfo]:
        """Every committed blob, in no particular order."""
        with os.scandir(self._blobs) as entries:
            for entry in entries:
                try:
                    digest = Digest(SHA256, entry.name)
                    st = entry.stat()
                except (InvalidArgument, FileNotFoundError):
                    continue
                yield BlobInfo(digest, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def ingests(self) -> list[IngestInfo]:
        """Every in-progress or abandoned ingest."""
        found = []
        with os.scandir(self._ingest) as entries:
            for entry in entries:
                if entry.name.startswith(TRASH_PREFIX):
                    continue
                with contextlib.suppress(FileNotFoundError, InvalidArgument, ValueError):
                    info = read_ingest(entry.path)
                    if info is not None:
                        found.append(info)
        return found

    def abort(self, ref: str) -> None:
        """Drop an abandoned ingest; FailedPrecondition if a writer holds it."""
        directory = ingest_dir(self._ingest, ref)
        if not os.path.isdir(directory):
            raise NotFound(f"ingest {ref!r} not found")
        try:
            fd = lock_ingest(directory, ref, 0)
        except Unavailable:
            raise FailedPrecondition(f"ingest {ref!r} is being written; not aborted") from None
        self._open_writer(directory, ref, None, None, fd).abort()

    def remove_leftovers(self, older_than_s: float = 3600.0) -> int:
        """Remove what crashed writers left mid-retirement (.trash-*); returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        with os.scandir(self._ingest) as entries:
            for entry in entries:
                if not entry.name.startswith(TRASH_PREFIX):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                    removed += 1
        return removed

    def usage(self) -> int:
        """Bytes held by committed blobs."""
        return sum(info.size for info in self.walk())

    def ingest_usage(self) -> int:
        """Bytes held by partial ingests."""
        return sum(info.offset for info in self.ingests())
