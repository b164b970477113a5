"""Evaluation against a hand count, and a model that learns a synthetic task."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import pipelines
import reseg_tf
from reseg_tf import evaluation
from reseg_tf.losses import VoidAwareCrossEntropy
from helpers import tiny_model

NUM_CLASSES = 4
VOID = 255
SIZE = (12, 16)
# The red channel of an image encodes the class the fake model predicts at that pixel.
RED_STEP = 60


def _write_folder(root, count, rng, learnable=False):
    """`images/` + `masks/` of `count` pairs; returns the labels and the predictions encoded."""
    os.makedirs(root / "images"), os.makedirs(root / "masks")
    labels_all, predicted_all = [], []
    for index in range(count):
        labels = rng.integers(0, NUM_CLASSES, SIZE).astype(np.uint8)
        labels[0, :3] = VOID
        if learnable:  # the class is the image's colour: a model that looks at pixels can learn it
            predicted = labels.copy()
            image = np.stack([labels * RED_STEP, 255 - labels * RED_STEP, np.full(SIZE, 90)], -1)
            image[labels == VOID] = 0
        else:
            predicted = rng.integers(0, NUM_CLASSES, SIZE).astype(np.uint8)
            image = np.stack([predicted * RED_STEP, np.zeros(SIZE), np.zeros(SIZE)], -1)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"p{index}.png")
        Image.fromarray(labels).save(root / "masks" / f"p{index}.png")
        labels_all.append(labels)
        predicted_all.append(predicted)
    return labels_all, predicted_all


CONFIDENCE = 0.7


class _ClassFromRed:
    """Stands in for `Predictor`: predicts the class encoded in the red channel, with
    probability CONFIDENCE (the rest spread over the other classes)."""

    tta, mc_samples = "none", 0

    def __init__(self, model, image_size=None, **averaging):
        del model, image_size, averaging

    def probabilities(self, images):
        classes = tf.cast(tf.round(images[..., 0] / RED_STEP), tf.int32)
        return tf.one_hot(classes, NUM_CLASSES, on_value=CONFIDENCE,
                          off_value=(1 - CONFIDENCE) / (NUM_CLASSES - 1))


def _tiny_model():
    return tiny_model((*SIZE, 3), num_classes=NUM_CLASSES, class_names=tuple("abcd"), renet=((8, (1, 1)),),
                      upsampling=())


def test_evaluate_matches_a_hand_count(tmp_path, monkeypatch):
    labels, predicted = _write_folder(tmp_path, 3, np.random.default_rng(0))
    monkeypatch.setattr(evaluation, "Predictor", _ClassFromRed)
    summary = reseg_tf.evaluate(_tiny_model(), "folder", tmp_path, split="all", verbose=0,
                                num_classes=NUM_CLASSES, ignore_value=VOID, class_names=tuple("abcd"))

    hits, truth_counts, predicted_counts, pixels = np.zeros(4), np.zeros(4), np.zeros(4), 0
    for truth_map, predicted_map in zip(labels, predicted):
        for truth, guess in zip(truth_map.ravel(), predicted_map.ravel()):
            if truth == VOID:
                continue
            pixels += 1
            truth_counts[truth] += 1
            predicted_counts[guess] += 1
            hits[truth] += truth == guess
    assert summary["num_pixels"] == pixels == 3 * (SIZE[0] * SIZE[1] - 3)
    assert summary["global_acc"] == pytest.approx(hits.sum() / pixels)
    iou = hits / (truth_counts + predicted_counts - hits)
    assert [summary["class_iou"][name] for name in "abcd"] == pytest.approx(iou)
    assert summary["mean_iou"] == pytest.approx(iou.mean())
    assert summary["avg_class_acc"] == pytest.approx((hits / truth_counts).mean())
    assert np.array(summary["confusion_matrix"]).sum() == pixels
    # Every pixel has confidence 0.7: one calibration bin, whose gap is |accuracy - 0.7|.
    assert summary["ece"] == pytest.approx(abs(hits.sum() / pixels - CONFIDENCE))
    assert [row[2] for row in summary["reliability"]] == [pixels]
    assert "image_confusion_matrices" not in summary


def test_per_image_confusion_matrices_count_each_image_in_order(tmp_path, monkeypatch):
    labels, predicted = _write_folder(tmp_path, 3, np.random.default_rng(2))
    monkeypatch.setattr(evaluation, "Predictor", _ClassFromRed)
    summary = reseg_tf.evaluate(_tiny_model(), "folder", tmp_path, split="all", verbose=0, per_image=True,
                                num_classes=NUM_CLASSES, ignore_value=VOID, class_names=tuple("abcd"))
    for matrix, truth_map, predicted_map in zip(summary["image_confusion_matrices"], labels, predicted):
        hand = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        for truth, guess in zip(truth_map.ravel(), predicted_map.ravel()):
            if truth != VOID:
                hand[truth, guess] += 1
        np.testing.assert_array_equal(matrix, hand)
    assert len(summary["image_confusion_matrices"]) == 3


def test_a_tiny_model_learns_a_synthetic_task(tmp_path):
    keras.utils.set_random_seed(0)
    _write_folder(tmp_path, 8, np.random.default_rng(1), learnable=True)
    source = pipelines.get_source("folder", tmp_path, num_classes=NUM_CLASSES, ignore_value=VOID,
                                  class_names=tuple("abcd"))
    model = _tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=VoidAwareCrossEntropy(NUM_CLASSES))
    before = reseg_tf.evaluate(model, source, split="all", verbose=0)
    train = pipelines.make_dataset(source, "all", batch_size=4, shuffle=True, repeat=True)
    model.fit(train, steps_per_epoch=40, epochs=1, verbose=0, shuffle=False)
    after = reseg_tf.evaluate(model, source, split="all", verbose=0)
    # Random labels: predicting the most frequent class everywhere scores about 1/16 mean IoU.
    assert after["baseline_mean_iou"] < 0.1
    assert after["mean_iou"] > max(before["mean_iou"], after["baseline_mean_iou"]) + 0.4, (before, after)
