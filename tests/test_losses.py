"""VoidAwareCrossEntropy against a NumPy hand computation (void pixels, per-pixel weights)."""
import numpy as np
import pytest
import tensorflow as tf

from reseg_tf.losses import VoidAwareCrossEntropy

NUM_CLASSES = 3


def _example():
    rng = np.random.default_rng(7)
    probabilities = rng.random((2, 4, 5, NUM_CLASSES)).astype("float32") + 0.05
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    labels = rng.integers(0, NUM_CLASSES + 1, size=(2, 4, 5)).astype("int32")  # 3 = void
    labels[0, 0, 0] = NUM_CLASSES  # at least one void pixel
    weights = rng.random((2, 4, 5)).astype("float32") * 3
    return labels, probabilities, weights


def _reference(labels, probabilities, weights=None):
    """sum over valid pixels of w * -log p[label], divided by the number of valid pixels."""
    total, valid_pixels = 0.0, 0
    for index in np.ndindex(labels.shape):
        label = labels[index]
        if label >= NUM_CLASSES:
            continue
        weight = 1.0 if weights is None else float(weights[index])
        total += weight * -np.log(float(probabilities[index][label]))
        valid_pixels += 1
    return total / valid_pixels, total


def test_unweighted_loss_is_mean_over_non_void_pixels():
    labels, probabilities, _ = _example()
    expected, _ = _reference(labels, probabilities)
    value = float(VoidAwareCrossEntropy(NUM_CLASSES)(labels, probabilities))
    assert value == pytest.approx(expected, rel=1e-5)


def test_weighted_loss_divides_by_valid_pixels_not_weights():
    labels, probabilities, weights = _example()
    expected, expected_sum = _reference(labels, probabilities, weights)
    loss = VoidAwareCrossEntropy(NUM_CLASSES)
    assert float(loss(labels, probabilities, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)
    summed = VoidAwareCrossEntropy(NUM_CLASSES, reduction="sum")
    assert float(summed(labels, probabilities, sample_weight=weights)) == pytest.approx(expected_sum, rel=1e-5)


def test_void_prediction_does_not_change_the_loss():
    labels, probabilities, _ = _example()
    changed = probabilities.copy()
    void = labels >= NUM_CLASSES
    changed[void] = [0.98, 0.01, 0.01]
    loss = VoidAwareCrossEntropy(NUM_CLASSES)
    assert float(loss(labels, changed)) == pytest.approx(float(loss(labels, probabilities)), rel=1e-6)


def test_all_void_batch_gives_zero_and_graph_mode_matches_eager():
    labels, probabilities, weights = _example()
    loss = VoidAwareCrossEntropy(NUM_CLASSES)
    assert float(loss(np.full_like(labels, NUM_CLASSES), probabilities)) == 0.0
    graph_value = tf.function(lambda y, p, w: loss(y, p, sample_weight=w))(labels, probabilities, weights)
    assert float(graph_value) == pytest.approx(float(loss(labels, probabilities, sample_weight=weights)), rel=1e-6)


def test_config_round_trip_and_validation():
    loss = VoidAwareCrossEntropy(11, name="ce")
    clone = VoidAwareCrossEntropy.from_config(loss.get_config())
    assert clone.num_classes == 11 and clone.name == "ce"
    with pytest.raises(ValueError, match="num_classes"):
        VoidAwareCrossEntropy(0)
