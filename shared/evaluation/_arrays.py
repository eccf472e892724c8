"""Conversion of embedding inputs (numpy arrays or torch tensors) to float numpy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_float_matrix(values: Any, name: str) -> np.ndarray:
    """Returns ``values`` as a 2-D float64 numpy array.

    Args:
        values: A numpy array, a torch tensor (any device, any float dtype) or a nested sequence.
        name: The argument name, used in error messages.

    Raises:
        ValueError: If the input is not 2-D or holds non-finite numbers.
    """
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, dim); got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix


def l2_normalize_rows(matrix: np.ndarray, name: str) -> np.ndarray:
    """Divides every row by its L2 norm; a zero row is an error (its direction is undefined)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero_rows = np.flatnonzero(norms[:, 0] == 0)
    if zero_rows.size:
        raise ValueError(f"{name} has all-zero rows (first: {zero_rows[:5].tolist()})")
    return matrix / norms


def as_label_vector(values: Any, name: str) -> np.ndarray:
    """Returns labels as a 1-D numpy array (torch tensors are moved to the CPU)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    labels = np.asarray(values)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {labels.shape}")
    return labels
