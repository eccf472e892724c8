"""Zero-shot classifier weights, logits and accuracies against independent computations."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from shared.evaluation import top_k_accuracy, zero_shot_classifier, zero_shot_evaluate, zero_shot_predict

VOCAB = {"cat": np.array([3.0, 0.0, 0.0, 1.0]), "dog": np.array([0.0, 2.0, 0.0, 1.0])}
TEMPLATE_SHIFT = {"a photo of a {}.": np.array([0.0, 0.0, 1.0, 0.0]), "art of a {}": np.zeros(4)}


def _fake_text_encoder(prompts: list[str]) -> np.ndarray:
    rows = []
    for prompt in prompts:
        classname = next(c for c in VOCAB if c in prompt)
        template = next(t for t in TEMPLATE_SHIFT if t.replace("{}", classname) == prompt)
        rows.append(VOCAB[classname] + TEMPLATE_SHIFT[template])
    return np.array(rows)


def test_class_weight_is_renormalized_mean_of_normalized_template_embeddings():
    weights = zero_shot_classifier(_fake_text_encoder, ["cat", "dog"], list(TEMPLATE_SHIFT))
    for row, classname in enumerate(["cat", "dog"]):
        a = VOCAB[classname] + TEMPLATE_SHIFT["a photo of a {}."]
        b = VOCAB[classname] + TEMPLATE_SHIFT["art of a {}"]
        mean = (a / np.sqrt(a @ a) + b / np.sqrt(b @ b)) / 2
        np.testing.assert_allclose(weights[row], mean / np.sqrt(mean @ mean), rtol=1e-6)


def test_callable_templates_as_in_open_clip():
    by_string = zero_shot_classifier(_fake_text_encoder, ["cat", "dog"], ["art of a {}"])
    by_lambda = zero_shot_classifier(_fake_text_encoder, ["cat", "dog"], [lambda c: f"art of a {c}"])
    np.testing.assert_array_equal(by_string, by_lambda)


def test_logits_are_100_times_cosine():
    rng = np.random.default_rng(0)
    emb, weights = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    logits = zero_shot_predict(emb * 7.0, weights)
    for i in range(5):
        for c in range(3):
            cosine = emb[i] @ weights[c] / np.linalg.norm(emb[i])
            assert logits[i, c] == pytest.approx(100 * cosine, rel=1e-5)


def test_top1_top5_and_balanced_accuracy_against_loops():
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((8, 16))
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    labels = np.array([0] * 30 + list(rng.integers(1, 8, size=30)))
    emb = weights[labels] + 1.3 * rng.standard_normal((60, 16))
    m = zero_shot_evaluate(emb, labels, weights)
    logits = zero_shot_predict(emb, weights)
    hits1 = hits5 = 0
    for i, y in enumerate(labels):
        order = sorted(range(8), key=lambda c, i=i: -logits[i, c])
        hits1 += order[0] == y
        hits5 += y in order[:5]
    assert m["top1"] == pytest.approx(hits1 / 60)
    assert m["top5"] == pytest.approx(hits5 / 60)
    predicted = logits.argmax(axis=1)
    recalls = [np.mean(predicted[labels == c] == c) for c in np.unique(labels)]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, predicted))


def test_top_k_clamps_k_to_number_of_classes():
    assert top_k_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), [0, 0], 5) == 1.0


def test_template_without_slot_is_rejected():
    with pytest.raises(ValueError, match="slot"):
        zero_shot_classifier(_fake_text_encoder, ["cat"], ["a photo"])
