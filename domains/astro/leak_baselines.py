"""Two baselines that show a leak between the classes and where the stars are (for the results table).

- **Metadata, linear**: a logistic regression on the 34 standardised catalogue features (train split of the
  budget), scored on the test split. It says how much of the class a linear read of the catalogue gives.
- **Field only**: "which field is this star in": the sky cell of each star (``cos l`` and ``sin b``, the
  AstroM3 position features, rounded to 0.1, so the LMC, SMC and bulge are different cells) predicts the
  most common training class of that cell (the overall most common class for a cell the train split
  lacks). If a set puts some classes in other fields, distances or velocities than others (e.g. real classes
  in the Magellanic Clouds and simulated ones in the disk), this baseline, and with it the metadata and
  spectra modes, scores far above the most common class alone.

Both use exactly the (subset, seed) splits of the fine-tuning cells, so their rows sit beside the models'.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from domains.astro.catalogue import ALL_COLUMNS, META_COLUMNS
from domains.astro.datasets import AstroTrimodalDataset, load_astro_splits

BASELINES: dict[str, str] = {
    "meta_linear": "Metadata, logistic regression",
    "field_only": "Field only (sky cell majority)",
    "majority": "Most common class",
}
"""Baseline key → row title in the table."""

_L_INDEX, _B_INDEX = ALL_COLUMNS.index("l"), ALL_COLUMNS.index("b")


def sky_cells(dataset: AstroTrimodalDataset, resolution: float = 0.1) -> list[tuple[float, float]]:
    """The sky cell of each object: its (cos l, sin b) rounded to ``resolution``."""
    return [
        (
            round(obj.features[_L_INDEX] / resolution) * resolution,
            round(obj.features[_B_INDEX] / resolution) * resolution,
        )
        for obj in dataset.objects
    ]


def field_only_accuracy(train: AstroTrimodalDataset, test: AstroTrimodalDataset) -> float:
    """Test accuracy of predicting each star's class as the most common training class of its sky cell."""
    train_labels, test_labels = train.labels, test.labels
    overall = Counter(train_labels.tolist()).most_common(1)[0][0]
    by_cell: dict[tuple[float, float], Counter[int]] = {}
    for cell, label in zip(sky_cells(train), train_labels, strict=True):
        by_cell.setdefault(cell, Counter())[int(label)] += 1
    predicted = [by_cell[c].most_common(1)[0][0] if c in by_cell else overall for c in sky_cells(test)]
    return float(np.mean(np.asarray(predicted) == test_labels))


def majority_accuracy(train: AstroTrimodalDataset, test: AstroTrimodalDataset) -> float:
    """Test accuracy of always predicting the most common training class."""
    overall = Counter(train.labels.tolist()).most_common(1)[0][0]
    return float(np.mean(test.labels == overall))


def metadata_linear_accuracy(train: AstroTrimodalDataset, test: AstroTrimodalDataset, seed: int) -> float:
    """Test accuracy of a logistic regression on the standardised metadata features."""
    from sklearn.linear_model import LogisticRegression

    n_meta = len(META_COLUMNS)
    model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(train.standardized_features[:, :n_meta], train.labels)
    return float(np.mean(model.predict(test.standardized_features[:, :n_meta]) == test.labels))


def baseline_accuracies(ingest_dir: Path, subset: str, seed: int) -> dict[str, float]:
    """Every baseline's test accuracy on one (subset, seed) of an ingest folder."""
    splits = load_astro_splits(ingest_dir, subset, seed)
    return {
        "meta_linear": metadata_linear_accuracy(splits.train, splits.test, seed),
        "field_only": field_only_accuracy(splits.train, splits.test),
        "majority": majority_accuracy(splits.train, splits.test),
    }
