"""Shared test fixtures: the repo paths and busybox material."""

from __future__ import annotations

import os
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root")
        for item in items:
            if "root" in item.keywords:
                item.add_marker(skip)
