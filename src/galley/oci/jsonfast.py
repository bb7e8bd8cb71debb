"""JSON for galley-runc's hot commands without importing the json package (re, enum: ~4 ms).

`state`, `start`, `kill` and `delete` read state.json and `state` prints JSON: that is all the
JSON they need. CPython's `_json` accelerator (what the json package runs underneath) scans and
encodes (it is built into every CPython); this module hands it the settings json would (strict
scanning, ASCII output, NaN allowed: in galley's own files, not in a document from outside,
which load_stream reads as Go does). Errors are ValueErrors, as json's.
"""

from __future__ import annotations

import _json
import marshal

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _ScannerSettings:
    """The attributes _json.make_scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}  # noqa: RUF012 - _json reads it as a plain attribute


def _not_json(name: str) -> float:
    """parse_constant for a document from outside: NaN, Infinity and -Infinity refused."""
    raise ValueError(f"{name} is not a JSON value")


class _StrictSettings(_ScannerSettings):
    """The scanner for documents from outside: NaN and Infinity are no JSON (RFC 8259), and
    Go's encoding/json refuses them wherever they stand, an unknown field too. galley's own
    files keep json's leniency: a config's 1e999 is stored as Infinity."""

    parse_constant = staticmethod(_not_json)


def _unserialisable(obj: object) -> object:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def loads(data: str | bytes, *, strict: bool = False) -> Any:
    """One JSON document (surrounding whitespace allowed), as json.loads; strict: without
    json's NaN, Infinity and -Infinity."""
    text = data.decode() if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    settings = _StrictSettings() if strict else _ScannerSettings()
    try:
        value, end = _json.make_scanner(settings)(text, start)  # type: ignore[arg-type]
    except StopIteration as stop:
        raise ValueError(f"Expecting value: char {stop.value}") from None
    except RecursionError:  # [[[[... deeper than the interpreter's stack
        raise ValueError("exceeded max depth") from None
    except SystemError:  # _json describes an error only once json.decoder is loaded
        raise ValueError(_describe_error(settings, text, start)) from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def _describe_error(settings: _ScannerSettings, text: str, start: int) -> str:
    """What json.loads would say of text (an error path: json.decoder may be imported)."""
    try:
        import json.decoder  # noqa: F401, PLC0415 - _json reads JSONDecodeError from it
    except ImportError:  # imports sealed (the init stage)
        return "not valid JSON"
    try:
        _json.make_scanner(settings)(text, start)  # type: ignore[arg-type]
    except ValueError as e:
        return str(e)
    except (StopIteration, RecursionError, SystemError):
        pass
    return "not valid JSON"


def dumps(obj: object) -> str:
    """Compact JSON (no spaces), ASCII only, as json.dumps(separators=(",", ":"))."""
    return _compact(obj, _json.encode_basestring_ascii)


def _compact(obj: object, string: Callable[[str], str]) -> str:
    """obj as compact JSON, its strings (keys too) written by string."""
    encode = _json.make_encoder(None, _unserialisable, string, None, ":", ",", False, False, True)
    return "".join(encode(obj, 0))


# What Go's encoding/json writes otherwise than _json.encode_basestring: <, > and & escaped
# (its default, HTML-safe), the line and paragraph separators escaped (JavaScript), and \b and
# \f in the \u form (Go 1.19, the Go runc 1.1.5 is built with here).
_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
    "\b": "\\u0008",
    "\f": "\\u000c",
}


def _go_string(text: str) -> str:
    """A JSON string as runc's Go encoder writes it: UTF-8 as it is, _GO_ESCAPES, and a byte
    that is no UTF-8 (here a lone surrogate, as surrogateescape reads one) as \\ufffd."""
    if not any(char in text for char in _GO_ESCAPES):
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate
            pass
        else:
            return _json.encode_basestring(text)
    return '"' + "".join(map(_go_char, text)) + '"'


def _go_char(char: str) -> str:
    escaped = _GO_ESCAPES.get(char)
    if escaped is not None:
        return escaped
    if "\ud800" <= char <= "\udfff":
        return "\\ufffd"
    return _json.encode_basestring(char)[1:-1]


