"""Downstream functions on embeddings: k-NN, anomaly scores, label-error candidates, 2-D maps."""

from __future__ import annotations

import numpy as np
import pytest

from domains.astro.downstream import (
    anomaly_scores,
    class_centroids,
    embedding_map_2d,
    fused_embeddings,
    misclassification_candidates,
    nearest_neighbours,
)


def clustered(n_per_class: int = 30, n_classes: int = 3, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 4
    labels = np.repeat(np.arange(n_classes), n_per_class)
    vectors = centres[labels] + rng.normal(size=(len(labels), dim)) * 0.3
    return vectors.astype(np.float32), labels


def test_nearest_neighbours_match_brute_force_cosine() -> None:
    rng = np.random.default_rng(1)
    queries, index = rng.normal(size=(7, 5)), rng.normal(size=(40, 5))
    indices, similarities = nearest_neighbours(queries, index, k=4)
    unit_q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    unit_i = index / np.linalg.norm(index, axis=1, keepdims=True)
    cosine = unit_q @ unit_i.T
    expected = np.argsort(-cosine, axis=1)[:, :4]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, np.take_along_axis(cosine, expected, 1), atol=1e-5)


def test_within_modality_search_excludes_the_query_itself() -> None:
    vectors, labels = clustered()
    indices, _ = nearest_neighbours(vectors, vectors, k=5, exclude_self=True)
    assert not (indices == np.arange(len(vectors))[:, None]).any()
    # Clusters are well separated: neighbours share the query's class.
    assert (labels[indices] == labels[:, None]).all()


def test_cross_modal_search_finds_the_same_object() -> None:
    rng = np.random.default_rng(2)
    photometry = rng.normal(size=(25, 6))
    spectra = photometry + rng.normal(size=photometry.shape) * 0.01
    indices, _ = nearest_neighbours(photometry, spectra, k=1)
    np.testing.assert_array_equal(indices[:, 0], np.arange(25))


def test_nearest_neighbours_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="width"):
        nearest_neighbours(np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        nearest_neighbours(np.array([[np.nan, 1.0]]), np.ones((4, 2)))
    with pytest.raises(ValueError, match="k must be"):
        nearest_neighbours(np.ones((2, 3)), np.ones((4, 3)), k=5)


@pytest.mark.parametrize("method", ["isolation_forest", "lof"])
def test_anomaly_scores_rank_an_injected_outlier_highest(method: str) -> None:
    vectors, _ = clustered()
    outlier = -vectors.mean(0, keepdims=True) + 3.0  # pointing away from every cluster
    scores = anomaly_scores(np.vstack([vectors, outlier]), method=method)
    assert scores.shape == (len(vectors) + 1,)
    assert int(np.argmax(scores)) == len(vectors)
    # Scoring new objects against a reference set gives the same ordering signal.
    novel = anomaly_scores(np.vstack([vectors[:3], outlier]), method=method, reference=vectors)
    assert int(np.argmax(novel)) == 3


def test_class_centroids_are_unit_means() -> None:
    vectors, labels = clustered(n_classes=2)
    centroids = class_centroids(vectors, labels, n_classes=3)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = unit[labels == 1].mean(0)
    np.testing.assert_allclose(centroids[1], expected / np.linalg.norm(expected), atol=1e-6)
    assert np.isnan(centroids[2]).all()


def test_mislabelled_objects_are_flagged_by_every_modality() -> None:
    photometry, labels = clustered(seed=3)
    spectra, _ = clustered(seed=3)
    spectra = spectra + np.random.default_rng(4).normal(size=spectra.shape).astype(np.float32) * 0.1
    noisy = labels.copy()
    swapped = [5, 40, 70]
    noisy[swapped] = (labels[swapped] + 1) % 3
    table = misclassification_candidates(
        {"photometry": photometry, "spectra": spectra},
        noisy,
        reference_embeddings={"photometry": photometry, "spectra": spectra},
        reference_labels=labels,
        n_classes=3,
        top_k=3,
    )
    assert sorted(table.index[table["candidate"]].tolist()) == swapped
    assert (table.loc[swapped, "n_flags"] == 2).all()
    expected_distance = (
        1 - (photometry[5] / np.linalg.norm(photometry[5])) @ class_centroids(photometry, labels, 3)[noisy[5]]
    )
    assert table.loc[5, "distance_photometry"] == pytest.approx(expected_distance, abs=1e-5)


def test_fused_embedding_is_the_normalised_mean() -> None:
    a, b = np.array([[3.0, 0.0]]), np.array([[0.0, 5.0]])
    np.testing.assert_allclose(fused_embeddings({"a": a, "b": b}), [[np.sqrt(0.5), np.sqrt(0.5)]], atol=1e-6)


def test_pca_map_separates_clusters_and_reports_its_method() -> None:
    vectors, labels = clustered()
    coordinates, method = embedding_map_2d(vectors, method="pca")
    assert method == "pca" and coordinates.shape == (len(vectors), 2)
    centres = np.stack([coordinates[labels == c].mean(0) for c in range(3)])
    spread = max(coordinates[labels == c].std(0).max() for c in range(3))
    assert min(np.linalg.norm(centres[i] - centres[j]) for i in range(3) for j in range(i + 1, 3)) > 3 * spread
    _, auto_method = embedding_map_2d(vectors, method="auto")
    assert auto_method in {"umap", "pca"}


def test_umap_is_the_default_map_cosine_seeded_and_separates_clusters() -> None:
    vectors, labels = clustered()
    coordinates, method = embedding_map_2d(vectors, n_neighbors=10, seed=3)
    assert method == "umap" and coordinates.shape == (len(vectors), 2)
    # Each point's nearest map neighbour is of its own cluster (UMAP keeps the cosine neighbourhoods).
    distances = np.linalg.norm(coordinates[:, None] - coordinates[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(1)] == labels).mean() > 0.95
    # Seeded: the same call gives the same map.
    again, _ = embedding_map_2d(vectors, n_neighbors=10, seed=3)
    np.testing.assert_allclose(again, coordinates, atol=1e-4)
    with pytest.raises(ValueError, match="pca"):
        embedding_map_2d(vectors[:3])
