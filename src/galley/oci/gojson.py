"""What Go's encoding/json says of a document that is no JSON: runc's words for a bad
config.json, process file or resources file.

Python's json reports "Expecting property name enclosed in double quotes: line 1 column 3
(char 2)"; runc says "invalid character 'i' looking for beginning of object key string".
This module reads the bytes by RFC 8259's grammar, refusing at the byte where Go's scanner
refuses, and words the first error as a json.Decoder reading one value does: "EOF" for no
value at all, "unexpected EOF" for a value cut short, "invalid character ... after top-level
value" for bytes after the value (runc's Decoder ignores those; galley refuses them, in the
words json.Unmarshal uses). Only the error path imports it.
"""

from __future__ import annotations

from galley.errors import go_quote

_SPACE = b" \t\r\n"
_DIGITS = b"0123456789"
_HEX = b"0123456789abcdefABCDEF"
_ESCAPES = b'bfnrt\\/"'
_CONTROL = bytes(range(0x20))
_LITERALS = {ord("t"): b"true", ord("f"): b"false", ord("n"): b"null"}


class _Invalid(Exception):
    """The scanner's error at one byte."""

    def __init__(self, char: int, context: str) -> None:
        super().__init__(f"invalid character {_quote_char(char)} {context}")


class _CutShort(Exception):
    """The input ended inside a value."""


def _quote_char(char: int) -> str:
    """A byte as Go's scanner quotes it: in single quotes, escaped as strconv.Quote escapes
    the rune of the same number (so a UTF-8 lead byte 0xc3 reads 'Ã')."""
    if char == ord("'"):
        return "'\\''"
    if char == ord('"'):
        return "'\"'"
    return "'" + go_quote(chr(char))[1:-1] + "'"


def syntax_error(data: bytes) -> str | None:
    """Go's error for data as one JSON document, or None where Go reads it as JSON."""
    reader = _Scanner(data)
    try:
        start = reader.skip_space(0)
        if start == len(data):
            return "EOF"
        reader.document(start)
    except _Invalid as invalid:
        return str(invalid)
    except _CutShort:
        return "unexpected EOF"
    except RecursionError:  # nested deeper than Python's stack: galley's own limit speaks
        return None
    return None


class _Scanner:
    """Go's JSON grammar over bytes: each method reads one part from an offset and returns
    the offset after it, raising _Invalid at the first byte Go's scanner refuses."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def byte(self, at: int) -> int:
        if at >= len(self.data):
            raise _CutShort
        return self.data[at]

    def skip_space(self, at: int) -> int:
        while at < len(self.data) and self.data[at] in _SPACE:
            at += 1
        return at

    def document(self, at: int) -> None:
        """One value, and nothing after it but space."""
        rest = self.skip_space(self.value(at))
        if rest < len(self.data):
            raise _Invalid(self.data[rest], "after top-level value")

    def value(self, at: int) -> int:
        char = self.byte(at)
        if char == ord("{"):
            return self.object(at + 1)
        if char == ord("["):
            return self.array(at + 1)
        if char == ord('"'):
            return self.string(at + 1)
        if char == ord("-") or char in _DIGITS:
            return self.number(at)
        if char in _LITERALS:
            return self.literal(at, _LITERALS[char])
        raise _Invalid(char, "looking for beginning of value")

    def object(self, at: int) -> int:
        at = self.skip_space(at)
        if self.byte(at) == ord("}"):
            return at + 1
        while True:
            at = self.skip_space(at)
            if self.byte(at) != ord('"'):
                raise _Invalid(self.data[at], "looking for beginning of object key string")
            at = self.skip_space(self.string(at + 1))
            if self.byte(at) != ord(":"):
                raise _Invalid(self.data[at], "after object key")
            at = self.skip_space(self.value(self.skip_space(at + 1)))
            char = self.byte(at)
            if char == ord("}"):
                return at + 1
            if char != ord(","):
                raise _Invalid(char, "after object key:value pair")
            at += 1

    def array(self, at: int) -> int:
        at = self.skip_space(at)
        if self.byte(at) == ord("]"):
            return at + 1
        while True:
            at = self.skip_space(self.value(self.skip_space(at)))
            char = self.byte(at)
            if char == ord("]"):
                return at + 1
            if char != ord(","):
                raise _Invalid(char, "after array element")
            at += 1

    def string(self, at: int) -> int:
        """From after the opening quote to after the closing one."""
        data = self.data
        quote = data.find(b'"', at)
        while True:
            if 0 <= quote < at:  # that quote was escaped: the next one
                quote = data.find(b'"', at)
            end = quote if quote >= 0 else len(data)
            escape = data.find(b"\\", at, end)  # only before the quote: no search to the end
            stop = escape if escape >= 0 else end
            span = data[at:stop]
            if len(span.translate(None, _CONTROL)) != len(span):  # a control byte in it
                bad = next(i for i, c in enumerate(span) if c < 0x20)
                raise _Invalid(span[bad], "in string literal")
            if stop == len(data):
                raise _CutShort
            if stop == quote:
                return stop + 1
            char = self.byte(stop + 1)
            if char == ord("u"):
                for i in range(stop + 2, stop + 6):
                    if self.byte(i) not in _HEX:
                        raise _Invalid(data[i], "in \\u hexadecimal character escape")
                at = stop + 6
            elif char in _ESCAPES:
                at = stop + 2
            else:
                raise _Invalid(char, "in string escape code")

    def number(self, at: int) -> int:
        if self.byte(at) == ord("-"):
            at += 1
            if self.byte(at) not in _DIGITS:
                raise _Invalid(self.data[at], "in numeric literal")
        at = self.digits(at + 1) if self.data[at] != ord("0") else at + 1
        if at < len(self.data) and self.data[at] == ord("."):
            if self.byte(at + 1) not in _DIGITS:
                raise _Invalid(self.data[at + 1], "after decimal point in numeric literal")
            at = self.digits(at + 1)
        if at < len(self.data) and self.data[at] in b"eE":
            at += 1
            if self.byte(at) in b"+-":
                at += 1
            if self.byte(at) not in _DIGITS:
                raise _Invalid(self.data[at], "in exponent of numeric literal")
            at = self.digits(at)
        return at

    def digits(self, at: int) -> int:
        while at < len(self.data) and self.data[at] in _DIGITS:
            at += 1
        return at

    def literal(self, at: int, word: bytes) -> int:
        for i, expected in enumerate(word[1:], start=1):
            char = self.byte(at + i)
            if char != expected:
                what = f"in literal {word.decode()} (expecting {_quote_char(expected)})"
                raise _Invalid(char, what)
        return at + len(word)
