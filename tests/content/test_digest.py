"""Digest: parsing, validation, refusal of other algorithms."""

from __future__ import annotations

import hashlib

import pytest

from galley.content.digest import Digest
from galley.errors import InvalidArgument

HEX = hashlib.sha256(b"galley").hexdigest()


def test_parse_roundtrip() -> None:
    d = Digest.parse(f"sha256:{HEX}")
    assert d == Digest("sha256", HEX)
    assert str(d) == f"sha256:{HEX}"
    assert d.short == HEX[:12]
    assert Digest.of_bytes(b"galley") == d
    assert Digest.of_chunks([b"gal", b"ley"]) == d


@pytest.mark.parametrize(
    "text",
    ["", HEX, f"sha256:{HEX[:-1]}", f"sha256:{HEX.upper()}", f"sha256:{HEX}0", f":{HEX}"],
)
def test_malformed_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed"):
        Digest.parse(text)


def test_other_algorithms_refused_clearly() -> None:
    sha512 = hashlib.sha512(b"x").hexdigest()
    with pytest.raises(InvalidArgument, match="'sha512' is not supported"):
        Digest.parse(f"sha512:{sha512}")
