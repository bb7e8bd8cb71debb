"""What every verb gets: the global options, the store (opened on first use), the streams."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from galley.content.digest import SHA256
from galley.errors import InvalidArgument, NotFound
from galley.images.store import Store

if TYPE_CHECKING:
    from galley.metadata.images import Image

_HEX = re.compile(r"[0-9a-f]+")


@dataclass
class Context:
    """The global options of one `galley` run and the store they name."""

    root: str
    hosts_dir: str
    namespace: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _store: Store | None = None

    @property
    def store(self) -> Store:
        """The store at --root, opened (and created) on first use."""
        if self._store is None:
            self._store = Store.open(self.root)
        return self._store

    def close(self) -> None:
        """Close the store if it was opened."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def image(self, name: str) -> Image:
        """The image a user means: by name (exact or normalised), or by a digest prefix."""
        try:
            return self.store.find_image(self.namespace, name)
        except (NotFound, InvalidArgument):
            found = self.images_by_digest(name)
            if len({i.target.digest for i in found}) == 1:
                return found[0]
            if found:
                raise InvalidArgument(
                    f"digest prefix {name!r} is ambiguous: it names several images"
                ) from None
            raise

    def images_by_digest(self, text: str) -> list[Image]:
        """The images whose target digest is text or starts with it (at least 6 hex)."""
        prefix = text.removeprefix(f"{SHA256}:")
        if len(prefix) < 6 or not _HEX.fullmatch(prefix):
            return []
        images = self.store.meta.list_images(self.namespace)
        return [i for i in images if i.target.digest.hex.startswith(prefix)]

    def print(self, text: str = "") -> None:
        """A line on stdout."""
        print(text, file=self.out)
