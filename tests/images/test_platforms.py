"""Platform parsing, normalisation and selection from an index."""

from __future__ import annotations

import pytest

from galley.content.digest import Digest
from galley.errors import InvalidArgument, NotFound
from galley.images import mediatypes as mt
from galley.images import platforms
from galley.images.mediatypes import Descriptor, Platform


def _desc(n: int, platform: Platform) -> Descriptor:
    return Descriptor(mt.OCI_MANIFEST, Digest("sha256", f"{n:064x}"), 100, platform=platform)


def test_parse_and_normalise() -> None:
    assert platforms.parse("linux/amd64") == Platform("linux", "amd64")
    assert platforms.parse("linux/arm64") == Platform("linux", "arm64", "v8")
    assert platforms.parse("linux/aarch64") == Platform("linux", "arm64", "v8")
    assert platforms.parse("arm") == Platform("linux", "arm", "v7")
    assert platforms.parse("linux/arm/v6") == Platform("linux", "arm", "v6")
    assert platforms.parse("Linux/x86_64") == Platform("linux", "amd64")
    for bad in ("", "linux/", "a/b/c/d", "/amd64"):
        with pytest.raises(InvalidArgument):
            platforms.parse(bad)
    assert platforms.host().os == "linux"


def test_select_prefers_exact_variant() -> None:
    entries = [
        _desc(1, Platform("linux", "amd64")),
        _desc(2, Platform("linux", "arm", "v6")),
        _desc(3, Platform("linux", "arm", "v7")),
        _desc(4, Platform("linux", "arm64")),
    ]
    assert platforms.select(entries, platforms.parse("linux/amd64")).digest == entries[0].digest
    assert platforms.select(entries, platforms.parse("linux/arm/v7")).digest == entries[2].digest
    assert platforms.select(entries, platforms.parse("linux/arm64/v8")).digest == entries[3].digest


def test_select_names_what_the_index_has() -> None:
    entries = [_desc(1, Platform("linux", "amd64")), _desc(2, Platform("windows", "amd64"))]
    with pytest.raises(NotFound, match=r"linux/s390x.*linux/amd64, windows/amd64"):
        platforms.select(entries, platforms.parse("linux/s390x"))


@pytest.mark.parametrize("features", [5, True, ["x", 1], "x"])
def test_an_index_platforms_features_must_be_strings(features: object) -> None:
    """A registry's index with "os.features": 5 ended in a TypeError (session 26)."""
    with pytest.raises(InvalidArgument, match=r"os\.features must be a list of strings"):
        Platform.from_json({"os": "linux", "architecture": "amd64", "os.features": features})
    platform = Platform.from_json({"os": "linux", "architecture": "amd64", "os.features": None})
    assert platform.os_features == ()
