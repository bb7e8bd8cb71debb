"""Shared test fixtures: the repo paths and busybox material."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GALLEY_RUNC = str(REPO / "bin" / "galley-runc")


def fresh_python(script: str) -> str:
    """What script prints, run by the interpreter galley-runc runs on (-I -S, as a command
    runs) in a process of its own, with this tree's src first on sys.path."""
    prelude = f"import sys\nsys.path.insert(0, {str(REPO / 'src')!r})\n"
    result = subprocess.run(
        ["/usr/bin/python3", "-IS", "-c", prelude + script],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background by a shell without job control (`cmd &`) inherits
    SIGINT and SIGQUIT ignored, and so would every process a test starts: a test that kills
    one with SIGINT would wait in vain. Put them back as a foreground run has them."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) is signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root")
        for item in items:
            if "root" in item.keywords:
                item.add_marker(skip)
