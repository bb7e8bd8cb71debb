"""What a registry answers is hostile input: manifests, indexes, image configs and token
answers with a field broken are refused with InvalidArgument (PermissionDenied for a token),
never with a TypeError or a ValueError from deep inside (session 26 found three: urls and
os.features of another type, a token's "expires_in": Infinity)."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from typing import Any

import pytest

from galley.errors import InvalidArgument, PermissionDenied
from galley.images import auth
from galley.images import mediatypes as mt

DIGEST = "sha256:" + "a" * 64
MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": DIGEST,
        "size": 9,
    },
    "layers": [
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": DIGEST,
            "size": 5,
            "urls": ["https://example.org/l"],
            "annotations": {"a": "b"},
        }
    ],
}
INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": DIGEST,
            "size": 7,
            "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
        },
        {
            "mediaType": mt.OCI_MANIFEST,
            "digest": DIGEST,
            "size": 7,
            "platform": {"os": "windows", "architecture": "amd64", "os.features": ["win32k"]},
        },
    ],
}
CONFIG = {
    "architecture": "amd64",
    "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [DIGEST]},
}
TOKEN = {"token": "t", "access_token": "t", "expires_in": 300}

VALUES: list[object] = [
    None, True, 0, -1, 2**64, 1.5, float("nan"), float("inf"),
    "", "x", "sha256:zz", [], [1], {}, {"a": 1},
]  # fmt: skip


def nodes(value: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found += nodes(item, (*path, key))
    return found


def broken(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    """doc with one or two of its fields replaced by a value of another kind, or removed."""
    r = random.Random(seed)
    doc = copy.deepcopy(doc)
    for _ in range(r.choice([1, 2])):
        path = r.choice(nodes(doc))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and r.random() < 0.2:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(r.choice(VALUES))
    return doc


def outcomes(
    doc: dict[str, Any], read: Callable[[bytes], object], refusal: type[Exception]
) -> tuple[int, int]:
    """(read, refused) counts of read over 400 broken copies of doc; anything but refusal
    raised fails the test."""
    counts = [0, 0]
    for seed in range(400):
        try:
            read(json.dumps(broken(doc, seed)).encode())
            counts[0] += 1
        except refusal:
            counts[1] += 1
    return counts[0], counts[1]


def read_manifest_or_index(data: bytes) -> None:
    media_type, obj = mt.detect_media_type(data, "", "manifest")
    if mt.is_index(media_type):
        for desc in mt.descriptors(obj, "manifests", "index"):
            str(desc.platform)
    else:
        mt.Descriptor.from_json(obj.get("config"))
        mt.descriptors(obj, "layers", "manifest")


def read_config(data: bytes) -> None:
    config = mt.parse_json_object(data, "config")
    mt.diff_ids(config, "config")
    mt.Platform.from_json(config)


def read_token(data: bytes) -> None:
    token, expires = auth.parse_token_response(data, "https://auth.example")
    assert isinstance(token, str) and token
    assert isinstance(expires, int) and not isinstance(expires, bool)


@pytest.mark.parametrize(
    ("doc", "read", "refusal"),
    [
        (MANIFEST, read_manifest_or_index, InvalidArgument),
        (INDEX, read_manifest_or_index, InvalidArgument),
        (CONFIG, read_config, InvalidArgument),
        (TOKEN, read_token, PermissionDenied),
    ],
    ids=["manifest", "index", "config", "token"],
)
def test_a_broken_document_is_read_or_refused_by_name(
    doc: dict[str, Any], read: Callable[[bytes], object], refusal: type[Exception]
) -> None:
    read_ok, refused = outcomes(doc, read, refusal)
    assert read_ok and refused, (read_ok, refused)  # the breaks reach both ends
