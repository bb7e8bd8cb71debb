"""What every verb gets: the global options, the store (opened on first use), the streams."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from galley.images.push import find_image
from galley.images.store import Store

if TYPE_CHECKING:
    from galley.metadata.images import Image


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
        """The image a user means by name: exact, else its normalised reference."""
        return find_image(self.store, self.namespace, name)

    def print(self, text: str = "") -> None:
        """A line on stdout."""
        print(text, file=self.out)
