"""Averaged inference (flip TTA, Monte Carlo dropout), uncertainty outputs and calibration."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import reseg_tf
from reseg_tf import cli
from reseg_tf.averaging import averaged_passes, sampled_probabilities
from reseg_tf.calibration import CalibrationAccumulator
from reseg_tf.inference import Predictor
from reseg_tf.model_io import load_reseg_model
from helpers import tiny_model
from pipelines_layouts import write_folder

SIZE = (16, 24)


def _model(dropout=0.0, classifier_dropout=0.0, input_shape=(*SIZE, 3)):
    return tiny_model(input_shape, renet=((6, (2, 2)), (6, (1, 1))), upsampling=((6, (2, 2)),),
                      dropout=dropout, classifier_dropout=classifier_dropout)


def _images(count, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *size, 3)).astype(np.float32)


def test_flip_average_equals_the_hand_computed_average():
    model = _model()
    images = _images(2)
    mirrored = model(images[:, :, ::-1]).numpy()[:, :, ::-1]
    expected = (model(images).numpy() + mirrored) / 2
    got = Predictor(model, tta="flip").probabilities(images).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, model(images).numpy(), atol=1e-4)  # the mirror did change something


def test_mc_passes_differ_and_their_mean_is_returned():
    model = _model(dropout=0.5, classifier_dropout=0.2)
    images = _images(2)
    passes = sampled_probabilities(model, tf.constant(images), 4).numpy()
    assert passes.shape == (4, 2, *SIZE, 3)
    for i in range(4):
        for j in range(i):
            assert np.abs(passes[i] - passes[j]).max() > 1e-3
    np.testing.assert_allclose(passes.sum(axis=-1), 1.0, atol=1e-5)
    got = Predictor(model, mc_samples=4).probabilities(images).numpy()
    np.testing.assert_allclose(got, passes.mean(axis=0), atol=1e-6)
    # The same sub-networks for an image alone or in a batch, and for the same seed.
    alone = Predictor(model, mc_samples=4).probabilities(images[1:]).numpy()
    np.testing.assert_allclose(alone[0], got[1], atol=1e-6)
    other_seed = Predictor(model, mc_samples=4, seed=1).probabilities(images).numpy()
    assert np.abs(other_seed - got).max() > 1e-4


def test_mc_dropout_matches_a_hand_computation_with_the_same_masks():
    """Each sub-network keeps a unit with probability 1 - rate and scales what it keeps by
    1 / (1 - rate) (inverted dropout, as in training); its mask is drawn from the stateless
    generator seeded by (seed, the dropout layer's position) and shared by the batch."""
    rate, samples, seed = 0.25, 3, 7
    inputs = keras.Input((4, 5, 2))
    hidden = keras.layers.Dense(6, name="hidden")(inputs)
    dropped = keras.layers.Dropout(rate)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="out")(dropped))
    position = next(i for i, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Dropout))
    images = _images(2, (4, 5))[..., :2] / 255.0
    got = sampled_probabilities(model, tf.constant(images, tf.float32), samples, seed=seed).numpy()

    (w1, b1), (w2, b2) = model.get_layer("hidden").get_weights(), model.get_layer("out").get_weights()
    uniform = tf.random.stateless_uniform((samples, 1, 4, 5, 6), seed=[seed, position]).numpy()
    keep = uniform >= rate
    logits = ((images @ w1 + b1)[None] * keep / (1 - rate)) @ w2 + b2  # (samples, 2, 4, 5, 3)
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

    # Over many units the kept fraction is 1 - rate and kept values are x / (1 - rate).
    ones = tf.ones((4, 1, 64, 64, 1))
    wide = keras.Sequential([keras.Input((64, 64, 1)), keras.layers.Dropout(rate)])
    values = sampled_probabilities(wide, ones[0], 4).numpy()
    np.testing.assert_allclose(np.unique(values), [0.0, 1 / (1 - rate)], rtol=1e-6)
    assert np.mean(values > 0) == pytest.approx(1 - rate, abs=0.01)


def test_mc_with_flip_averages_both_mirrors_of_every_sub_network():
    model = _model(dropout=0.5)
    images = tf.constant(_images(1))
    passes = averaged_passes(model, images, "flip", 3).numpy()
    assert passes.shape == (6, 1, *SIZE, 3)
    direct = sampled_probabilities(model, images, 3).numpy()
    np.testing.assert_allclose(passes[:3], direct, atol=1e-6)
    mirrored = sampled_probabilities(model, tf.reverse(images, [2]), 3).numpy()[:, :, :, ::-1]
    np.testing.assert_allclose(passes[3:], mirrored, atol=1e-6)


