"""Unpacking image layers into snapshots: apply_layer (one tar stream) and unpack_image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from galley.content.digest import Digest

WhiteoutMode = Literal["overlay", "native"]


@dataclass(frozen=True)
class AppliedLayer:
    """What applying a layer produced: the uncompressed tar's digest (diffID) and its size."""

    diff_id: Digest
    size: int


def apply_layer(
    stream: BinaryIO,
    media_type: str,
    dest: str,
    *,
    whiteouts: WhiteoutMode = "overlay",
) -> AppliedLayer:
    """Decompress and apply one layer tar into dest, refusing hostile entries."""
    raise NotImplementedError


def unpack_image(
    store: Any, manifest: Mapping[str, Any], config: Mapping[str, Any], snapshotter_name: str
) -> str:
    """Unpack an image's layers into snapshots keyed by ChainID; returns the top ChainID."""
    raise NotImplementedError
