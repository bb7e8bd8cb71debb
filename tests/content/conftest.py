"""Fixtures for the content store tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from galley.content.store import ContentStore


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    """An empty content store in a temporary directory."""
    return ContentStore(str(tmp_path / "content"))