def test_dropout_is_off_in_a_plain_call_and_saved_with_the_model(tmp_path):
    model = _model(dropout=0.5, classifier_dropout=0.25)
    names = [layer.name for layer in model.layers]
    assert {"dropout_1", "dropout_2", "classifier_dropout"} <= set(names)
    images = _images(1)
    np.testing.assert_allclose(model(images), model(images), atol=0)
    model.save(tmp_path / "m.keras")
    loaded = load_reseg_model(tmp_path / "m.keras")
    assert loaded.reseg_config.dropout == 0.5 and loaded.reseg_config.classifier_dropout == 0.25
    np.testing.assert_allclose(Predictor(loaded, mc_samples=3).probabilities(images),
                               Predictor(model, mc_samples=3).probabilities(images), atol=1e-6)
    # Without dropout the model has the same weights as before dropout existed.
    plain = _model()
    assert [w.shape for w in plain.weights] == [w.shape for w in model.weights]
    assert not any("dropout" in name for name in (layer.name for layer in plain.layers))


def test_dropout_after_the_last_renet_layer_only(tmp_path):
    model = _model(dropout=(0.0, 0.5))
    assert [layer.name for layer in model.layers if "dropout" in layer.name] == ["dropout_2"]
    images = tf.constant(_images(2))
    passes = sampled_probabilities(model, images, 3).numpy()
    assert np.abs(passes[0] - passes[1]).max() > 1e-3
    model.save(tmp_path / "m.keras")
    loaded = load_reseg_model(tmp_path / "m.keras")
    assert loaded.reseg_config.dropout == (0.0, 0.5)
    np.testing.assert_allclose(sampled_probabilities(loaded, images, 3), passes, atol=1e-6)
    # The layers before the dropout ran once per image: renet_2's output is tiled, not recomputed.
    calls = []
    renet_1 = model.get_layer("renet_1")
    original = renet_1.call
    renet_1.call = lambda x, *a, **k: calls.append(x.shape[0]) or original(x, *a, **k)
    sampled_probabilities(model, images, 3)
    assert calls == [2]
    with pytest.raises(ValueError, match="one rate per layer"):
        reseg_tf.ReSegConfig(renet=((4, (1, 1)),) * 2, dropout=(0.1, 0.2, 0.3))


@pytest.mark.parametrize("rate", [-0.1, 1.0, True, "0.5"])
def test_bad_dropout_rates_are_refused(rate):
    with pytest.raises(ValueError, match="dropout"):
        reseg_tf.ReSegConfig(dropout=rate)


def test_mc_samples_without_dropout_is_a_clear_error(tmp_path, capsys):
    model = _model()
    with pytest.raises(ValueError, match="no dropout layer"):
        Predictor(model, mc_samples=4)
    with pytest.raises(ValueError, match="--mc-samples must be"):
        Predictor(_model(dropout=0.5), mc_samples=-1)
    path = tmp_path / "plain.keras"
    model.save(path)
    Image.fromarray(_images(1)[0].astype(np.uint8)).save(tmp_path / "x.png")
    code = cli.main(["predict", str(tmp_path / "x.png"), "--model", str(path), "--output",
                     str(tmp_path / "out"), "--mc-samples", "2"])
    assert code == 2
    assert "no dropout layer" in capsys.readouterr().err
    code = cli.main(["export", "--model", str(path), "--output", str(tmp_path / "export"),
                     "--mc-samples", "2", "--tflite", "none"])
    assert code == 2
    assert "not exported" in capsys.readouterr().err


def test_predict_writes_uncertainty_maps_and_probabilities_at_the_image_size(tmp_path):
    model = _model(dropout=0.5)
    sizes = [(21, 30), (16, 24)]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index, size in enumerate(sizes):
        Image.fromarray(_images(1, size, seed=index)[0].astype(np.uint8)).save(inputs / f"im{index}.png")
    out = tmp_path / "out"
    report = reseg_tf.predict(model, inputs, out, verbose=0, tta="flip", mc_samples=3, uncertainty=True,
                              probabilities=True)
    assert report["segmented"] == 2 and not report["skipped"]
    for index, (height, width) in enumerate(sizes):
        for suffix in ("confidence", "entropy", "mutual_information"):
            heat = np.asarray(Image.open(out / f"im{index}_{suffix}.png"))
            assert heat.shape == (height, width, 3) and heat.dtype == np.uint8
        with np.load(out / f"im{index}_probabilities.npz") as saved:
            probabilities = saved["probabilities"]
            assert list(saved["class_names"]) == ["a", "b", "c"]
        assert probabilities.shape == (height, width, 3)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
        classes = np.asarray(Image.open(out / f"im{index}.png"))
        np.testing.assert_array_equal(classes, probabilities.argmax(-1))
    scale = json.loads((out / "uncertainty_scale.json").read_text())
    assert set(scale["maps"]) == {"confidence", "entropy", "mutual_information"}
    assert scale["maps"]["entropy"]["high"] == pytest.approx(np.log(3))
    assert (out / "uncertainty_scale.png").is_file()
    # Without MC there is no mutual information map.
    plain = tmp_path / "plain"
    reseg_tf.predict(model, inputs / "im0.png", plain, verbose=0, uncertainty=True)
    assert sorted(p.name for p in plain.iterdir()) == [
        "im0.png", "im0_confidence.png", "im0_entropy.png", "uncertainty_scale.json", "uncertainty_scale.png"]
    # --probabilities alone: the probabilities only, as the predictor gives them.
    only = tmp_path / "only_probabilities"
    reseg_tf.predict(model, inputs / "im0.png", only, verbose=0, tta="flip", probabilities=True)
    assert sorted(p.name for p in only.iterdir()) == ["im0.png", "im0_probabilities.npz"]
    image = np.asarray(Image.open(inputs / "im0.png"))[None]
    with np.load(only / "im0_probabilities.npz") as saved:
        np.testing.assert_allclose(saved["probabilities"][None],
                                   Predictor(model, tta="flip").probabilities(image), atol=1e-6)


