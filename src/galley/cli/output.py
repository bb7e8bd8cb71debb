"""Output shapes shared by the verbs: aligned tables, JSON/YAML documents, human sizes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from galley.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Sequence

FORMATS = ("table", "json", "yaml")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(size: int) -> str:
    """1536 -> "1.5 KiB"; bytes below 1 KiB stay exact."""
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, like crictl and ctr."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def document(obj: Any, fmt: str) -> str:
    """obj as "json" (indented) or "yaml" (block style, keys in insertion order)."""
    if fmt == "json":
        return json.dumps(obj, indent=2)
    if fmt == "yaml":
        import yaml  # noqa: PLC0415 - only -o yaml pays for it

        return str(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)).rstrip()
    raise InvalidArgument(f"output format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
