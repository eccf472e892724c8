"""Seed statistics against hand computations (scipy's t quantiles) and the verdict rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from shared.seed_statistics import (
    CANNOT_TELL,
    CONTRADICTED,
    SUPPORTED,
    markdown_table,
    paired_difference,
    summarize,
    verdict,
)


def test_mean_sample_std_and_t_interval() -> None:
    values = [0.61, 0.64, 0.58, 0.66, 0.63]
    summary = summarize(values)
    mean, std = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, 4) * std / math.sqrt(5)
    assert summary.mean == pytest.approx(mean)
    assert summary.std == pytest.approx(std)
    assert (summary.low, summary.high) == pytest.approx((mean - half, mean + half))
    assert summary.n == 5 and summary.undefined == 0
    assert summary.format() == f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def test_undefined_values_are_left_out_and_counted_never_zero() -> None:
    summary = summarize([0.8, None, float("nan"), 0.6])
    assert summary.mean == pytest.approx(0.7) and summary.n == 2 and summary.undefined == 2
    assert "2 undefined" in summary.format()
    nothing = summarize([None, float("nan")])
    assert not nothing.defined and nothing.format() == "undefined"
    assert nothing.as_dict()["mean"] is None


def test_one_seed_has_no_interval() -> None:
    summary = summarize([0.5])
    assert summary.mean == 0.5 and math.isnan(summary.low)
    assert summary.format() == "0.500 (1 seed)"


def test_paired_difference_uses_common_defined_seeds() -> None:
    a = {0: 0.70, 1: 0.72, 2: 0.69, 3: None}
    b = {0: 0.60, 1: 0.61, 2: 0.60, 3: 0.5, 4: 0.9}
    difference = paired_difference(a, b)
    assert difference.n == 3 and difference.undefined == 1
    assert difference.mean == pytest.approx(np.mean([0.10, 0.11, 0.09]))
    assert verdict(difference) == SUPPORTED
    assert verdict(difference, higher_is_better=False) == CONTRADICTED


def test_pairing_separates_what_marginal_intervals_cannot() -> None:
    # Seeds move both methods together; B is always 0.01 lower: the marginal intervals overlap, the paired
    # difference does not contain zero.
    base = [0.50, 0.60, 0.70, 0.55, 0.65]
    a = dict(enumerate(base))
    b = {seed: value - 0.01 for seed, value in a.items()}
    assert summarize(b.values()).high > summarize(a.values()).low
    assert verdict(paired_difference(a, b)) == SUPPORTED


def test_verdict_cannot_tell_when_interval_contains_zero_or_too_few_seeds() -> None:
    assert verdict(paired_difference({0: 0.5, 1: 0.7}, {0: 0.6, 1: 0.6})) == CANNOT_TELL
    assert verdict(paired_difference({0: 0.9}, {0: 0.1})) == CANNOT_TELL


def test_markdown_table_shape_and_escaping() -> None:
    table = markdown_table(["variant", "auc"], [["a|b", "0.5"], ["c", "undefined"]])
    assert table.splitlines() == ["| variant | auc |", "|---|---|", "| a\\|b | 0.5 |", "| c | undefined |"]
    with pytest.raises(ValueError, match="2 cells"):
        markdown_table(["a"], [["x", "y"]])
