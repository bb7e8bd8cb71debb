"""Image records: a name in a namespace pointing at a manifest or index Descriptor."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from galley.errors import AlreadyExists, NotFound
from galley.images.mediatypes import Descriptor
from galley.metadata.transaction import Database, check_namespace, dump_labels, load_labels, now

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Mapping


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Image:
    """A named image: its target descriptor, labels and times (set by the store on put)."""

    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at: datetime = field(default_factory=_utcnow)
    updated_at: datetime = field(default_factory=_utcnow)


_COLUMNS = "name, target_json, labels_json, created_at, updated_at"


def _row_image(row: tuple[str, str, str, float, float]) -> Image:
    name, target, labels, created, updated = row
    return Image(
        name=name,
        target=Descriptor.from_json(json.loads(target)),
        labels=load_labels(labels),
        created_at=datetime.fromtimestamp(created, UTC),
        updated_at=datetime.fromtimestamp(updated, UTC),
    )


def _select(conn: sqlite3.Connection, namespace: str, name: str) -> Image | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
        (namespace, name),
    ).fetchone()
    return _row_image(row) if row else None


_DELETE = "DELETE FROM images WHERE namespace = ? AND name = ?"


def _insert(
    conn: sqlite3.Connection, namespace: str, image: Image, created: float | None = None
) -> Image:
    stamp = now()
    conn.execute(
        "INSERT INTO images (namespace, name, target_json, labels_json, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            namespace,
            image.name,
            json.dumps(image.target.to_json(), sort_keys=True),
            dump_labels(image.labels),
            stamp if created is None else created,
            stamp,
        ),
    )
    stored = _select(conn, namespace, image.name)
    assert stored is not None
    return stored


class ImagesTable(Database):
    """Images per namespace."""

    def put_image(self, namespace: str, image: Image) -> Image:
        """Create or replace the image named image.name; keeps the original created_at."""
        check_namespace(namespace)
        with self.tx() as conn:
            old = _select(conn, namespace, image.name)
            conn.execute(_DELETE, (namespace, image.name))
            return _insert(conn, namespace, image, old.created_at.timestamp() if old else None)

    def create_image(self, namespace: str, image: Image) -> Image:
        """Create an image; AlreadyExists if the name is taken."""
        check_namespace(namespace)
        with self.tx() as conn:
            if _select(conn, namespace, image.name) is not None:
                raise AlreadyExists(f"image {image.name!r} already exists in {namespace!r}")
            return _insert(conn, namespace, image)

    def get_image(self, namespace: str, name: str) -> Image:
        """The image named name; NotFound if absent."""
        found = _select(self.conn(), check_namespace(namespace), name)
        if found is None:
            raise NotFound(f"image {name!r} not found in namespace {namespace!r}")
        return found

    def list_images(self, namespace: str) -> list[Image]:
        """Every image in the namespace, by name."""
        rows = self.conn().execute(
            f"SELECT {_COLUMNS} FROM images WHERE namespace = ? ORDER BY name",
            (check_namespace(namespace),),
        )
        return [_row_image(row) for row in rows.fetchall()]

    def delete_image(self, namespace: str, name: str) -> None:
        """Remove the image record (blobs stay until garbage collection); NotFound if absent."""
        with self.tx() as conn:
            cur = conn.execute(_DELETE, (check_namespace(namespace), name))
            if cur.rowcount == 0:
                raise NotFound(f"image {name!r} not found in namespace {namespace!r}")

    def tag_image(self, namespace: str, source: str, target: str) -> Image:
        """Point name target at the same descriptor as source (replacing target if present)."""
        with self.tx() as conn:
            src = _select(conn, check_namespace(namespace), source)
            if src is None:
                raise NotFound(f"image {source!r} not found in namespace {namespace!r}")
            conn.execute(_DELETE, (namespace, target))
            return _insert(conn, namespace, replace(src, name=target))

    def update_image_labels(
        self, namespace: str, name: str, labels: Mapping[str, str | None]
    ) -> Image:
        """Set (or, with None, remove) labels of an image atomically."""
        with self.tx() as conn:
            old = _select(conn, check_namespace(namespace), name)
            if old is None:
                raise NotFound(f"image {name!r} not found in namespace {namespace!r}")
            merged = {**old.labels, **{k: v for k, v in labels.items() if v is not None}}
            for key in [k for k, v in labels.items() if v is None]:
                merged.pop(key, None)
            conn.execute(
                "UPDATE images SET labels_json = ?, updated_at = ? "
                "WHERE namespace = ? AND name = ?",
                (dump_labels(merged), now(), namespace, name),
            )
            stored = _select(conn, namespace, name)
        assert stored is not None
        return stored
