"""galley.oci.jsonfast reads and writes what the json package does."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from galley.oci import jsonfast

DOCS: list[object] = [
    {},
    [],
    {"id": "c1", "pid": 42, "ok": True, "none": None, "f": 1.5, "neg": -3, "big": 2**70},
    {"annotations": {"k": 'v\n"quoted"\\ é ☃ \U0001f600'}, "list": [1, [2, [3, {}]], []]},
    {"nested": {"a": {"b": {"c": [True, False, None, 0.1, -0.0, 1e300]}}}},
    "just a string",
    17,
]


@pytest.mark.parametrize("doc", DOCS)
def test_round_trip_matches_json(doc: object) -> None:
    assert jsonfast.dumps(doc) == json.dumps(doc, separators=(",", ":"))
    assert jsonfast.dumps_indented(doc) == json.dumps(doc, indent=2, ensure_ascii=False)
    assert jsonfast.dumps_go(doc) == json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    text = json.dumps(doc, indent=3)
    assert jsonfast.loads(f"  {text}\n") == json.loads(text)
    assert jsonfast.loads(text.encode()) == json.loads(text)


# What Go 1.19's json.Marshal wrote for {"s": GO_INPUT}, with the byte 0xff where GO_INPUT has
# its surrogateescape reading (a path that is no UTF-8).
GO_INPUT = 'a\b\f\n\r\t\x01\x1f\x7f<>&\u2028\u2029é\udcff"\\/\U0001f600\U0010ffff'
GO_WROTE = (
    b'{"s":"a\\u0008\\u000c\\n\\r\\t\\u0001\\u001f\x7f\\u003c\\u003e\\u0026'
    b'\\u2028\\u2029\xc3\xa9\\ufffd\\"\\\\/\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"}'
)


def test_output_has_the_bytes_gos_encoder_writes() -> None:
    assert jsonfast.dumps_go({"s": GO_INPUT}).encode() == GO_WROTE
    assert jsonfast.dumps_indented({"s": GO_INPUT}).encode() == GO_WROTE.replace(
        b'{"s":', b'{\n  "s": '
    ).replace(b"}", b"\n}")
    assert json.loads(GO_WROTE) == {"s": GO_INPUT.replace("\udcff", "\ufffd")}
    # galley's own files keep the path's byte: dumps escapes to ASCII, json reads it back
    assert json.loads(jsonfast.dumps({"s": GO_INPUT})) == {"s": GO_INPUT}


def test_constants_read_as_json_reads_them() -> None:
    assert jsonfast.loads("[Infinity, -Infinity]") == [float("inf"), float("-inf")]
    assert math.isnan(jsonfast.loads("NaN"))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_strict_documents_have_no_constants_json_lacks(constant: str) -> None:
    """A config.json, process.json or resources file is read as Go reads it: no NaN or
    Infinity, even in a member runc would ignore; a number past float64 is still a number."""
    with pytest.raises(ValueError, match=f"{constant} is not a JSON value"):
        jsonfast.loads(f'{{"x-unknown": {constant}}}', strict=True)
    assert jsonfast.loads('{"x-unknown": 1e999}', strict=True) == {"x-unknown": float("inf")}


@pytest.mark.parametrize("bad", ["", "   ", "{", '{"a": 1} x', "[1,]", '{"a" 1}', '"\x01"'])
def test_malformed_documents_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        jsonfast.loads(bad)


def test_unserialisable_object_raises_type_error() -> None:
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        jsonfast.dumps({"a": {1, 2}})


def test_clone_is_a_deep_copy() -> None:
    """exec copies the container's process before applying its flags: nothing is shared."""
    doc: dict[str, Any] = {
        "args": ["sh"],
        "env": ["A=1"],
        "user": {"uid": 0, "additionalGids": [1, 2]},
        "x": None,
    }
    copy = jsonfast.clone(doc)
    assert copy == doc
    copy["args"].append("-c")
    copy["user"]["additionalGids"].append(3)
    assert doc["args"] == ["sh"]
    assert doc["user"]["additionalGids"] == [1, 2]


def test_a_loaded_document_has_no_null_members(tmp_path: Path) -> None:
    """As Go reads it into runc's structs: a null member is the member's absence. A null
    element of an array stays, for validation to name."""
    text = '{"a": null, "b": {"c": null, "d": [null, {"e": null, "f": 1}]}, "g": "null"}'
    (tmp_path / "doc.json").write_text(text)
    expected = {"b": {"d": [None, {"f": 1}]}, "g": "null"}
    assert jsonfast.load_file(str(tmp_path / "doc.json"), "doc") == expected
    with (tmp_path / "doc.json").open("rb") as f:
        assert jsonfast.load_stream(f, "doc") == expected


@pytest.mark.parametrize(
    ("text", "walked"),
    [
        ('{"a": null}', True),
        ('{"a":\n\t null}', True),
        ('{"path": "/dev/null", "l": [null]}', False),
        ('{"s": "x: null"}', True),  # words in a string: only the walk, which finds nothing
        ('{"a": 1}', False),
    ],
)
def test_only_a_null_after_a_colon_costs_the_walk(text: str, walked: bool) -> None:
    assert jsonfast._may_have_null_members(text.encode()) is walked
