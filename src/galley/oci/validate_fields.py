"""Field checkers for config.json validation: each checks one JSON value and names its path.

`validate` and `validate_linux` build the whole-document checks from these. Every error is an
`InvalidArgument` whose message is `<field path>: <what is wrong>`, on one line.
"""

from __future__ import annotations

from galley.errors import InvalidArgument

TYPE_CHECKING = False  # typing costs ~3 ms to import; mypy knows this name
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def fail(path: str, message: str) -> InvalidArgument:
    """The error for a bad field (raise it)."""
    return InvalidArgument(f"{path}: {message}")


def _kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"
    return "null" if value is None else names.get(type(value), type(value).__name__)


def obj(path: str, value: object) -> dict[str, Any]:
    """value as a JSON object, or an error naming path."""
    if not isinstance(value, dict):
        raise fail(path, f"must be an object, not {_kind(value)}")
    return value


def arr(path: str, value: object) -> list[Any]:
    """value as a JSON array, or an error naming path."""
    if not isinstance(value, list):
        raise fail(path, f"must be an array, not {_kind(value)}")
    return value


def string(path: str, value: object, *, empty: bool = True) -> str:
    """value as a string (non-empty unless empty=True)."""
    if not isinstance(value, str):
        raise fail(path, f"must be a string, not {_kind(value)}")
    if not empty and not value:
        raise fail(path, "must not be empty")
    if "\0" in value:  # the kernel would read it cut short
        raise fail(path, "must not contain a NUL character")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise fail(path, "is not valid Unicode (a lone surrogate)") from None
    return value


def boolean(path: str, value: object) -> bool:
    """value as a boolean."""
    if not isinstance(value, bool):
        raise fail(path, f"must be a boolean, not {_kind(value)}")
    return value


