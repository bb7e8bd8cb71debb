"""Go's readings of flag values (galley.oci.commands.gosyntax), checked against what Go's
strconv and time packages give for the same text."""

from __future__ import annotations

import pytest

from galley.oci.commands.gosyntax import (
    OutOfRange,
    Unreadable,
    parse_bool,
    parse_duration,
    parse_int,
    parse_uint,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("-1", -1),
        ("+7", 7),
        ("0x1F", 31),
        ("0X1f", 31),
        ("0o17", 15),
        ("017", 15),  # a leading 0: octal
        ("0b101", 5),
        ("1_000", 1000),
        ("0x_1f", 31),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_parse_int_base_0(text: str, value: int) -> None:
    assert parse_int(text) == value


@pytest.mark.parametrize(
    "text", ["", "x", " 1", "1 ", "1.5", "--1", "+-1", "0x", "08", "1__0", "_1", "\u0661", "1e3"]
)
def test_parse_int_refuses(text: str) -> None:
    with pytest.raises(Unreadable):
        parse_int(text)


def test_parse_int_range_and_base_10() -> None:
    with pytest.raises(OutOfRange):
        parse_int("9223372036854775808")
    with pytest.raises(OutOfRange):
        parse_int("-9223372036854775809")
    assert parse_int("017", 10) == 17  # decimal alone: no octal, no prefix, no underscores
    for text in ("0x10", "1_0"):
        with pytest.raises(Unreadable):
            parse_int(text, 10)


@pytest.mark.parametrize(
    ("text", "base"),
    [
        ("18446744073709551616x", 10),  # past 2^64 before the x: Go stops at the overflow
        ("99999999999999999999_", 10),
        ("1__00000000000000000000000", 0),  # before the underscores are looked at
        ("-0x1ffffffffffffffffz", 0),
    ],
)
def test_a_number_too_large_is_out_of_range_before_a_bad_character(text: str, base: int) -> None:
    with pytest.raises(OutOfRange):
        parse_int(text, base)
    with pytest.raises(Unreadable):
        parse_int(text[:3] + "x", base)


def test_parse_uint() -> None:
    assert parse_uint("18446744073709551615", 10) == 2**64 - 1
    with pytest.raises(OutOfRange):
        parse_uint("18446744073709551616", 10)
    for text in ("-1", "+1", "-0"):
        with pytest.raises(Unreadable):
            parse_uint(text, 10)


def test_parse_bool() -> None:
    assert [parse_bool(w) for w in ("1", "t", "T", "TRUE", "true", "True")] == [True] * 6
    assert [parse_bool(w) for w in ("0", "f", "F", "FALSE", "false", "False")] == [False] * 6
    for text in ("", "yes", "tRUE", "2"):
        with pytest.raises(Unreadable):
            parse_bool(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("-1.5h", -5400.0),
        ("+100ms", 0.1),
        ("1h2m3s4ms5us6ns", 3723.004005006),
        ("2µs", 2e-6),
        (".5s", 0.5),
        ("1.s", 1.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_parse_duration_in_whole_nanoseconds_up_to_2_to_the_63() -> None:
    assert parse_duration("9223372036854775807ns") == (2**63 - 1) / 1e9
    assert parse_duration("-9223372036854775808ns") == -(2**63) / 1e9
    assert parse_duration("2562047h") == 2562047 * 3600
    assert parse_duration("1.00000000000000000000000009s") == 1.0  # the digits past ns dropped
    for text in ("9223372036854775808ns", "2562048h", "9223372036s854775808ns", "1" + "0" * 19):
        with pytest.raises(Unreadable):
            parse_duration(text)


@pytest.mark.parametrize("text", ["", "5", "-", "s", "1x", "1.2.3s", "1 s", ".s", "1sm", "1e3s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(Unreadable):
        parse_duration(text)
