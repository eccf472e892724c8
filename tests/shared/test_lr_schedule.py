"""Learning-rate schedules against their formulas: warm-up, cosine with floor, constant, plateau, state."""

from __future__ import annotations

import math

import pytest

from shared.lr_schedule import LearningRateSchedule


def test_linear_warmup_then_cosine_to_floor() -> None:
    schedule = LearningRateSchedule(1.0, total_steps=110, warmup_steps=10, kind="cosine", min_lr_ratio=0.1)
    assert [schedule.lr_at(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert schedule.lr_at(10) == pytest.approx(1.0)
    # Half way through the decay: floor + (1 - floor) * 0.5 * (1 + cos(pi/2)).
    assert schedule.lr_at(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert schedule.lr_at(110) == pytest.approx(0.1)
    assert schedule.lr_at(500) == pytest.approx(0.1)  # past the end it stays at the floor
    expected = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.3))
    assert schedule.lr_at(40) == pytest.approx(expected)


def test_constant_schedule_and_unknown_kind() -> None:
    schedule = LearningRateSchedule(0.01, total_steps=5, kind="constant")
    assert {schedule.lr_at(s) for s in range(10)} == {0.01}
    with pytest.raises(ValueError, match="schedule must be"):
        LearningRateSchedule(0.01, 5, kind="linear")


@pytest.mark.parametrize("mode", ["max", "min"])
def test_plateau_lowers_the_lr_after_patience_misses_in_the_metric_direction(mode: str) -> None:
    schedule = LearningRateSchedule(1.0, 100, kind="plateau", plateau_patience=2, plateau_decay=0.5, select_mode=mode)
    better, worse = (0.9, 0.1) if mode == "max" else (0.1, 0.9)
    schedule.on_validation(0.5)
    schedule.on_validation(better)  # improvement: no change
    assert schedule.lr_at(50) == 1.0
    schedule.on_validation(worse)
    assert schedule.lr_at(50) == 1.0  # one miss < patience
    schedule.on_validation(worse)
    assert schedule.lr_at(50) == 0.5  # two misses: decayed, counter reset
    schedule.on_validation(worse)
    schedule.on_validation(worse)
    assert schedule.lr_at(50) == 0.25


def test_plateau_factor_also_scales_warmup_and_cosine_ignores_validation() -> None:
    cosine = LearningRateSchedule(1.0, 10, kind="cosine", plateau_patience=1)
    for value in (1.0, 0.0, 0.0):
        cosine.on_validation(value)
    assert cosine.plateau_factor == 1.0


def test_state_round_trip_continues_identically() -> None:
    first = LearningRateSchedule(1.0, 100, kind="plateau", plateau_patience=1, select_mode="min")
    for value in (1.0, 2.0, 0.5, 3.0):
        first.on_validation(value)
    second = LearningRateSchedule(1.0, 100, kind="plateau", plateau_patience=1, select_mode="min")
    second.load_state_dict(first.state_dict())
    for schedule in (first, second):
        schedule.on_validation(4.0)
    assert first.state_dict() == second.state_dict() and first.lr_at(30) == second.lr_at(30) == 0.125


def test_warmup_from_a_start_factor_ramps_linearly_from_that_fraction_to_the_peak() -> None:
    schedule = LearningRateSchedule(2.0, total_steps=20, warmup_steps=10, kind="constant", warmup_start_factor=1e-5)
    assert schedule.lr_at(0) == pytest.approx(2e-5)
    assert schedule.lr_at(5) == pytest.approx(2.0 * (1e-5 + (1 - 1e-5) * 0.5))
    assert schedule.lr_at(10) == 2.0 and schedule.lr_at(19) == 2.0
