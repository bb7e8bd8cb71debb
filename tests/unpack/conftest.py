"""Fixtures of the unpack tests: a fresh store per test (shared with tests/images)."""

from tests.images.support import store

__all__ = ["store"]
