"""Pull/push progress on the terminal: per-blob bars on a tty, plain lines otherwise.

    layer   sha256:3f4e5a6b7c8d   downloading  [=========>          ]  1.2 MiB / 2.5 MiB
    config  sha256:0a1b2c3d4e5f   done         [====================]  1.4 KiB

The pull reports from several threads at once; a lock keeps the lines whole.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TextIO

from galley.cli.output import human_size

if TYPE_CHECKING:
    from galley.images.pull import Progress

BAR_WIDTH = 20
REDRAW_S = 0.1
_FINAL = frozenset({"done", "exists", "mounted", "unpacked"})


class ProgressView(Protocol):
    """Something a pull or push reports to."""

    def __call__(self, progress: Progress) -> None:
        """Take one report."""

    def finish(self) -> None:
        """Draw the final state."""


@dataclass
class _Line:
    kind: str
    name: str
    status: str
    offset: int
    total: int


def _short(digest: str) -> str:
    algorithm, sep, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if sep and len(hexpart) == 64 else digest


def _amount(line: _Line) -> str:
    if line.status in _FINAL or not line.total:
        return human_size(line.total) if line.total else ""
    return f"{human_size(line.offset)} / {human_size(line.total)}"


class QuietProgress:
    """Reports nothing."""

    def __call__(self, progress: Progress) -> None:
        """Ignore the report."""

    def finish(self) -> None:
        """Nothing to draw."""


class PlainProgress:
    """One line per blob and status change (no byte counts in between): logs, pipes."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._seen: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        """Print the report if the blob's status changed."""
        key = (progress.kind, progress.digest)
        with self._lock:
            if self._seen.get(key) == progress.status:
                return
            self._seen[key] = progress.status
            line = _Line(
                progress.kind, progress.digest, progress.status, progress.offset, progress.total
            )
            text = f"{line.kind} {_short(line.name)} {line.status} {_amount(line)}".rstrip()
            print(text, file=self._out, flush=True)

    def finish(self) -> None:
        """Nothing left to draw."""


class BarProgress:
    """A block of lines redrawn in place, one bar per blob (a tty)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lines: dict[tuple[str, str], _Line] = {}
        self._drawn = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, progress: Progress) -> None:
        """Update the blob's line; redraw at most every REDRAW_S unless its status changed."""
        key = (progress.kind, progress.digest)
        with self._lock:
            old = self._lines.get(key)
            changed = old is None or old.status != progress.status
            self._lines[key] = _Line(
                progress.kind, progress.digest, progress.status, progress.offset, progress.total
            )
            if changed or time.monotonic() - self._last >= REDRAW_S:
                self._draw()

    def finish(self) -> None:
        """Draw the final state."""
        with self._lock:
            self._draw()

    def _draw(self) -> None:
        parts = [f"\x1b[{self._drawn}F"] if self._drawn else []
        for line in self._lines.values():
            parts.append("\x1b[2K" + self._render(line) + "\n")
        self._out.write("".join(parts))
        self._out.flush()
        self._drawn = len(self._lines)
        self._last = time.monotonic()

    @staticmethod
    def _render(line: _Line) -> str:
        if not line.total:  # resolving a tag, unpacking: a step, not a transfer
            return f"{line.kind:<8}{_short(line.name):<22}{line.status}"
        done = line.status in _FINAL
        fraction = 1.0 if done else (line.offset / line.total if line.total else 0.0)
        filled = int(fraction * BAR_WIDTH)
        bar = "=" * filled + (">" if filled < BAR_WIDTH else "") + " " * (BAR_WIDTH - filled)
        bar = bar[:BAR_WIDTH]
        return f"{line.kind:<8}{_short(line.name):<22}{line.status:<13}[{bar}]  {_amount(line)}"


def progress_view(out: TextIO, *, quiet: bool) -> ProgressView:
    """Bars on a terminal, plain lines elsewhere, nothing with --quiet."""
    if quiet:
        return QuietProgress()
    if out.isatty():
        return BarProgress(out)
    return PlainProgress(out)
