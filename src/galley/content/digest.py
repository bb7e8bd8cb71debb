"""The Digest value type: `sha256:<64 hex>`, validated where it crosses a boundary."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from galley.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Iterable

SHA256 = "sha256"
_HEX_LENGTH = {SHA256: 64}
_HEX_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest; only sha256 is supported, other algorithms are refused clearly."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm not in _HEX_LENGTH:
            raise InvalidArgument(
                f"digest algorithm {self.algorithm!r} is not supported (only sha256)"
            )
        length = _HEX_LENGTH[self.algorithm]
        if len(self.hex) != length or not _HEX_CHARS.issuperset(self.hex):
            raise InvalidArgument(
                f"digest '{self.algorithm}:{self.hex}' is malformed: "
                f"want {length} lowercase hex characters"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse "sha256:<hex>"; raises InvalidArgument for anything else."""
        algorithm, sep, hexpart = text.partition(":")
        if not sep or not algorithm:
            raise InvalidArgument(f"digest {text!r} is malformed: want '<algorithm>:<hex>'")
        return cls(algorithm, hexpart)

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        """The sha256 digest of data."""
        return cls(SHA256, hashlib.sha256(data).hexdigest())

    @classmethod
    def of_chunks(cls, chunks: Iterable[bytes]) -> Digest:
        """The sha256 digest of the concatenated chunks."""
        hasher = hashlib.sha256()
        for chunk in chunks:
            hasher.update(chunk)
        return cls(SHA256, hasher.hexdigest())

    @classmethod
    def from_hasher(cls, hasher: hashlib._Hash) -> Digest:
        """The digest a running sha256 hasher has computed so far."""
        return cls(hasher.name, hasher.hexdigest())

    def hasher(self) -> hashlib._Hash:
        """A fresh hasher for this digest's algorithm."""
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        """The first 12 hex characters, as image tables show them."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