def dumps_go(obj: object) -> str:
    """Compact JSON as runc's Go encoder (json.Marshal) writes it, for what galley-runc
    prints and gives hooks where runc does: the same bytes, not only the same values
    (_go_string). galley's own files are written by dumps, whose ASCII escapes keep a path
    that is no UTF-8 as it is."""
    return _compact(obj, _go_string)


def dumps_indented(obj: object, indent: int = 2, level: int = 0) -> str:
    """JSON indented as Go's json.MarshalIndent(obj, "", "  ") writes it (`runc state`'s
    layout), its strings as dumps_go's."""
    inner = " " * (indent * (level + 1))
    if isinstance(obj, dict) and obj:
        items = [
            f"{inner}{dumps_go(str(k))}: {dumps_indented(v, indent, level + 1)}"
            for k, v in obj.items()
        ]
    elif isinstance(obj, list | tuple) and obj:
        items = [inner + dumps_indented(v, indent, level + 1) for v in obj]
    else:
        return dumps_go(obj)
    opening, closing = ("{", "}") if isinstance(obj, dict) else ("[", "]")
    outer = " " * (indent * level)
    return opening + "\n" + ",\n".join(items) + "\n" + outer + closing


def clone(obj: Any) -> Any:
    """A deep copy of JSON data (dicts, lists, strings, numbers, booleans, None): a marshal
    round trip, where copy.deepcopy would cost its ~1.5 ms of imports."""
    return marshal.loads(marshal.dumps(obj))


MAX_FILE = 32 << 20  # a config.json or process.json is kilobytes; /dev/zero is endless


def load_file(path: str, what: str) -> Any:
    """The JSON document in the file at path, as load_stream reads it; ValueError (naming it
    what) when it is not one."""
    with open(path, "rb") as f:
        return load_stream(f, what)


def load_stream(stream: BinaryIO, what: str, limit: int = MAX_FILE) -> Any:
    """The JSON document stream holds, read to its end but at most limit bytes, as runc reads
    a config.json, process.json or resources file: without NaN or Infinity, which Go's
    encoding/json refuses, and with an object's member whose value is null left out. Go's
    encoding/json leaves a field that reads null at its zero value, which is what the
    field's absence means to runc, so a tool that writes `"env": null` (Go writes a nil
    slice so) gets what it gets from runc."""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{what}: larger than {limit >> 20} MiB")
    try:
        doc = loads(data, strict=True)
    except ValueError as e:
        raise ValueError(f"{what}: invalid JSON: {_go_words(data, e)}") from None
    if _may_have_null_members(data):
        _drop_null_members(doc)
    return doc


def _go_words(data: bytes, error: ValueError) -> str:
    """What is wrong with data in the words of Go's encoding/json, which runc reads it with
    ("invalid character 'x' after object key"); else in galley's own: a document that is
    JSON to Go but not to galley is no UTF-8, or nested past Python's recursion limit."""
    from galley.oci import gojson  # noqa: PLC0415 - the error path only

    words = gojson.syntax_error(data)
    if words is not None:
        return words
    if isinstance(error, UnicodeDecodeError):
        return f"not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start})"
    return str(error)


def _may_have_null_members(data: bytes) -> bool:
    """Whether some `null` in data follows a colon: a member's value, or words in a string
    (which cost only the walk). "/dev/null" in a path does not: a walk through a config with a
    Docker-sized seccomp profile takes ~1 ms."""
    at = data.find(b"null")
    while at != -1:
        i = at - 1
        while i >= 0 and data[i] in b" \t\n\r":
            i -= 1
        if i >= 0 and data[i] == 0x3A:  # ":"
            return True
        at = data.find(b"null", at + 4)
    return False


def _drop_null_members(value: object) -> None:
    """Remove, in place and at every depth, the members of objects whose value is null. A null
    in an array stays: there it stands for an element, which validation names."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        values: Any = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return
    for item in values:
        if isinstance(item, dict | list):
            _drop_null_members(item)
