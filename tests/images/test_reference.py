"""Reference parsing and Docker normalisation."""

from __future__ import annotations

import pytest

from galley.content.digest import Digest
from galley.errors import InvalidArgument
from galley.images.reference import Reference

HEX = "a" * 64


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("index.docker.io/library/alpine:3", "docker.io/library/alpine:3", "alpine:3"),
        ("docker.io/alpine", "docker.io/library/alpine:latest", "alpine:latest"),
        ("127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1", "127.0.0.1:5000/team/app:1"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b/c", "localhost:5000/a/b/c:latest", "localhost:5000/a/b/c:latest"),
        ("ghcr.io/o/r:v1.2_3-x", "ghcr.io/o/r:v1.2_3-x", "ghcr.io/o/r:v1.2_3-x"),
        ("my.reg/a__b/c-d.e", "my.reg/a__b/c-d.e:latest", "my.reg/a__b/c-d.e:latest"),
    ],
)
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = Reference.parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar


def test_digest_references() -> None:
    ref = Reference.parse(f"busybox@sha256:{HEX}")
    assert ref.tag == "" and ref.digest == Digest("sha256", HEX)
    assert ref.object == f"sha256:{HEX}"
    assert str(ref) == f"docker.io/library/busybox@sha256:{HEX}"
    both = Reference.parse(f"host:5000/app:1@sha256:{HEX}")
    assert both.tag == "1" and both.object == f"sha256:{HEX}"
    assert both.repository == "host:5000/app"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" busybox", "spaces"),
        ("BusyBox", "lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox@sha256:abc", "bad digest"),
        (f"busybox@md5:{HEX}", "not supported"),
        ("a//b", "invalid path component"),
        ("a/-b", "invalid path component"),
        ("host:5000/", "no repository"),
        ("bad_host:x:5000/a", "invalid"),
        ("busybox@sha256:" + HEX + "@sha256:" + HEX, "more than one"),
        ("x/" + "a" * 300, "longer than"),
    ],
)
def test_invalid_references_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        Reference.parse(text)


def test_with_tag_and_digest() -> None:
    ref = Reference.parse("busybox")
    assert str(ref.with_tag("2")) == "docker.io/library/busybox:2"
    assert ref.with_digest(Digest("sha256", HEX)).object == f"sha256:{HEX}"
    with pytest.raises(InvalidArgument):
        ref.with_tag("bad tag")
