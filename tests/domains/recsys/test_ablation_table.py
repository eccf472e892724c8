"""The ablation's summary over seeds: sample std, 95% t-interval, paired differences, undefined values kept out."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from domains.recsys.llmrec.ablation import summarize_ablation


def _runs(values: list[float], seeds=(1, 2, 3)) -> list[dict[str, float]]:
    return [{"seed": seed, "recall@20": value, "ndcg@20": value / 2} for seed, value in zip(seeds, values)]


def test_cells_hold_mean_sample_std_and_t_interval() -> None:
    table, summary = summarize_ablation({"lightgcn": _runs([0.20, 0.21, 0.22]), "+side": _runs([0.25, 0.27, 0.26])})
    half_width = stats.t.ppf(0.975, df=2) * 0.01 / math.sqrt(3)
    recall = summary["lightgcn"]["recall@20"]
    assert recall["mean"] == pytest.approx(0.21) and recall["std"] == pytest.approx(0.01)
    assert (recall["ci_low"], recall["ci_high"]) == pytest.approx((0.21 - half_width, 0.21 + half_width))
    assert f"0.2100 ± 0.0100 [{0.21 - half_width:.4f}, {0.21 + half_width:.4f}]" in table
    difference = summary["+side"]["paired_difference_vs_lightgcn"]["recall@20"]
    assert difference["mean"] == pytest.approx(0.05) and difference["verdict"] == "supported"
    assert table.count("\n") == 4 and "Δ recall@20 vs lightgcn" in table.splitlines()[0]


def test_an_undefined_value_is_left_out_not_counted_as_zero() -> None:
    side = _runs([0.25, 0.27, 0.26])
    side[1]["ndcg@20"] = math.nan
    _, summary = summarize_ablation({"lightgcn": _runs([0.20, 0.21, 0.22]), "+side": side})
    ndcg = summary["+side"]["ndcg@20"]
    assert ndcg["n"] == 2 and ndcg["undefined"] == 1 and ndcg["mean"] == pytest.approx((0.125 + 0.13) / 2)
    assert summary["+side"]["paired_difference_vs_lightgcn"]["ndcg@20"]["n"] == 2


def test_one_seed_cannot_tell() -> None:
    table, summary = summarize_ablation({"lightgcn": _runs([0.2], (1,)), "+side": _runs([0.3], (1,))})
    assert summary["+side"]["paired_difference_vs_lightgcn"]["recall@20"]["verdict"] == "cannot tell"
    assert "(1 seed)" in table and summary["+side"]["recall@20"]["std"] is None
