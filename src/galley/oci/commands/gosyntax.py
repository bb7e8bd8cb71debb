"""Go's readings of a command-line value, which runc's flags get: strconv's integers and
booleans, time's durations. A runc caller writes `--preserve-fds 0x2`, `--detach=f` or
`--interval 1m30s`; galley-runc reads each as runc does and refuses what runc refuses."""

from __future__ import annotations

from galley.errors import go_quote

# strconv.ParseBool's words.
TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# time.ParseDuration's units, in seconds.
UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class Unreadable(ValueError):
    """strconv's ErrSyntax: the text is no value of the kind asked for."""


class OutOfRange(ValueError):
    """strconv's ErrRange: a number past the type's bounds."""


def strconv_words(function: str, text: str, error: ValueError) -> str:
    """strconv's error as Go prints it: 'strconv.ParseInt: parsing "x": invalid syntax'."""
    why = "value out of range" if isinstance(error, OutOfRange) else "invalid syntax"
    return f"strconv.{function}: parsing {go_quote(text)}: {why}"


def parse_bool(text: str) -> bool:
    """strconv.ParseBool."""
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise Unreadable(text)


def parse_int(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseInt(text, base, bits), base 0 or 10.

    Base 0 reads a prefix as Go's integer literals do (0x, 0o, 0b, or a leading 0 for
    octal) and takes underscores between digits; base 10 reads decimal digits alone. A sign
    may lead; spaces may not (Python's int() takes them)."""
    sign, digits = (text[0], text[1:]) if text[:1] in {"+", "-"} else ("", text)
    if not (digits.isascii() and digits.replace("_", "").isalnum() and digits[0].isdigit()):
        raise Unreadable(text)  # no spaces, which Python's int() would take
    if base == 10:
        if not digits.isdigit():
            raise Unreadable(text)
        literal = digits
    elif len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXoObB":
        literal = "0o" + digits[1:]  # 017 is octal, as in Go
    else:
        literal = digits
    try:
        value = int(sign + literal, 0 if base == 0 else 10)
    except ValueError:
        raise Unreadable(text) from None
    if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise OutOfRange(text)
    return value


def parse_uint(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseUint(text, base, bits): as parse_int, without a sign."""
    if text[:1] in {"+", "-"}:
        raise Unreadable(text)
    value = parse_int(text, base, bits + 1)
    if value >= 2**bits:
        raise OutOfRange(text)
    return value


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds: a sign, then one or more decimal numbers each with a
    unit ("300ms", "-1.5h", "2h45m"); "0" alone needs none."""
    rest = text[1:] if text[:1] in {"+", "-"} else text
    negative = text[:1] == "-"
    if rest == "0":
        return 0.0
    if not rest:
        raise Unreadable(text)
    total = 0.0
    while rest:
        number = _leading(rest, "0123456789.")
        if number in {"", "."}:
            raise Unreadable(text)
        rest = rest[len(number) :]
        unit = _leading(rest, "nuµμmsh")
        if unit not in UNITS:
            raise Unreadable(text)
        rest = rest[len(unit) :]
        if number.count(".") > 1:
            raise Unreadable(text)
        total += float(number) * UNITS[unit]
    if total > 2**63 / 1e9:  # Go keeps a duration in int64 nanoseconds
        raise Unreadable(text)
    return -total if negative else total


def _leading(text: str, allowed: str) -> str:
    """The longest start of text made of allowed characters."""
    end = 0
    while end < len(text) and text[end] in allowed:
        end += 1
    return text[:end]
