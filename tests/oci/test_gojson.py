"""galley.oci.gojson: a document that is no JSON, worded as runc's Go decoder words it (each
expected text below is what Go 1.19's json.Decoder printed for the same bytes)."""

from __future__ import annotations

import pytest

from galley.oci import gojson


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (b"{ invalid", "invalid character 'i' looking for beginning of object key string"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b"[1,]", "invalid character ']' looking for beginning of value"),
        (b'{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
        (b'{"a":"x\\u12g"}', "invalid character 'g' in \\u hexadecimal character escape"),
        (b"-", "unexpected EOF"),
        (b"nul", "unexpected EOF"),
        (b"", "EOF"),
        (b"  ", "EOF"),
        (b'{"a":1.}', "invalid character '}' after decimal point in numeric literal"),
        (b'{"a":1e+}', "invalid character '}' in exponent of numeric literal"),
        (b'"a\\x"', "invalid character 'x' in string escape code"),
        (b'"\x01"', "invalid character '\\x01' in string literal"),
        (b"\xef\xbb\xbf{}", "invalid character '\u00ef' looking for beginning of value"),
        (b'{"a":1,}', "invalid character '}' looking for beginning of object key string"),
        (b"NaN", "invalid character 'N' looking for beginning of value"),
        (b"{'a': 1}", "invalid character '\\'' looking for beginning of object key string"),
    ],
)
def test_go_words_for_what_is_no_json(document: bytes, words: str) -> None:
    assert gojson.syntax_error(document) == words


def test_bytes_after_the_value_are_named_as_json_unmarshal_names_them() -> None:
    """runc's Decoder reads the first value and ignores the rest; galley refuses the rest."""
    assert gojson.syntax_error(b'{"a":1} x') == "invalid character 'x' after top-level value"
    assert gojson.syntax_error(b"01") == "invalid character '1' after top-level value"


@pytest.mark.parametrize(
    "document", [b"{}", b' {"a": [1, -0.5e+3, true, false, null, "\\u00e9\\n"]} ', b'"\xff"']
)
def test_json_to_go_has_no_words(document: bytes) -> None:
    """Bytes that are no UTF-8 inside a string too: Go's scanner takes them."""
    assert gojson.syntax_error(document) is None


def test_nesting_deeper_than_pythons_stack_is_left_to_galleys_own_limit() -> None:
    assert gojson.syntax_error(b"[" * 100000 + b"]" * 100000) is None
    assert gojson.syntax_error(b"[" * 100 + b"}") == (
        "invalid character '}' looking for beginning of value"
    )
