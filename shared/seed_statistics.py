"""Statistics over seeds, the one implementation every table and ablation uses.

A result over seeds is reported as its mean, sample standard deviation (ddof 1) and 95% confidence
interval of the mean (Student's t with n−1 degrees of freedom). A claim "A beats B" is judged on the
paired difference A−B over the seeds both ran (same seed = same split and initialisation), with its own
interval: :func:`verdict` says whether the interval supports the claim, contradicts it or cannot tell.

Undefined values (NaN, None: e.g. ROC-AUC on a one-class test set) are never turned into numbers: they
are left out and counted, and a summary with no defined value is itself undefined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
CANNOT_TELL = "cannot tell"


def _is_defined(value: float | None) -> bool:
    return value is not None and math.isfinite(float(value))


@dataclass(frozen=True)
class SeedSummary:
    """Mean, spread and 95% interval of one metric over seeds.

    Attributes:
        mean: Mean of the defined values (NaN when there are none).
        std: Sample standard deviation (ddof 1; NaN for fewer than two values).
        low: Lower end of the 95% t-interval of the mean (NaN for fewer than two values).
        high: Upper end of the interval.
        n: Number of defined values.
        undefined: Number of values left out because they were undefined.
    """

    mean: float
    std: float
    low: float
    high: float
    n: int
    undefined: int = 0

    @property
    def defined(self) -> bool:
        """Whether at least one value was defined."""
        return self.n > 0

    def format(self, digits: int = 3) -> str:
        """``"0.512 [0.480, 0.544]"``; ``"0.512 (1 seed)"``; ``"undefined"``; a note on left-out values."""
        if not self.defined:
            return "undefined"
        text = f"{self.mean:.{digits}f}"
        text += f" [{self.low:.{digits}f}, {self.high:.{digits}f}]" if self.n > 1 else " (1 seed)"
        if self.undefined:
            text += f" ({self.undefined} undefined)"
        return text

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-ready values (undefined numbers as None)."""
        values = {"mean": self.mean, "std": self.std, "ci_low": self.low, "ci_high": self.high}
        plain: dict[str, float | int | None] = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        return {**plain, "n": self.n, "undefined": self.undefined}


def summarize(values: Iterable[float | None], confidence: float = CONFIDENCE) -> SeedSummary:
    """Mean, sample standard deviation and t-interval of the defined ``values``."""
    values = list(values)
    defined = [float(v) for v in values if _is_defined(v)]
    n = len(defined)
    undefined = len(values) - n
    if n == 0:
        return SeedSummary(math.nan, math.nan, math.nan, math.nan, 0, undefined)
    mean = sum(defined) / n
    if n == 1:
        return SeedSummary(mean, math.nan, math.nan, math.nan, 1, undefined)
    std = math.sqrt(sum((v - mean) ** 2 for v in defined) / (n - 1))
    half_width = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return SeedSummary(mean, std, mean - half_width, mean + half_width, n, undefined)


def paired_difference(
    first: Mapping[int, float | None], second: Mapping[int, float | None], confidence: float = CONFIDENCE
) -> SeedSummary:
    """Summary of ``first[seed] − second[seed]`` over the seeds where both are defined.

    Pairing removes the variation the two share (split, initialisation), so the interval of the
    difference is what decides "A beats B", not whether the two marginal intervals overlap.
    """
    seeds = sorted(set(first) & set(second))
    differences = [
        float(first[s]) - float(second[s])  # type: ignore[arg-type]
        if _is_defined(first[s]) and _is_defined(second[s])
        else None
        for s in seeds
    ]
    return summarize(differences, confidence)


def verdict(difference: SeedSummary, higher_is_better: bool = True) -> str:
    """Whether a paired difference (A − B) supports "A beats B", contradicts it, or cannot tell.

    Supported when the whole interval lies on the better side of zero, contradicted when it lies on the
    worse side, and "cannot tell" when it contains zero or is undefined (fewer than two seeds).
    """
    if difference.n < 2 or not math.isfinite(difference.low):
        return CANNOT_TELL
    low, high = (difference.low, difference.high) if higher_is_better else (-difference.high, -difference.low)
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return CANNOT_TELL


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; cells are written with ``str`` (format numbers before passing them)."""
    header = [str(cell) for cell in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(cell).replace("|", "\\|") for cell in row]
        if len(cells) != len(header):
            raise ValueError(f"row has {len(cells)} cells, the header {len(header)}: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
