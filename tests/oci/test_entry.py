"""galley.oci.entry: what bin/galley-runc runs once it has found the checkout."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from galley.oci.entry import caller_lc_ctype, restore_lc_ctype


@pytest.fixture
def lc_ctype(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable as Python's start leaves it in a C locale (restored after the test)."""
    monkeypatch.setenv("LC_CTYPE", "C.UTF-8")


def _seen_by_children() -> str:
    """LC_CTYPE as a process this one starts sees it ("-" for none)."""
    return subprocess.run(
        ["/bin/sh", "-c", 'echo "${LC_CTYPE--}"'], capture_output=True, text=True, check=True
    ).stdout.strip()


def _block(tmp_path: Path, *entries: bytes) -> str:
    """A file shaped as /proc/self/environ: the entries, each NUL-terminated."""
    path = tmp_path / "environ"
    path.write_bytes(b"".join(entry + b"\0" for entry in entries))
    return str(path)


@pytest.mark.usefixtures("lc_ctype")
def test_a_caller_without_lc_ctype_gets_none_back(tmp_path: Path) -> None:
    restore_lc_ctype(_block(tmp_path, b"PATH=/bin", b"LC_ALL_X=1"))
    assert "LC_CTYPE" not in os.environ
    assert _seen_by_children() == "-"


@pytest.mark.usefixtures("lc_ctype")
def test_a_callers_value_is_put_back(tmp_path: Path) -> None:
    restore_lc_ctype(_block(tmp_path, b"HOME=/root", b"LC_CTYPE=de_DE.ISO-8859-1"))
    assert os.environ["LC_CTYPE"] == "de_DE.ISO-8859-1"
    assert _seen_by_children() == "de_DE.ISO-8859-1"


@pytest.mark.usefixtures("lc_ctype")
def test_without_proc_nothing_changes(tmp_path: Path) -> None:
    """Python started where /proc is not mounted keeps what its start set."""
    restore_lc_ctype(str(tmp_path / "missing"))
    assert _seen_by_children() == "C.UTF-8"


def test_the_first_entry_of_a_name_counts_as_for_getenv() -> None:
    block = b"A=1\0LC_CTYPE=C\0LC_CTYPE=C.UTF-8\0"
    assert caller_lc_ctype(block) == b"C"
    assert caller_lc_ctype(b"XLC_CTYPE=C\0LC_CTYPEX=C\0") is None
    assert caller_lc_ctype(b"LC_CTYPE=\xff\0") == b"\xff"  # bytes as given, not decoded
    assert caller_lc_ctype(b"") is None
