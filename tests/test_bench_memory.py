"""bench.bench_memory: what it reads from /proc, and its measures on galley-runc."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.bench_memory import NOTHING, bench, footprint, held_by
from bench.bench_runtime import GALLEY, make_bench_bundle


def _sleeping_child(pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "sleep":
            return int(children[0])
        time.sleep(0.01)
    pytest.fail("the shell's sleep did not start")


@pytest.fixture
def parent_and_child() -> Iterator[tuple[int, int]]:
    """A shell holding a 4 MiB string, and its sleeping child."""
    shell = subprocess.Popen(
        ["/bin/bash", "-c", 'x=$(head -c 4194304 /dev/zero | tr "\\0" a); sleep 30; echo ${#x}'],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield shell.pid, _sleeping_child(shell.pid)
    finally:
        shell.kill()
        shell.wait()


def test_footprint_counts_private_pages(parent_and_child: tuple[int, int]) -> None:
    shell, sleep = parent_and_child
    big, small = footprint(shell), footprint(sleep)
    assert big.uss is not None and small.uss is not None
    assert big.uss > 4096 > small.uss > 0  # the string is the shell's alone
    assert big.rss >= big.uss and small.rss >= small.uss


def test_held_by_leaves_the_workload_out(parent_and_child: tuple[int, int]) -> None:
    shell, sleep = parent_and_child
    assert held_by(shell, sleep) == footprint(shell)
    assert held_by(shell, shell) == NOTHING


def test_a_process_gone_holds_nothing() -> None:
    done = subprocess.Popen(["true"])
    done.wait()
    assert footprint(done.pid) == NOTHING


def test_measures_on_galley_runc(tmp_path: Path) -> None:
    bundles = {
        "true": make_bench_bundle(tmp_path / "true", ["true"]),
        "sleep": make_bench_bundle(tmp_path / "sleep", ["sleep", "100000"]),
    }
    found = bench({"galley-runc": GALLEY}, bundles, 1)
    samples = {measure: per_runtime["galley-runc"] for measure, per_runtime in found.items()}
    assert all(len(s) == 1 for s in samples.values())
    created = samples["created, held"][0]
    assert 0 < created.rss < 512  # KiB: the trampoline waits, not an interpreter
    for measure in ("run in the foreground, held", "exec in the foreground, held"):
        held = samples[measure][0]
        assert held.uss is not None and 2048 < held.uss < held.rss  # shared: the text
    peak = samples["run of true, peak"][0]
    assert peak.uss is None and peak.rss > samples["run in the foreground, held"][0].rss / 2
