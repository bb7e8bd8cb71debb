"""Go's readings of a command-line value, which runc's flags get: strconv's integers and
booleans, time's durations. A runc caller writes `--preserve-fds 0x2`, `--detach=f` or
`--interval 1m30s`; galley-runc reads each as runc does and refuses what runc refuses."""

from __future__ import annotations

from galley.errors import go_quote

# strconv.ParseBool's words.
TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# time.ParseDuration's units, in nanoseconds.
UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9}
UNITS["h"] = 60 * UNITS["m"]


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
    """strconv.ParseInt(text, base, bits), base 0 or 10: a sign, then parse_uint's reading.
    A number too large for bits is OutOfRange even when a bad character follows it (Go
    stops at the overflow)."""
    sign, digits = (text[0], text[1:]) if text[:1] in {"+", "-"} else ("", text)
    try:
        magnitude = parse_uint(digits, base, bits)
    except OutOfRange:
        raise OutOfRange(text) from None
    except Unreadable:
        raise Unreadable(text) from None
    if magnitude > 2 ** (bits - 1) - (sign != "-"):
        raise OutOfRange(text)
    return -magnitude if sign == "-" else magnitude


def parse_uint(text: str, base: int = 0, bits: int = 64) -> int:
    """strconv.ParseUint(text, base, bits), base 0 or 10, as Go reads it: one character at
    a time, failing at the first that is no digit of the base (Unreadable) or that takes
    the value past bits (OutOfRange), whichever comes first.

    Base 0 reads a prefix as Go's integer literals do (0b, 0o, 0x, or a leading 0 for
    octal) and takes underscores, if each stands between digits; base 10 takes decimal
    digits alone. No sign, and no spaces (Python's int() takes them)."""
    underscores_allowed = base == 0
    base, digits = _literal_base(text) if base == 0 else (base, text)
    if not text:
        raise Unreadable(text)
    value, underscores = 0, False
    for char in digits:
        if char == "_" and underscores_allowed:
            underscores = True
            continue
        digit = _DIGITS.find(char.lower()) if char.isascii() else -1
        if not 0 <= digit < base:
            raise Unreadable(text)
        value = value * base + digit
        if value >= 2**bits:
            raise OutOfRange(text)
    if underscores and not _underscores_between_digits(text):
        raise Unreadable(text)
    return value


_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIXES = {"b": 2, "o": 8, "x": 16}


def _literal_base(text: str) -> tuple[int, str]:
    """The base a Go integer literal's prefix gives, and its digits: 0b, 0o or 0x with a
    digit after it, else a leading 0 for octal ("0" alone is octal 0), else decimal."""
    if text[:1] != "0":
        return 10, text
    prefix = text[1:2].lower()
    if len(text) >= 3 and prefix in _PREFIXES:
        return _PREFIXES[prefix], text[2:]
    return 8, text[1:]


def _underscores_between_digits(text: str) -> bool:
    """Go's rule for a literal's underscores: each follows a digit or the base prefix and
    is followed by a digit."""
    number = text.lower()
    hexadecimal = number[:2] == "0x"
    last = "0" if number[:2] in {"0b", "0o", "0x"} else "^"  # the prefix counts as a digit
    for char in number[2:] if last == "0" else number:
        if char in "0123456789" or (hexadecimal and char in "abcdef"):
            last = "0"
        elif char == "_":
            if last != "0":
                return False
            last = "_"
        elif last == "_":
            return False
        else:
            last = "!"
    return last != "_"


def parse_duration(text: str) -> float:
    """time.ParseDuration, in seconds: a sign, then one or more decimal numbers each with a
    unit ("300ms", "-1.5h", "2h45m"); "0" alone needs none. Read as Go does, in whole
    nanoseconds: past 2^63 ns (292 years) it is refused."""
    rest = text[1:] if text[:1] in {"+", "-"} else text
    negative = text[:1] == "-"
    if rest == "0":
        return 0.0
    if not rest:
        raise Unreadable(text)
    total = 0  # nanoseconds
    while rest:
        whole = _leading(rest, "0123456789")
        rest = rest[len(whole) :]
        fraction = ""
        if rest[:1] == ".":
            fraction = _leading(rest[1:], "0123456789")
            rest = rest[1 + len(fraction) :]
        if not whole and not fraction:
            raise Unreadable(text)  # also "s", ".s" and a unit with nothing before it
        unit = rest[: len(rest) - len(rest.lstrip("nuµμmsh"))]
        rest = rest[len(unit) :]
        if unit not in UNITS or int(whole or "0") > 2**63:
            raise Unreadable(text)
        nanoseconds = UNITS[unit]
        value = int(whole or "0") * nanoseconds
        if fraction:
            numerator, scale = _fraction(fraction)
            value += int(numerator * (nanoseconds / scale))  # Go's float64 sum, truncated
        total += value
        if value > 2**63 or total > 2**63:
            raise Unreadable(text)
    if total > 2**63 - (not negative):
        raise Unreadable(text)
    return (-total if negative else total) / 1e9


def _fraction(digits: str) -> tuple[int, int]:
    """The digits after a duration's point as Go reads them: their value and 10**count, for
    as many as fit in 63 bits (the others are read and dropped)."""
    value, scale = 0, 1
    for char in digits:
        if value > (2**63 - 1) // 10 or value * 10 + int(char) > 2**63:
            break
        value, scale = value * 10 + int(char), scale * 10
    return value, scale


def _leading(text: str, allowed: str) -> str:
    """The longest start of text made of allowed characters."""
    end = 0
    while end < len(text) and text[end] in allowed:
        end += 1
    return text[:end]
