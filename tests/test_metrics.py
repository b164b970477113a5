"""Confusion-matrix metrics against a hand-computed confusion matrix."""
import keras
import numpy as np
import pytest

from reseg_tf.metrics import (
    AverageClassAccuracy, ConfusionMatrixMetric, GlobalAccuracy, MeanIoU, paired_bootstrap_mean_iou,
    summarize_confusion,
)

NAMES = ("a", "b", "c", "d")
# Ground truth and argmax predictions of 2 images of 2x4 pixels; label 4 is void. Class d never
# appears in either, class c is in the ground truth but never predicted.
LABELS = np.array([[[0, 0, 1, 1], [2, 4, 1, 0]], [[4, 4, 1, 2], [0, 1, 1, 1]]])
PREDICTED = np.array([[[0, 1, 1, 1], [1, 0, 1, 0]], [[3, 2, 0, 0], [0, 1, 1, 1]]])
# cm[ground truth, prediction], counted by hand from the arrays above (void pixels skipped).
HAND_CM = np.array([
    [3, 1, 0, 0],   # a: 4 pixels, one predicted b
    [1, 6, 0, 0],   # b: 7 pixels, one predicted a
    [1, 1, 0, 0],   # c: 2 pixels, predicted b and a
    [0, 0, 0, 0],   # d: absent (its one prediction is on a void pixel)
])


def _one_hot(classes):
    return keras.ops.convert_to_numpy(keras.ops.one_hot(classes, len(NAMES)))


def _stream(metric):
    # Two updates, one image each: the matrix must accumulate.
    for index in range(2):
        metric.update_state(LABELS[index:index + 1], _one_hot(PREDICTED[index:index + 1]))
    return metric


def test_confusion_matrix_matches_hand_count():
    metric = _stream(ConfusionMatrixMetric(len(NAMES)))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(metric.result()), HAND_CM)


def test_scalar_metrics_match_hand_values():
    # global: (3 + 6 + 0) / 13; class acc: a 3/4, b 6/7, c 0, d 0 (absent counts 0).
    # IoU: a 3/(4+5-3), b 6/(7+8-6), c 0/(2+0-0), d 0 (empty union counts 0).
    assert float(_stream(GlobalAccuracy(4)).result()) == pytest.approx(9 / 13)
    assert float(_stream(AverageClassAccuracy(4)).result()) == pytest.approx((3 / 4 + 6 / 7) / 4)
    assert float(_stream(MeanIoU(4)).result()) == pytest.approx((3 / 6 + 6 / 9) / 4)


def test_summarize_confusion_keys_and_values():
    summary = summarize_confusion(HAND_CM, NAMES)
    assert summary["global_acc"] == pytest.approx(9 / 13)
    assert summary["avg_class_acc"] == pytest.approx((3 / 4 + 6 / 7) / 4)
    assert summary["mean_iou"] == pytest.approx((3 / 6 + 6 / 9) / 4)
    assert summary["class_acc"] == pytest.approx({"a": 3 / 4, "b": 6 / 7, "c": 0.0, "d": 0.0})
    assert summary["class_iou"] == pytest.approx({"a": 0.5, "b": 6 / 9, "c": 0.0, "d": 0.0})
    assert summary["classes_without_ground_truth"] == ["d"]
    assert summary["num_pixels"] == 13
    metric_summary = _stream(MeanIoU(4)).summary(NAMES)
    assert metric_summary == summary


def test_differs_from_keras_mean_iou_on_absent_class():
    keras_metric = keras.metrics.MeanIoU(num_classes=4, ignore_class=4, sparse_y_pred=True)
    for index in range(2):
        keras_metric.update_state(LABELS[index:index + 1], PREDICTED[index:index + 1])
    # Keras averages over the 3 classes with a non-empty union; the paper's mean is over all 4.
    assert float(keras_metric.result()) == pytest.approx((3 / 6 + 6 / 9) / 3)
    assert float(_stream(MeanIoU(4)).result()) == pytest.approx((3 / 6 + 6 / 9) / 4)


def test_reset_weights_and_config():
    metric = _stream(MeanIoU(4))
    metric.reset_state()
    assert float(metric.result()) == 0.0
    weights = np.ones(LABELS.shape, "float32")
    weights[1] = 0  # drop the second image entirely
    metric.update_state(LABELS, _one_hot(PREDICTED), sample_weight=weights)
    cm = keras.ops.convert_to_numpy(ConfusionMatrixMetric.result(metric))
    assert cm.sum() == 7
    clone = MeanIoU.from_config(metric.get_config())
    assert clone.name == "mean_iou" and clone.num_classes == 4
    with pytest.raises(ValueError, match="num_classes"):
        MeanIoU(1)
    with pytest.raises(ValueError, match="class names"):
        summarize_confusion(HAND_CM, NAMES[:3])


