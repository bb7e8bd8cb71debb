"""Paired comparisons of interleaved timings: what an A/B on a noisy machine can claim.

bench_runtime takes one sample of every runtime in each round, within a few hundred
milliseconds of each other, so the machine's slow spells (another tenant, the kernel's
deferred work) hit a round's samples alike. The per-round difference cancels them, and its
median has a far narrower spread than either runtime's own median: on the 2-core test VM,
medians of two 150-run benches of the same two trees moved by +-2 ms, more than most changes
gain. The interval comes from the sign test (distribution-free; no normality assumed): the
k-th smallest and k-th largest differences bound the median with ~95% confidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

Z95 = 1.959964  # the normal quantile for a two-sided 95% interval


class Difference(NamedTuple):
    """The median per-round difference (other minus base) and its ~95% interval."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def paired_difference(base: Sequence[float], other: Sequence[float]) -> Difference:
    """Round i of other minus round i of base; the interval is the sign test's, by the
    normal approximation to the binomial (sound from ~10 rounds; with fewer it is the
    whole range)."""
    if len(base) != len(other) or not base:
        raise ValueError("paired samples need the same number of rounds, at least one")
    differences = sorted(o - b for b, o in zip(base, other, strict=True))
    n = len(differences)
    k = max(0, math.floor((n - Z95 * math.sqrt(n)) / 2))  # 0-based rank of the lower bound
    return Difference(statistics.median(differences), differences[k], differences[n - 1 - k])