def test_uncertainty_maps_are_consistent():
    model = _model(dropout=0.5)
    maps = Predictor(model, mc_samples=4).uncertainty(_images(1, (20, 28)))
    probabilities = maps["probabilities"].numpy()
    np.testing.assert_allclose(maps["confidence"], probabilities.max(-1), atol=1e-6)
    entropy = -(probabilities * np.log(np.maximum(probabilities, 1e-12))).sum(-1)
    np.testing.assert_allclose(maps["entropy"], entropy, atol=1e-5)
    information = maps["mutual_information"].numpy()
    assert (information >= 0).all() and (information <= entropy + 1e-5).all() and information.max() > 0


def test_ece_and_the_most_confident_pixels_match_a_hand_count():
    truth = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 255])
    prediction = np.array([0, 1, 1, 1, 2, 0, 0, 1, 1, 0])
    confidence = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.4, 0.99])
    accumulator = CalibrationAccumulator(3, selective=True)
    accumulator.update(truth[:4], prediction[:4], confidence[:4])  # streamed in two parts
    accumulator.update(truth[4:], prediction[4:], confidence[4:])
    valid = truth < 3
    bins = np.minimum((confidence[valid] * 15).astype(int), 14)
    correct = (truth == prediction)[valid]
    expected = sum(np.sum(bins == b) / valid.sum() * abs(correct[bins == b].mean() - confidence[valid][bins == b].mean())
                   for b in np.unique(bins))
    assert accumulator.ece() == pytest.approx(expected)
    # 90% of the 9 valid pixels = 8.1: the 8 most confident and a tenth of the least confident one.
    confusion = accumulator.confident_confusion(0.9)
    assert confusion.sum() == pytest.approx(8.1)
    assert confusion[2, 1] == pytest.approx(0.1)  # the least confident pixel (truth 2, predicted 1)
    assert confusion[1, 0] == 0 and confusion[0, 1] == pytest.approx(1.0)


def test_evaluate_cli_reports_ece_and_averaging(tmp_path, capsys):
    root = tmp_path / "data"
    write_folder(root, count=3, size=(20, 28), num_classes=3)
    model = _model(dropout=0.3)
    model.save(tmp_path / "m.keras")
    json_path = tmp_path / "metrics.json"
    code = cli.main(["evaluate", "--model", str(tmp_path / "m.keras"), "--dataset", "folder", "--data-dir",
                     str(root), "--num-classes", "3", "--split", "all", "--tta", "flip", "--mc-samples", "2",
                     "--uncertainty", "--json", str(json_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ECE" in printed and "Mean IoU 90%" in printed and "2 MC samples" in printed
    summary = json.loads(json_path.read_text())
    assert summary["tta"] == "flip" and summary["mc_samples"] == 2
    assert summary["ms_per_image"] > 0
    # ECE of the averaged probabilities, counted by hand over the non-void pixels (15 bins).
    from reseg_tf.inference import read_image_file

    predictor = Predictor(load_reseg_model(tmp_path / "m.keras"), tta="flip", mc_samples=2)
    confidence, correct = [], []
    for mask_path in sorted((root / "masks").glob("*.png")):
        image_path = next((root / "images").glob(mask_path.stem + ".*"))
        probabilities = predictor.probabilities(read_image_file(image_path)[None]).numpy()[0]
        truth = np.asarray(Image.open(mask_path))
        valid = truth != 255
        confidence.append(probabilities.max(-1)[valid])
        correct.append((probabilities.argmax(-1) == truth)[valid])
    confidence, correct = np.concatenate(confidence), np.concatenate(correct)
    bins = np.minimum((confidence * 15).astype(int), 14)
    expected = sum(np.mean(bins == b) * abs(correct[bins == b].mean() - confidence[bins == b].mean())
                   for b in np.unique(bins))
    assert summary["ece"] == pytest.approx(expected, abs=1e-6)
    assert summary["global_acc"] == pytest.approx(correct.mean(), abs=1e-6)
    assert summary["global_acc_confident_90"] == pytest.approx(
        correct[np.argsort(-confidence, kind="stable")[: int(0.9 * len(correct))]].mean(), abs=2e-3)
