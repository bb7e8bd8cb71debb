"""bench.stats: the paired difference bench_runtime prints for every runtime."""

import random

import pytest
from bench.stats import Difference, paired_difference


def test_noise_shared_by_a_round_cancels() -> None:
    rng = random.Random(7)
    noise = [rng.uniform(0, 20) for _ in range(200)]  # a slow spell hits both alike
    base = [40 + n for n in noise]
    other = [38 + n + rng.uniform(-0.5, 0.5) for n in noise]
    diff = paired_difference(base, other)
    assert -2.2 < diff.low <= diff.median <= diff.high < -1.8
    assert diff.high - diff.low < 0.3  # the medians alone would differ by noise of 20 ms


def test_interval_covers_zero_when_nothing_changed() -> None:
    rng = random.Random(11)
    base = [rng.gauss(50, 3) for _ in range(150)]
    other = [rng.gauss(50, 3) for _ in range(150)]
    diff = paired_difference(base, other)
    assert diff.low < 0 < diff.high


def test_interval_is_the_sign_tests_order_statistics() -> None:
    base = [0.0] * 100
    other = [float(i) for i in range(100)]  # differences 0..99
    # k = floor((100 - 1.96 * 10) / 2) = 40: the 41st smallest and the 41st largest
    assert paired_difference(base, other) == Difference(49.5, 40.0, 59.0)


def test_few_rounds_give_the_whole_range() -> None:
    assert paired_difference([1.0, 1.0, 1.0], [2.0, 5.0, 3.0]) == Difference(2.0, 1.0, 4.0)


def test_printed_with_signs() -> None:
    assert str(Difference(-1.25, -2.0, 0.5)) == "-1.2 [-2.0, +0.5]"


@pytest.mark.parametrize(("base", "other"), [([], []), ([1.0], [1.0, 2.0])])
def test_unpaired_samples_refused(base: list[float], other: list[float]) -> None:
    with pytest.raises(ValueError, match="same number of rounds"):
        paired_difference(base, other)
