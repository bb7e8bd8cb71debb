"""Progress views: plain lines per status change, bars redrawn in place, quiet silence."""

from __future__ import annotations

import io

from galley.cli.progress import BarProgress, PlainProgress, progress_view
from galley.images.pull import Progress

LAYER = "sha256:" + "ab" * 32


def test_plain_prints_status_changes_only() -> None:
    out = io.StringIO()
    view = PlainProgress(out)
    view(Progress("layer", LAYER, "waiting", 0, 2048))
    for offset in (0, 1024, 2048):
        view(Progress("layer", LAYER, "downloading", offset, 2048))
    view(Progress("layer", LAYER, "done", 2048, 2048))
    view.finish()
    assert out.getvalue().splitlines() == [
        "layer sha256:abababababab waiting 0 B / 2.0 KiB",
        "layer sha256:abababababab downloading 0 B / 2.0 KiB",
        "layer sha256:abababababab done 2.0 KiB",
    ]


def test_bars_redraw_the_block_in_place() -> None:
    out = io.StringIO()
    view = BarProgress(out)
    view(Progress("resolve", "127.0.0.1:5000/a:1", "resolving"))
    view(Progress("layer", LAYER, "downloading", 512, 2048))
    view(Progress("layer", LAYER, "done", 2048, 2048))
    view.finish()
    frames = out.getvalue().split("\x1b[")
    assert "2F" in [f[:2] for f in frames]  # moved back up over the two lines drawn
    last = out.getvalue().rsplit("\x1b[2F", 1)[1]
    lines = [line.removeprefix("\x1b[2K") for line in last.splitlines()]
    assert lines[0].split() == ["resolve", "127.0.0.1:5000/a:1", "resolving"]
    assert lines[1].split()[:3] == ["layer", "sha256:abababababab", "done"]
    assert "[====================]" in lines[1]


def test_quiet_and_non_tty_choices() -> None:
    out = io.StringIO()
    quiet = progress_view(out, quiet=True)
    quiet(Progress("layer", LAYER, "done", 1, 1))
    assert out.getvalue() == ""
    assert isinstance(progress_view(out, quiet=False), PlainProgress)
