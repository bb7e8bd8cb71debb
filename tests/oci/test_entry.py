"""galley.oci.entry: what bin/galley-runc runs once it has found the checkout."""

from __future__ import annotations

import os
import subprocess

import pytest

from galley.oci.entry import restore_lc_ctype


@pytest.fixture
def lc_ctype(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable as the test found it afterwards (set by the interpreter's start, say)."""
    monkeypatch.setenv("LC_CTYPE", "C.UTF-8")


def _seen_by_children() -> str:
    """LC_CTYPE as a process this one starts sees it ("-" for none)."""
    return subprocess.run(
        ["/bin/sh", "-c", 'echo "${LC_CTYPE--}"'], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.usefixtures("lc_ctype")
def test_a_caller_without_lc_ctype_gets_none_back() -> None:
    restore_lc_ctype(True)
    assert "LC_CTYPE" not in os.environ
    assert _seen_by_children() == "-"


@pytest.mark.usefixtures("lc_ctype")
def test_a_callers_value_is_put_back() -> None:
    restore_lc_ctype("de_DE.ISO-8859-1")
    assert os.environ["LC_CTYPE"] == "de_DE.ISO-8859-1"
    assert _seen_by_children() == "de_DE.ISO-8859-1"


@pytest.mark.usefixtures("lc_ctype")
def test_without_the_option_nothing_changes() -> None:
    """Python started some other way (an in-process user of the library)."""
    restore_lc_ctype(None)
    assert _seen_by_children() == "C.UTF-8"
