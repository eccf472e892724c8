"""Downstream uses of AstroM3 embeddings: similarity search, anomalies, label-error candidates, 2-D maps.

Library functions for the explorer and the ``embed`` command. Every function takes plain numpy arrays of
embeddings (one row per object, any width) so it works on vectors straight from the model or read back
from the embedding store. Similarities are cosine similarities; vectors need not be pre-normalised.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors


def _as_matrix(vectors: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, dim) array, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return matrix


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("zero-length embedding: cosine similarity is undefined")
    return matrix / norms


def fused_embeddings(embeddings: Mapping[str, np.ndarray], modalities: Sequence[str] | None = None) -> np.ndarray:
    """Average of the L2-normalised per-modality embeddings (AstroM3's ``avg`` fusion), re-normalised.

    Args:
        embeddings: ``{modality: (n, dim)}`` for the same n objects in the same order.
        modalities: Which modalities to fuse (all when omitted).
    """
    names = list(modalities or embeddings)
    if not names:
        raise ValueError("no modalities to fuse")
    stacked = np.stack([_unit_rows(_as_matrix(embeddings[name], name)) for name in names])
    return _unit_rows(stacked.mean(0))


def nearest_neighbours(
    queries: np.ndarray,
    index: np.ndarray,
    k: int = 5,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine k-nearest neighbours of each query row among the index rows.

    Cross-modal search passes one modality as ``queries`` and another as ``index`` (e.g. photometry
    queries against spectra: the spectra whose embeddings best match each light curve); within-modality
    search passes the same matrix twice with ``exclude_self=True`` so row i does not return itself.

    Args:
        queries: ``(q, dim)`` query embeddings.
        index: ``(n, dim)`` embeddings to search.
        k: Neighbours per query.
        exclude_self: Drop index row i from query row i's results (needs q == n, same objects in order).

    Returns:
        ``(indices (q, k) int, similarities (q, k) float)``, best first.
    """
    queries, index = _as_matrix(queries, "queries"), _as_matrix(index, "index")
    if queries.shape[1] != index.shape[1]:
        raise ValueError(f"queries have width {queries.shape[1]} but the index has width {index.shape[1]}")
    if exclude_self and queries.shape[0] != index.shape[0]:
        raise ValueError("exclude_self needs queries and index to be the same objects")
    available = index.shape[0] - (1 if exclude_self else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must be between 1 and {available}, got {k}")
    search = NearestNeighbors(n_neighbors=k + int(exclude_self), metric="cosine", algorithm="brute").fit(index)
    distances, indices = search.kneighbors(queries)
    if exclude_self:
        keep = indices != np.arange(len(queries))[:, None]
        # A query may tie with a duplicate and not come first; drop exactly one entry per row either way.
        keep[keep.all(axis=1), -1] = False
        indices = indices[keep].reshape(len(queries), k)
        distances = distances[keep].reshape(len(queries), k)
    return indices, 1.0 - distances


def anomaly_scores(
    vectors: np.ndarray,
    method: Literal["isolation_forest", "lof"] = "isolation_forest",
    reference: np.ndarray | None = None,
    n_neighbors: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Outlier score per row (higher = more anomalous) from scikit-learn's IsolationForest or LOF.

    Args:
        vectors: ``(n, dim)`` embeddings to score.
        method: ``"isolation_forest"`` (``-score_samples``) or ``"lof"`` (local outlier factor, ~1 for
            inliers, larger for outliers).
        reference: Embeddings to fit on (e.g. the training set); when omitted the detector is fitted on
            ``vectors`` themselves.
        n_neighbors: LOF neighbourhood size (capped at n - 1).
        seed: IsolationForest random state.

    Returns:
        ``(n,)`` float scores.
    """
    vectors = _unit_rows(_as_matrix(vectors, "vectors"))
    fit_on = vectors if reference is None else _unit_rows(_as_matrix(reference, "reference"))
    if method == "isolation_forest":
        forest = IsolationForest(n_estimators=200, random_state=seed).fit(fit_on)
        return -forest.score_samples(vectors)
    if method == "lof":
        if len(fit_on) < 3:
            raise ValueError("LOF needs at least 3 reference vectors")
        neighbours = min(n_neighbors, len(fit_on) - 1)
        if reference is None:
            lof = LocalOutlierFactor(n_neighbors=neighbours).fit(vectors)
            return -lof.negative_outlier_factor_
        lof = LocalOutlierFactor(n_neighbors=neighbours, novelty=True).fit(fit_on)
        return -lof.score_samples(vectors)
    raise ValueError(f"method must be 'isolation_forest' or 'lof', got {method!r}")


def class_centroids(vectors: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Unit-length mean of the normalised embeddings of each class, ``(n_classes, dim)`` (NaN if empty)."""
    vectors = _unit_rows(_as_matrix(vectors, "vectors"))
    labels = np.asarray(labels)
    centroids = np.full((n_classes, vectors.shape[1]), np.nan, dtype=np.float32)
    for label in range(n_classes):
        members = vectors[labels == label]
        if len(members):
            centroid = members.mean(0)
            centroids[label] = centroid / max(np.linalg.norm(centroid), 1e-12)
    return centroids


def misclassification_candidates(
    embeddings: Mapping[str, np.ndarray],
    labels: np.ndarray,
    reference_embeddings: Mapping[str, np.ndarray],
    reference_labels: np.ndarray,
    n_classes: int,
    top_k: int = 20,
    min_modalities: int | None = None,
) -> pd.DataFrame:
    """Objects whose embeddings sit far from their labelled class in several modalities.

    For each modality, class centroids are computed from the reference (training) embeddings and each
    object gets the score ``1 - e . c_label`` (cosine distance to its own class centroid); the ``top_k``
    largest scores in a modality are flagged. Objects flagged in at least ``min_modalities`` modalities
    (all of them by default) are candidates for a wrong label (AstroM3's misclassification search).

    Args:
        embeddings: ``{modality: (n, dim)}`` of the objects to check.
        labels: ``(n,)`` their integer labels.
        reference_embeddings: ``{modality: (m, dim)}`` defining the centroids (e.g. the training split).
        reference_labels: ``(m,)`` integer labels.
        n_classes: Number of classes.
        top_k: Objects flagged per modality.
        min_modalities: Flags needed to be a candidate (default: every modality).

    Returns:
        One row per object (input order): ``distance_<modality>``, ``flag_<modality>``, ``n_flags``,
        ``candidate``.
    """
    labels = np.asarray(labels)
    modalities = list(embeddings)
    required = len(modalities) if min_modalities is None else min_modalities
    if not 1 <= required <= len(modalities):
        raise ValueError(f"min_modalities must be between 1 and {len(modalities)}, got {min_modalities}")
    table = pd.DataFrame(index=pd.RangeIndex(len(labels)))
    flags = np.zeros(len(labels), dtype=int)
    for modality in modalities:
        vectors = _unit_rows(_as_matrix(embeddings[modality], modality))
        if len(vectors) != len(labels):
            raise ValueError(f"{modality}: {len(vectors)} embeddings for {len(labels)} labels")
        centroids = class_centroids(reference_embeddings[modality], reference_labels, n_classes)
        own = centroids[labels]
        distance = 1.0 - np.einsum("nd,nd->n", vectors, own)
        # An object of a class absent from the reference set cannot be judged: never flag it.
        distance = np.where(np.isnan(distance), -np.inf, distance)
        flagged = np.zeros(len(labels), dtype=bool)
        flagged[np.argsort(-distance, kind="stable")[: min(top_k, len(labels))]] = True
        flagged &= np.isfinite(distance)
        table[f"distance_{modality}"] = np.where(np.isfinite(distance), distance, np.nan)
        table[f"flag_{modality}"] = flagged
        flags += flagged
    table["n_flags"] = flags
    table["candidate"] = flags >= required
    return table


def umap_available() -> bool:
    """Whether ``umap-learn`` is importable (pinned in pyproject.toml, so normally true)."""
    return importlib.util.find_spec("umap") is not None


def embedding_map_2d(
    vectors: np.ndarray,
    method: Literal["auto", "umap", "pca"] = "umap",
    n_neighbors: int = 22,
    min_dist: float = 0.7,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """2-D map of embeddings: UMAP with the cosine metric (AstroM3's maps; the default) or PCA when asked.

    Args:
        vectors: ``(n, dim)`` embeddings (L2-normalised here).
        method: ``"umap"`` (default; at least 4 vectors), ``"pca"``, or ``"auto"`` (UMAP, or PCA for fewer
            than 4 vectors).
        n_neighbors: UMAP neighbourhood size (paper: 22 or 45; capped at n - 1).
        min_dist: UMAP minimum distance (paper: 0.7).
        seed: Random state.

    Returns:
        ``(coordinates (n, 2), method_used)``.
    """
    vectors = _unit_rows(_as_matrix(vectors, "vectors"))
    if method == "auto":
        method = "umap" if umap_available() and len(vectors) > 3 else "pca"
    if method == "umap":
        if len(vectors) < 4:
            raise ValueError(f"a UMAP map needs at least 4 vectors, got {len(vectors)}; use method='pca'")
        if not umap_available():
            raise ModuleNotFoundError("method='umap' needs the optional umap-learn package; use 'pca' or install it")
        import umap

        # A seeded UMAP runs on one thread (umap-learn overrides n_jobs and warns); say so instead.
        reducer = umap.UMAP(
            n_neighbors=min(n_neighbors, len(vectors) - 1),
            min_dist=min_dist,
            metric="cosine",
            random_state=seed,
            n_jobs=1,
        )
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float32), "umap"
    if method == "pca":
        if len(vectors) < 2:
            raise ValueError("a 2-D map needs at least 2 vectors")
        coordinates = PCA(n_components=2, random_state=seed).fit_transform(vectors)
        return coordinates.astype(np.float32), "pca"
    raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}")