def integer(path: str, value: object, lo: int = INT64_MIN, hi: int = UINT64_MAX) -> int:
    """value as an integer within [lo, hi] (not 1.0 or 1e9: runc refuses those too)."""
    if isinstance(value, float):
        raise fail(path, f"must be an integer, not {value!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise fail(path, f"must be an integer, not {_kind(value)}")
    if not lo <= value <= hi:
        raise fail(path, f"{value} is out of range [{lo}, {hi}]")
    return value


def abspath(path: str, value: object) -> str:
    """value as a non-empty absolute path."""
    s = string(path, value, empty=False)
    if not s.startswith("/"):
        raise fail(path, f"{s!r} must be an absolute path")
    return s


def strings(path: str, value: object) -> list[str]:
    """value as an array of strings."""
    items = arr(path, value)
    for i, item in enumerate(items):
        string(f"{path}[{i}]", item)
    return items


def string_map(path: str, value: object) -> dict[str, str]:
    """value as an object whose values are strings."""
    d = obj(path, value)
    for k, v in d.items():
        string(f"{path}.{k}", v)
    return d


def one_of(path: str, value: object, allowed: tuple[str, ...] | frozenset[str], what: str) -> str:
    """value as one of allowed, else `unknown <what> "x"`."""
    s = string(path, value)
    if s not in allowed:
        raise fail(path, f'unknown {what} "{s}"')
    return s


def fields(path: str, d: dict[str, Any], checks: dict[str, Callable[[str, Any], object]]) -> None:
    """Check each present key of d with its checker; the field path is path.key. An explicit
    null counts as absent, as Go's encoding/json (runc) reads it."""
    for key, check in checks.items():
        if d.get(key) is not None:
            check(f"{path}.{key}" if path else key, d[key])


def listed(d: dict[str, Any], key: str) -> Any:
    """d[key], or [] when it is absent or null (Go's nil slice): for a checker that wants an
    array. Not `d.get(key) or []`, which lets an empty value of the wrong type ({}, "",
    false) pass as no array, where runc's decoder refuses it."""
    value = d.get(key)
    return [] if value is None else value


def each(path: str, value: object, check: Callable[[str, Any], object]) -> list[Any]:
    """Check every element of an array with check, naming path[i]."""
    items = arr(path, value)
    for i, item in enumerate(items):
        check(f"{path}[{i}]", item)
    return items


def struct(checks: dict[str, Callable[[str, Any], object]]) -> Callable[[str, Any], object]:
    """A checker of an object whose members are checked by checks (others ignored)."""
    return lambda path, value: fields(path, obj(path, value), checks)


def array_of(check: Callable[[str, Any], object]) -> Callable[[str, Any], object]:
    """A checker of an array whose every element check checks."""
    return lambda path, value: each(path, value, check)


def required(path: str, d: dict[str, Any], key: str) -> Any:
    """d[key], or an error naming the missing field."""
    if key not in d or d[key] is None:
        raise fail(f"{path}.{key}" if path else key, "is required")
    return d[key]


def int_range(lo: int, hi: int) -> Callable[[str, Any], object]:
    return lambda p, v: integer(p, v, lo, hi)


U16 = int_range(0, 65535)
U32 = int_range(0, UINT32_MAX)
U64 = int_range(0, 2**64 - 1)
I64 = int_range(INT64_MIN, INT64_MAX)


_SEMVER_SUFFIX = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-")

# Plain string checks rather than `re`: importing re (with enum) costs ~6 ms on every create.


def is_semver(text: str) -> bool:
    """MAJOR.MINOR.PATCH with an optional -prerelease or +build suffix."""
    cut = min((i for i in (text.find("-"), text.find("+")) if i >= 0), default=len(text))
    core, suffix = text[:cut], text[cut + 1 :]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return False
    return cut == len(text) or (bool(suffix) and set(suffix) <= _SEMVER_SUFFIX)


MAX_CPUS = 8192  # NR_CPUS at its largest (x86_64 MAXSMP): no Linux has a CPU numbered higher
MAX_NODES = 1024  # MAX_NUMNODES at its largest (NODES_SHIFT 10)


def cpuset(limit: int, what: str) -> Callable[[str, Any], object]:
    """A checker for a cgroup cpu or memory node list such as "0-3,5" (empty allowed)."""

    def check(path: str, value: object) -> None:
        if string(path, value).strip():
            number_list(path, str(value), limit, what)

    return check


def number_list(path: str, text: str, limit: int, what: str) -> set[int]:
    """A list such as "0-3,7" of CPUs or memory nodes (what), as the set of its numbers; each
    must be below limit. Built as a bit mask, so that neither "0-9876543210" nor "0-8191"
    repeated ten thousand times costs more than the string's length."""
    mask = 0
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        if not (low.isdigit() and low.isascii()) or (
            dash and not (high.isdigit() and high.isascii())
        ):
            raise fail(path, f'"{text}" is not a {what} list like "0-3,7"')
        digits = max(len(low.lstrip("0")), len(high.lstrip("0")))
        if digits > len(str(limit)):  # and int() refuses 4300 digits and more
            too_big = f'"{part.strip()[:24]}"'
            raise fail(path, f"invalid {what} {too_big}: {what}s are numbered below {limit}")
        first, last = int(low), int(high if dash else low)
        if last < first:
            raise fail(path, f'bad {what} range "{part.strip()}"')
        if last >= limit:
            raise fail(path, f"invalid {what} {last}: {what}s are numbered below {limit}")
        mask |= ((1 << (last - first + 1)) - 1) << first
    return {n for n in range(mask.bit_length()) if mask >> n & 1}


def typed_entries(
    path: str, value: object, allowed: tuple[str, ...] | frozenset[str], what: str
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each (path, object, type) of an array of objects keyed by a unique `type` field."""
    seen: set[str] = set()
    for i, item in enumerate(arr(path, value)):
        p = f"{path}[{i}]"
        d = obj(p, item)
        kind = one_of(f"{p}.type", required(p, d, "type"), allowed, what)
        if kind in seen:
            raise fail(f"{p}.type", f'duplicate {what} "{kind}"')
        seen.add(kind)
        yield p, d, kind
