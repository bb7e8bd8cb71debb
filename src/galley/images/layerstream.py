"""The uncompressed bytes of one layer as the tar reader sees them: forward-only, hashed, bounded.

    decompressed blob ──▶ LayerStream.read ──▶ tarfile headers / chunks() file data
                              │
                              ├─ sha256 of every byte (the diffID)
                              └─ position > limit ─▶ InvalidArgument (decompression bomb)

The bound is the smaller of a configured maximum (MAX_LAYER_SIZE by default) and the free
space of the filesystem the layer is written to, measured before it starts: a layer that
cannot fit is refused when it passes the bound, not when the disk is full.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from galley.content.digest import Digest
from galley.errors import InvalidArgument
from galley.images.decompress import CHUNK

if TYPE_CHECKING:
    import tarfile

MAX_LAYER_SIZE = 64 << 30  # default bound on one layer's uncompressed tar
MAX_HEADER_READ = 16 << 20  # a PAX or GNU long-name record bigger than this is hostile


@dataclass(frozen=True)
class SizeLimit:
    """How many uncompressed bytes a layer may have, and what sets that bound (for errors)."""

    size: int
    reason: str


def size_limit(dest: str, max_size: int) -> SizeLimit:
    """The bound for a layer written under dest: max_size, or dest's free space if smaller."""
    if max_size <= 0:
        raise InvalidArgument(f"maximum layer size must be positive, not {max_size}")
    fs = os.statvfs(dest)
    free = fs.f_bavail * fs.f_frsize
    if free < max_size:
        return SizeLimit(free, f"the {free} bytes free under {dest}")
    return SizeLimit(max_size, f"the maximum layer size of {max_size} bytes")


class LayerStream:
    """The uncompressed layer as tarfile reads it: forward-only, hashing every byte that passes.

    tarfile's random-access mode ("r:") only ever seeks forward over a layer read in order, so
    seek() here reads and hashes what it skips. File data is read straight from here (chunks()),
    not through tarfile's stream buffer, which copies its whole read-ahead buffer per header.
    """

    def __init__(self, source: IO[bytes], limit: SizeLimit) -> None:
        self._source = source
        self._limit = limit
        self._hasher = hashlib.sha256()
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > MAX_HEADER_READ:  # only tarfile's header reads come here unbounded
            raise InvalidArgument(
                f"layer has a tar header extension of {n} bytes (at most {MAX_HEADER_READ})"
            )
        data = self._source.read(n)
        self._hasher.update(data)
        self.position += len(data)
        if self.position > self._limit.size:
            raise InvalidArgument(
                f"layer decompresses to more than {self._limit.size} bytes, {self._limit.reason}"
            )
        return data

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = offset if whence == os.SEEK_SET else self.position + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or target < self.position:
            raise io.UnsupportedOperation("a layer stream only seeks forward")
        while self.position < target:
            if not self.read(min(CHUNK, target - self.position)):
                break
        return self.position

    def chunks(self, member: tarfile.TarInfo) -> Iterator[bytes]:
        """The data of regular file member, read directly from the stream."""
        if member.sparse is not None:
            raise InvalidArgument(f"layer entry {member.name!r} is a GNU sparse file, unsupported")
        self.seek(member.offset_data)
        left = member.size
        while left > 0:
            chunk = self.read(min(CHUNK, left))
            if not chunk:
                raise InvalidArgument(f"layer ends inside the data of entry {member.name!r}")
            left -= len(chunk)
            yield chunk

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left: end-of-archive blocks, padding."""
        while self.read(CHUNK):
            pass

    def digest(self) -> Digest:
        """The sha256 of every byte read so far."""
        return Digest.from_hasher(self._hasher)
