"""The loss family behind `--loss`: Lovász-softmax and Dice against brute-force NumPy, focal
against its formula, weighted sums, void and class-balance handling, and a fine-tune with it."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines_layouts import write_camvid
from reseg_tf import cli
from reseg_tf.losses import (CompoundLoss, DiceLoss, LovaszSoftmaxLoss, VoidAwareCrossEntropy,
                             VoidAwareFocalLoss, make_loss)

C = 3  # classes; label 3 is void


def _example(seed=0, shape=(2, 3, 4)):
    rng = np.random.default_rng(seed)
    probabilities = rng.random((*shape, C)).astype("float32") + 0.05
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    labels = rng.integers(0, C + 1, size=shape).astype("int32")
    labels.flat[0] = C  # at least one void pixel
    labels.flat[1] = 0  # and class 0 present
    return labels, probabilities


def _jaccard_loss(truth, mistakes):
    """1 - |F minus S| / |F union S| for the set F of class pixels and S of mispredicted ones."""
    return 1.0 - len(truth - mistakes) / len(truth | mistakes) if truth | mistakes else 0.0


def _lovasz_brute_force(labels, probabilities, classes="present"):
    """The Lovász extension of the Jaccard loss, from its definition, with Python sets."""
    valid = labels.ravel() < C
    labels, probabilities = labels.ravel()[valid], probabilities.reshape(-1, C)[valid]
    losses = []
    for c in range(C):
        truth = set(np.flatnonzero(labels == c))
        if classes == "present" and not truth:
            continue
        errors = np.abs((labels == c).astype(float) - probabilities[:, c])
        order = np.argsort(-errors, kind="stable")
        value, previous = 0.0, 0.0
        for i in range(len(order)):
            current = _jaccard_loss(truth, set(order[: i + 1]))
            value += errors[order[i]] * (current - previous)
            previous = current
        losses.append(value)
    return float(np.mean(losses))


def test_lovasz_equals_the_brute_force_lovasz_extension():
    for seed in range(3):
        labels, probabilities = _example(seed)
        for classes in ("present", "all"):
            expected = _lovasz_brute_force(labels, probabilities, classes)
            value = float(LovaszSoftmaxLoss(C, classes=classes)(labels, probabilities))
            assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_lovasz_on_hard_predictions_is_one_minus_iou_per_class():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, C + 1, size=(2, 5, 6)).astype("int32")
    predicted = rng.integers(0, C, size=labels.shape)
    one_hot = np.eye(C, dtype="float32")[predicted]
    valid = labels < C
    ious = [np.sum((labels == c) & (predicted == c) & valid) / np.sum(((labels == c) | (predicted == c)) & valid)
            for c in range(C) if np.any(labels == c)]
    assert float(LovaszSoftmaxLoss(C)(labels, one_hot)) == pytest.approx(1 - np.mean(ious), rel=1e-5)
    assert float(LovaszSoftmaxLoss(C)(predicted.astype("int32"), one_hot)) == pytest.approx(0.0, abs=1e-7)


def _dice_reference(labels, probabilities, smooth=1.0):
    valid = labels.ravel() < C
    labels, probabilities = labels.ravel()[valid], probabilities.reshape(-1, C)[valid]
    losses = []
    for c in range(C):
        truth = (labels == c).astype(float)
        if truth.sum():
            p = probabilities[:, c]
            losses.append(1 - (2 * np.sum(p * truth) + smooth) / (p.sum() + truth.sum() + smooth))
    return float(np.mean(losses))


def test_dice_matches_numpy():
    labels, probabilities = _example(4)
    assert float(DiceLoss(C)(labels, probabilities)) == pytest.approx(_dice_reference(labels, probabilities), rel=1e-5)


def test_focal_matches_its_formula_and_is_cross_entropy_at_gamma_zero():
    labels, probabilities = _example(5)
    valid = labels < C
    p_true = np.take_along_axis(probabilities, np.minimum(labels, C - 1)[..., None], -1)[..., 0]
    expected = np.mean((-(1 - p_true) ** 2 * np.log(p_true))[valid])
    assert float(VoidAwareFocalLoss(C)(labels, probabilities)) == pytest.approx(expected, rel=1e-4)
    weights = np.random.default_rng(0).random(labels.shape).astype("float32")
    assert float(VoidAwareFocalLoss(C, gamma=0)(labels, probabilities, sample_weight=weights)) == pytest.approx(
        float(VoidAwareCrossEntropy(C)(labels, probabilities, sample_weight=weights)), rel=1e-4)


@pytest.mark.parametrize("loss", [LovaszSoftmaxLoss(C), DiceLoss(C), VoidAwareFocalLoss(C)], ids=lambda l: l.name)
def test_void_pixels_change_nothing(loss):
    labels, probabilities = _example(6)
    changed = probabilities.copy()
    changed[labels >= C] = [0.98, 0.01, 0.01]
    assert float(loss(labels, changed)) == pytest.approx(float(loss(labels, probabilities)), rel=1e-6)
    # A void border added around the images changes nothing either.
    padded_labels = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=C)
    padded = np.pad(probabilities, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=1.0 / C)
    assert float(loss(padded_labels, padded)) == pytest.approx(float(loss(labels, probabilities)), rel=1e-5)


@pytest.mark.parametrize("loss", [LovaszSoftmaxLoss(C), DiceLoss(C)], ids=lambda l: l.name)
def test_region_losses_take_no_per_pixel_weights(loss):
    labels, probabilities = _example(7)
    weights = np.random.default_rng(1).random(labels.shape).astype("float32") * 5
    assert float(loss(labels, probabilities, sample_weight=weights)) == float(loss(labels, probabilities))


def test_a_sum_weighs_its_terms_and_gives_class_weights_to_the_per_pixel_ones_only():
    labels, probabilities = _example(8)
    weights = np.random.default_rng(2).random(labels.shape).astype("float32") * 5
    ce, lovasz = VoidAwareCrossEntropy(C), LovaszSoftmaxLoss(C)
    expected = float(ce(labels, probabilities, sample_weight=weights)) + 0.5 * float(lovasz(labels, probabilities))
    loss = make_loss("cross_entropy+lovasz", C, weights=(1, 0.5))
    assert isinstance(loss, CompoundLoss)
    assert float(loss(labels, probabilities, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(clone(labels, probabilities, sample_weight=weights)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("spec", ["lovasz", "dice", "focal", "cross_entropy+lovasz", "dice+focal"])
def test_gradients_are_finite_even_for_an_all_void_batch(spec):
    labels, probabilities = _example(9)
    loss = make_loss(spec, C)
    for y in (labels, np.full_like(labels, C), np.zeros_like(labels)):
        logits = tf.Variable(np.log(probabilities))
        with tf.GradientTape() as tape:
            value = loss(y, tf.nn.softmax(logits))
        gradient = tape.gradient(value, logits)
        assert np.isfinite(float(value)) and np.all(np.isfinite(gradient.numpy()))
    assert float(make_loss("lovasz", C)(np.full_like(labels, C), probabilities)) == 0.0


def test_bad_loss_names_and_weights_are_refused():
    with pytest.raises(ValueError, match="unknown loss 'iou'"):
        make_loss("cross_entropy+iou", C)
    with pytest.raises(ValueError, match="2 numbers"):
        make_loss("cross_entropy+lovasz", C, weights=(1.0,))
    with pytest.raises(ValueError, match="named twice"):
        make_loss("dice+dice", C)
    with pytest.raises(ValueError, match="classes"):
        LovaszSoftmaxLoss(C, classes="some")


def test_lovasz_fine_tune_changes_the_weights_and_is_recorded(tmp_path, capsys):
    data_dir = write_camvid(tmp_path / "camvid", size=(32, 32))
    common = ["--data-dir", str(data_dir), "--epochs", "1", "--image-size", "32", "32", "--batch-size", "2",
              "--no-augment", "--optimizer", "adam"]
    assert cli.main(["train", *common, "--output", str(tmp_path / "base")]) == 0
    assert cli.main(["train", *common, "--output", str(tmp_path / "lovasz"), "--init-from",
                     str(tmp_path / "base" / "model.keras"), "--loss", "cross_entropy+lovasz",
                     "--loss-weights", "1", "2", "--learning-rate", "0.01"]) == 0
    base = keras.saving.load_model(tmp_path / "base" / "model.keras")
    tuned = keras.saving.load_model(tmp_path / "lovasz" / "model.keras")
    changed = [not np.allclose(a, b) for a, b in zip(base.get_weights(), tuned.get_weights())]
    assert any(changed)
    settings = json.loads((tmp_path / "lovasz" / "run.json").read_text())["settings"]
    assert settings["loss"] == "cross_entropy+lovasz" and settings["loss_weights"] == [1.0, 2.0]
    record = json.loads((tmp_path / "lovasz" / "run.json").read_text())
    assert record["command"].startswith("reseg train ") and "--loss cross_entropy+lovasz" in record["command"]
    base_command = json.loads((tmp_path / "base" / "run.json").read_text())["command"]
    assert record["started_from"]["command"] == base_command and record["started_from"]["preset"] == "demo"
    assert record["started_from"]["model"].endswith("base/model.keras")
    capsys.readouterr()
    assert cli.main(["train", *common, "--output", str(tmp_path / "bad"), "--loss", "iou"]) == 2
    assert "iou" in capsys.readouterr().err
