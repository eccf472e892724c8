"""Period flags of the per-object ingest report: daily alias and harmonics, 1-day aliases f ± 1 c/d, and
periods close to the time span."""

from __future__ import annotations

import numpy as np
import pytest

from domains.astro.period_search import period_flags


def nightly(period_days: float, nights: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One visit a night (at nearly the same hour), as a ground-based survey observes."""
    rng = np.random.default_rng(seed)
    time_days = np.arange(nights) + rng.normal(0, 0.03, nights)
    return time_days, np.sin(2 * np.pi * time_days / period_days) + rng.normal(0, 0.1, nights)


def random_times(period_days: float, n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Times spread over every hour of the day (no daily alias can arise)."""
    rng = np.random.default_rng(seed)
    time_days = np.sort(rng.uniform(0, 300, n))
    return time_days, np.sin(2 * np.pi * time_days / period_days) + rng.normal(0, 0.1, n)


@pytest.mark.parametrize(
    ("period", "label"), [(1.0, "1 d"), (0.5, "1/2 d"), (1 / 3, "1/3 d"), (2.0, "2 d"), (3.002, "3 d")]
)
def test_periods_at_the_day_and_its_harmonics_are_flagged_as_daily_aliases(period: float, label: str) -> None:
    time_days, values = random_times(0.37)
    flags = period_flags(time_days, values, period)
    assert f"daily_alias ({label})" in flags


def test_a_clean_period_with_round_the_clock_sampling_has_no_flag() -> None:
    time_days, values = random_times(0.5555)
    assert period_flags(time_days, values, 0.5555) == []
    assert not any(f.startswith("daily_alias") for f in period_flags(time_days, values, 1.3))


def test_nightly_sampling_flags_the_one_day_alias_of_the_true_frequency() -> None:
    period = 0.5555
    time_days, values = nightly(period)
    flags = period_flags(time_days, values, period)
    alias_periods = sorted(float(f.split("period ")[1].split(" d")[0]) for f in flags if f.startswith("one_day"))
    # f = 1.8 c/d: its 1-day aliases are 0.8 c/d (1.25 d) and 2.8 c/d (0.357 d).
    np.testing.assert_allclose(alias_periods, [1 / (1 / period + 1), 1 / (1 / period - 1)], rtol=1e-3)
    assert not any(f.startswith("daily_alias") for f in flags)


def test_a_period_close_to_the_time_span_is_flagged() -> None:
    time_days, values = random_times(0.37)
    assert any(f.startswith("near_baseline") for f in period_flags(time_days, values, 200.0))
    assert not any(f.startswith("near_baseline") for f in period_flags(time_days, values, 20.0))


def test_a_missing_period_is_flagged() -> None:
    time_days, values = random_times(0.37)
    assert period_flags(time_days, values, float("nan")) == ["no_period"]
