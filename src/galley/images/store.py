"""Store: the content store, the metadata database and the snapshotters of one galley root.

<root>/
├── content/                 ContentStore (galley.content.store)
├── meta.db                  MetadataStore (galley.metadata.db), SQLite WAL
└── snapshots/<name>/        snapshotters (galley.snapshots), opened on demand
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any

from galley.content.store import ContentStore
from galley.errors import InvalidArgument, NotFound
from galley.images.mediatypes import Descriptor, is_index, is_manifest
from galley.metadata.db import MetadataStore
from galley.snapshots import NAMES, open_snapshotter

if TYPE_CHECKING:
    from collections.abc import Iterator

    from galley.metadata.images import Image
    from galley.snapshots.api import Snapshotter

DEFAULT_ROOT = "/var/lib/galley"
DEFAULT_SNAPSHOTTER = "overlayfs"


class Store:
    """Everything a galley root holds; open with Store.open(root), close when done."""

    def __init__(self, root: str, content: ContentStore, meta: MetadataStore) -> None:
        self.root = root
        self.content = content
        self.meta = meta
        self._snapshotters: dict[str, Snapshotter] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: str) -> Store:
        """Open (creating if needed) the store at root."""
        root = os.path.abspath(root)
        os.makedirs(root, mode=0o700, exist_ok=True)
        content = ContentStore(os.path.join(root, "content"))
        meta = MetadataStore(os.path.join(root, "meta.db"))
        return cls(root, content, meta)

    def find_image(self, namespace: str, name: str) -> Image:
        """The stored image by name as given or normalised ("busybox" → docker.io/library/...)."""
        try:
            return self.meta.get_image(namespace, name)
        except NotFound:
            from galley.images.reference import Reference  # noqa: PLC0415 - only on a miss

            normalised = str(Reference.parse(name))
            if normalised == name:
                raise
            return self.meta.get_image(namespace, normalised)

    def snapshotter(self, name: str = DEFAULT_SNAPSHOTTER) -> Snapshotter:
        """The named snapshotter of this root ("overlayfs" | "native"), opened once."""
        with self._lock:
            found = self._snapshotters.get(name)
            if found is None:
                found = self._snapshotters[name] = open_snapshotter(name, self.root)
            return found

    def snapshotter_names(self) -> list[str]:
        """The known snapshotters that exist on disk under this root, or are open."""
        home = os.path.join(self.root, "snapshots")
        try:
            on_disk = {e.name for e in os.scandir(home) if e.is_dir()}
        except FileNotFoundError:
            on_disk = set()
        with self._lock:
            return sorted((on_disk & set(NAMES)) | set(self._snapshotters))

    def close(self) -> None:
        """Close the database connections and the snapshotters opened."""
        with self._lock:
            for sn in self._snapshotters.values():
                sn.close()
            self._snapshotters.clear()
        self.meta.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


MAX_DOCUMENT = 4 << 20


def read_document(content: ContentStore, desc: Descriptor) -> dict[str, Any]:
    """A manifest, index or config blob as JSON; InvalidArgument if it is not an object."""
    try:
        doc = json.loads(content.read(desc.digest, MAX_DOCUMENT))
    except ValueError as exc:
        raise InvalidArgument(f"content blob {desc.digest} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument(f"content blob {desc.digest} is not a JSON object")
    return doc


def walk_image(content: ContentStore, target: Descriptor) -> Iterator[Descriptor]:
    """Every descriptor reachable from target whose blob is present (index, manifests,
    configs, layers), parents before children; manifests carry their index platform."""
    if not content.exists(target.digest):
        return
    yield target
    if not (is_index(target.media_type) or is_manifest(target.media_type)):
        return
    try:
        doc = read_document(content, target)
    except (InvalidArgument, NotFound):
        return
    children = list(doc.get("manifests") or []) + list(doc.get("layers") or [])
    if isinstance(doc.get("config"), dict):
        children.insert(0, doc["config"])
    for child in children:
        try:
            desc = Descriptor.from_json(child)
        except InvalidArgument:
            continue
        yield from walk_image(content, desc)