def test_metric_names_in_fit_logs():
    inputs = keras.Input((2, 4, 3))
    model = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(4)(inputs)))
    model.compile("sgd", "sparse_categorical_crossentropy",
                  metrics=[GlobalAccuracy(4), AverageClassAccuracy(4), MeanIoU(4)])
    images = np.random.default_rng(0).random((2, 2, 4, 3)).astype("float32")
    labels = np.minimum(LABELS, 3)
    history = model.fit(images, labels, validation_data=(images, labels), epochs=1, verbose=0)
    for key in ("global_acc", "avg_class_acc", "mean_iou", "val_mean_iou"):
        assert key in history.history


def _random_confusions(rng, count, num_classes=3, scale=50):
    return rng.integers(0, scale, (count, num_classes, num_classes))


def test_paired_bootstrap_equals_a_loop_over_the_same_draws_of_images():
    rng = np.random.default_rng(3)
    a, b = _random_confusions(rng, 7), _random_confusions(rng, 7)
    result = paired_bootstrap_mean_iou(a, b, num_resamples=300, seed=5)
    names = ("x", "y", "z")
    draws = np.random.default_rng(5).multinomial(7, np.full(7, 1 / 7), size=300)
    differences = []
    for counts in draws:  # image i drawn counts[i] times, the same images for both models
        picked = np.repeat(np.arange(7), counts)
        differences.append(summarize_confusion(b[picked].sum(0), names)["mean_iou"]
                           - summarize_confusion(a[picked].sum(0), names)["mean_iou"])
    assert result["low"] == pytest.approx(np.percentile(differences, 2.5))
    assert result["high"] == pytest.approx(np.percentile(differences, 97.5))
    assert result["p_not_better"] == pytest.approx(np.mean(np.array(differences) <= 0))
    assert result["difference"] == pytest.approx(
        summarize_confusion(b.sum(0), names)["mean_iou"] - summarize_confusion(a.sum(0), names)["mean_iou"])
    assert result["num_images"] == 7 and result["num_resamples"] == 300


def test_paired_bootstrap_separates_a_gain_on_every_image_from_no_gain():
    rng = np.random.default_rng(4)
    a = _random_confusions(rng, 20)
    better = a.copy()
    for matrix in better:  # every image: more pixels right, fewer wrong
        matrix[np.diag_indices(3)] += 30
    gain = paired_bootstrap_mean_iou(a, better)
    assert gain["low"] > 0 and gain["p_not_better"] == 0
    same = paired_bootstrap_mean_iou(a, a)
    assert same["difference"] == same["low"] == same["high"] == 0 and same["p_not_better"] == 1
    with pytest.raises(ValueError, match="same images"):
        paired_bootstrap_mean_iou(a, a[:5])


def test_block_bootstrap_draws_runs_of_consecutive_images():
    rng = np.random.default_rng(6)
    a, b = _random_confusions(rng, 7), _random_confusions(rng, 7)
    names = ("x", "y", "z")
    result = paired_bootstrap_mean_iou(a, b, num_resamples=200, seed=2, block_size=3)
    blocks = [[0, 1, 2], [3, 4, 5], [6]]  # the last run is shorter
    differences = []
    for counts in np.random.default_rng(2).multinomial(3, np.full(3, 1 / 3), size=200):
        picked = [image for block, count in zip(blocks, counts) for _ in range(count) for image in block]
        differences.append(summarize_confusion(b[picked].sum(0), names)["mean_iou"]
                           - summarize_confusion(a[picked].sum(0), names)["mean_iou"])
    assert result["low"] == pytest.approx(np.percentile(differences, 2.5))
    assert result["high"] == pytest.approx(np.percentile(differences, 97.5))
    assert result["block_size"] == 3
    # One run holding every image: every draw is the whole set.
    whole = paired_bootstrap_mean_iou(a, b, num_resamples=50, block_size=7)
    assert whole["low"] == pytest.approx(whole["difference"]) and whole["high"] == pytest.approx(whole["difference"])
    with pytest.raises(ValueError, match="block_size"):
        paired_bootstrap_mean_iou(a, b, block_size=0)
