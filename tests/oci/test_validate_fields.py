"""The string checks that stand in for regular expressions in config.json validation."""

from __future__ import annotations

import pytest

from galley.errors import InvalidArgument
from galley.oci.validate_fields import MAX_CPUS, cpuset, is_semver


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1.0.2", True),
        ("1.2.0-rc.1", True),
        ("1.0.0+dev", True),
        ("1.0.0-rc1+build.5", True),
        ("1.0", False),
        ("a.b.c", False),
        ("1.0.0-", False),
        ("1.0.0-a b", False),
        ("1.0.0.0", False),
        ("\uff11.0.0", False),  # a full-width digit one
    ],
)
def test_semver(text: str, ok: bool) -> None:
    assert is_semver(text) is ok


@pytest.mark.parametrize("text", ["", "0", "0-3,5", " 0 , 2-4 "])
def test_node_lists_accepted(text: str) -> None:
    cpuset(MAX_CPUS, "CPU")("linux.resources.cpu.cpus", text)


@pytest.mark.parametrize("text", ["0-", "a", "1,,2", "0-3-4", "-1"])
def test_node_lists_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^linux\.resources\.cpu\.cpus"):
        cpuset(MAX_CPUS, "CPU")("linux.resources.cpu.cpus", text)
