"""Lomb–Scargle period search for light curves whose catalogue period is missing (used by ingest)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Eclipsing classes: their Lomb–Scargle period search uses a two-term model (one term peaks at P/2).
ECLIPSING_CLASSES: frozenset[str] = frozenset({"EW", "EA", "EB", "ELL"})
#: Short-period pulsators: their period search goes up to tens of cycles per day.
SHORT_PERIOD_CLASSES: frozenset[str] = frozenset({"DSCT", "HADS", "SXPHE"})


@dataclass(frozen=True)
class PeriodEstimate:
    """A Lomb–Scargle period estimate.

    Attributes:
        period_days: Best period in days.
        power: Periodogram power at the peak.
        false_alarm_probability: Baluev false-alarm probability of the peak (single-term search only,
            NaN for multi-term models where astropy does not provide it).
        nterms: Number of Fourier terms of the model.
    """

    period_days: float
    power: float
    false_alarm_probability: float
    nterms: int


def estimate_period(
    time_days: np.ndarray,
    values: np.ndarray,
    errors: np.ndarray | None = None,
    variable_type: str | None = None,
    minimum_frequency_per_day: float | None = None,
    maximum_frequency_per_day: float | None = None,
    samples_per_peak: int = 5,
) -> PeriodEstimate:
    """Estimate a period with :class:`astropy.timeseries.LombScargle`, tuned by variable class.

    Eclipsing binaries (EW/EA/EB) use ``nterms=2`` because a one-term periodogram peaks at half their
    period; δ Scuti/HADS search up to 50 cycles/day (their periods are < 0.3 d); other classes up to
    10 cycles/day. The lowest frequency is 2 cycles over the time span. The periodogram uses astropy's
    fast methods (``fast`` for one term, ``fastchi2`` for more): a multi-year survey light curve needs
    ~10⁵ trial frequencies.

    Raises:
        ValueError: fewer than 5 finite points.
    """
    from astropy.timeseries import LombScargle

    time_days = np.asarray(time_days, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(time_days) & np.isfinite(values)
    if errors is not None:
        errors = np.asarray(errors, dtype=np.float64)
        finite &= np.isfinite(errors) & (errors > 0)
    if finite.sum() < 5:
        raise ValueError(f"need at least 5 finite points to estimate a period, got {int(finite.sum())}")
    t, y = time_days[finite], values[finite]
    dy = errors[finite] if errors is not None else None
    span = float(t.max() - t.min()) or 1.0
    nterms = 2 if variable_type in ECLIPSING_CLASSES else 1
    if maximum_frequency_per_day is None:
        maximum_frequency_per_day = 50.0 if variable_type in SHORT_PERIOD_CLASSES else 10.0
    if minimum_frequency_per_day is None:
        minimum_frequency_per_day = 2.0 / span
    periodogram = LombScargle(t, y, dy, nterms=nterms)
    frequency, power = periodogram.autopower(
        minimum_frequency=minimum_frequency_per_day,
        maximum_frequency=maximum_frequency_per_day,
        samples_per_peak=samples_per_peak,
        method="fast" if nterms == 1 else "fastchi2",
    )
    best = int(np.argmax(power))
    fap = float(periodogram.false_alarm_probability(power[best])) if nterms == 1 else float("nan")
    return PeriodEstimate(
        period_days=float(1.0 / frequency[best]), power=float(power[best]), false_alarm_probability=fap, nterms=nterms
    )


#: Largest harmonic n checked for the daily alias (periods near n days and 1/n day).
DAILY_ALIAS_HARMONICS = 4
#: Frequency tolerance (cycles/day) of the daily-alias flag: a period within it of n or 1/n days is suspect.
DAILY_ALIAS_TOLERANCE_PER_DAY = 0.01
#: A 1-day alias (f ± 1 c/d) whose periodogram power reaches this fraction of the power at f is flagged.
ALIAS_POWER_RATIO = 0.8
#: A period longer than this fraction of the time span is flagged (fewer than ~2 cycles observed).
BASELINE_FRACTION = 0.5


def period_flags(
    time_days: np.ndarray,
    values: np.ndarray,
    period_days: float,
    errors: np.ndarray | None = None,
) -> list[str]:
    """Reasons not to trust a fold at ``period_days`` without a closer look (empty when none).

    - ``daily_alias``: the period is within :data:`DAILY_ALIAS_TOLERANCE_PER_DAY` (in frequency) of 1 day
      or one of its harmonics, n days or 1/n day for n ≤ :data:`DAILY_ALIAS_HARMONICS`: ground-based surveys
      observe once a night, so spurious peaks sit there.
    - ``one_day_alias_peak``: the Lomb–Scargle power at a 1-day alias of the period's frequency f (|f − 1|
      or f + 1 cycles/day) is at least :data:`ALIAS_POWER_RATIO` of the power at f, so the true period may
      be the alias (the flag names it).
    - ``near_baseline``: the period exceeds :data:`BASELINE_FRACTION` of the light curve's time span, so
      fewer than two cycles were observed.

    Args:
        time_days: Observation times (days).
        values: Flux or magnitude.
        period_days: The period to check (catalogue or estimated).
        errors: Uncertainties of ``values`` (optional).
    """
    from astropy.timeseries import LombScargle

    flags: list[str] = []
    if not (np.isfinite(period_days) and period_days > 0):
        return ["no_period"]
    frequency = 1.0 / period_days
    for n in range(1, DAILY_ALIAS_HARMONICS + 1):
        for alias, label in ((float(n), f"1/{n} d" if n > 1 else "1 d"), (1.0 / n, f"{n} d")):
            if abs(frequency - alias) < DAILY_ALIAS_TOLERANCE_PER_DAY:
                flags.append(f"daily_alias ({label})")
                break
        else:
            continue
        break
    time_days = np.asarray(time_days, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(time_days) & np.isfinite(values)
    dy = None
    if errors is not None:
        errors = np.asarray(errors, dtype=np.float64)
        finite &= np.isfinite(errors) & (errors > 0)
    t, y = time_days[finite], values[finite]
    if errors is not None:
        dy = errors[finite]
    span = float(t.max() - t.min()) if len(t) else 0.0
    if span > 0 and period_days > BASELINE_FRACTION * span:
        flags.append(f"near_baseline (period {period_days:.4g} d, span {span:.4g} d)")
    if len(t) >= 5:
        aliases = [a for a in (abs(frequency - 1.0), frequency + 1.0) if a > 1.0 / max(span, 1e-9)]
        if aliases:
            power = LombScargle(t, y, dy).power(np.array([frequency, *aliases]))
            for alias, alias_power in zip(aliases, power[1:]):
                if power[0] > 0 and alias_power >= ALIAS_POWER_RATIO * power[0]:
                    flags.append(f"one_day_alias_peak (f±1: period {1.0 / alias:.6g} d)")
    return flags
