"""What every verb gets: the global options, the store (opened on first use), the streams."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from galley.errors import InvalidArgument, NotFound
from galley.images.reference import Reference
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
        meta = self.store.meta
        try:
            return meta.get_image(self.namespace, name)
        except NotFound:
            pass
        try:
            full = str(Reference.parse(name))
        except InvalidArgument:
            full = name
        if full != name:
            try:
                return meta.get_image(self.namespace, full)
            except NotFound:
                pass
        raise NotFound(f"image {name!r} not found in namespace {self.namespace!r}")

    def print(self, text: str = "") -> None:
        """A line on stdout."""
        print(text, file=self.out)


def optional_module(module: str, verb: str) -> Any:
    """A module of the image service that this build may not have yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise InvalidArgument(f"`galley {verb}` is not available in this build") from None
