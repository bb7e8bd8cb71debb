"""Fixtures for the metadata tests: a fresh store root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from galley.images.store import Store
from galley.metadata.db import MetadataStore


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetadataStore]:
    """A fresh metadata database."""
    db = MetadataStore(str(tmp_path / "meta.db"))
    yield db
    db.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh galley store root."""
    with Store.open(str(tmp_path / "root")) as opened:
        yield opened
