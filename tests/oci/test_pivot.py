"""galley.oci.pivot's --no-pivot scan of the mount table, in a mount namespace of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

SRC = Path(__file__).resolve().parents[2] / "src"

# In a private mount namespace: a proc mount under a name that is not UTF-8 (a mount namespace
# joined by path is a container's, and its names are any bytes), then the scan.
SCAN = """
import os, sys
sys.path.insert(0, sys.argv[1])
from galley.kernel import mount as k, ns
from galley.oci.pivot import _host_kernel_mounts
ns.unshare(ns.CLONE_NEWNS)
k.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
odd = os.path.join(os.fsencode(sys.argv[2]), b"proc-\\xff")
os.mkdir(odd)
k.mount("proc", os.fsdecode(odd), "proc", 0)
for where in _host_kernel_mounts("/nonexistent-root"):
    print(os.fsencode(where).hex())
"""


def test_no_pivot_finds_kernel_mounts_whose_names_are_not_utf_8(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCAN, str(SRC), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = {bytes.fromhex(line) for line in result.stdout.split()}
    assert str(tmp_path).encode() + b"/proc-\xff" in found
    assert b"/proc" in found
