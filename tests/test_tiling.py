"""Tiled inference: windows at the training scale, blended with smooth weights."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import reseg_tf
from reseg_tf.inference import Predictor
from reseg_tf.model_io import load_reseg_model
from reseg_tf.tiling import count_windows, tiled_size, training_scale, window_starts, window_weights


def _tiny_model(size=(16, 16)):
    config = reseg_tf.ReSegConfig(num_classes=3, class_names=("a", "b", "c"), front_end="none",
                                  renet=((4, (2, 2)),), upsampling=((4, (2, 2)),))
    return reseg_tf.build_model(config, input_shape=(*size, 3))


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.float32)


def test_window_starts_cover_the_length_with_the_overlap_asked_for():
    assert window_starts(16, 16, 0.25) == [0]
    assert window_starts(24, 16, 0.5) == [0, 8]
    starts = window_starts(1000, 64, 0.25)
    assert starts[0] == 0 and starts[-1] == 1000 - 64
    assert max(np.diff(starts)) <= 48  # neighbours share at least a quarter of a window
    assert tiled_size((10, 100), (16, 16), 0.5) == (16, 50)  # never smaller than one window


def test_an_image_of_the_working_size_gives_the_untiled_answer():
    model = _tiny_model()
    image = _image(16, 16)[None]
    untiled = Predictor(model).probabilities(image).numpy()
    tiled = Predictor(model, tile=True, scale=1.0).probabilities(image).numpy()
    np.testing.assert_allclose(tiled, untiled, atol=1e-6)


def test_a_two_by_two_window_image_is_the_hand_computed_blend():
    model = _tiny_model()
    image = _image(24, 24, seed=1)
    tiled = Predictor(model, tile=True, scale=1.0, tile_overlap=0.5).probabilities(image[None])[0].numpy()

    hann = np.sin(np.pi * (np.arange(16) + 0.5) / 16) ** 2
    weights = np.outer(hann, hann)[..., None]
    blend, total = np.zeros((24, 24, 3)), np.zeros((24, 24, 1))
    for top in (0, 8):
        for left in (0, 8):
            window = model.predict(image[None, top:top + 16, left:left + 16], verbose=0)[0]
            blend[top:top + 16, left:left + 16] += window * weights
            total[top:top + 16, left:left + 16] += weights
    np.testing.assert_allclose(tiled, blend / total, atol=1e-5)
    np.testing.assert_allclose(tiled.sum(axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(tiled, model.predict(image[None, :16, :16], verbose=0)[0].mean())


def test_window_weights_peak_in_the_centre_and_stay_positive():
    weights = window_weights(8, 12)
    assert weights.shape == (8, 12) and weights.min() > 0
    assert weights[3:5, 5:7].min() == weights.max()


def test_windows_run_in_bounded_batches_and_images_are_scaled_first():
    model = _tiny_model()
    predictor = Predictor(model, tile=True, scale=0.5, tile_batch=3)
    batches = []
    run = predictor._run
    predictor._run = lambda windows: batches.append(len(windows)) or run(windows)
    probabilities = predictor.probabilities(_image(40, 70)[None])
    assert probabilities.shape == (1, 40, 70, 3)
    assert sum(batches) == count_windows((40, 70), (16, 16), 0.5) == 2 * 3
    assert max(batches) <= 3


def test_tiling_needs_a_window_size_and_valid_settings():
    any_size = _tiny_model(size=(None, None))
    with pytest.raises(ValueError, match="--image-size"):
        Predictor(any_size, tile=True)
    Predictor(any_size, image_size=(16, 16), tile=True)
    for bad in (dict(scale=0), dict(scale=float("nan")), dict(tile_overlap=1.0), dict(tile_batch=0)):
        with pytest.raises(ValueError):
            Predictor(_tiny_model(), tile=True, **bad)


def _save_with_run_record(tmp_path, settings):
    model = _tiny_model()
    model.save(tmp_path / "model.keras")
    (tmp_path / "run.json").write_text(json.dumps({"state": "finished", "settings": settings}))
    return tmp_path / "model.keras"


def test_the_training_scale_comes_from_the_run_record_beside_the_model(tmp_path):
    path = _save_with_run_record(tmp_path, {"dataset": "camvid", "image_size": [264, 352]})
    assert training_scale(path) == pytest.approx(264 / 360)
    model = load_reseg_model(path)
    assert model.training_scale == pytest.approx(264 / 360)
    assert Predictor(model, tile=True).scale == pytest.approx(264 / 360)
    assert Predictor(model, tile=True, scale=2.0).scale == 2.0  # --scale overrides
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"dataset": "camvid", "image_size": None,
                                                                "preset": "camvid_scratch"}}))
    assert training_scale(path) == pytest.approx(np.sqrt(180 * 240 / (360 * 480)))  # the preset's size
    (tmp_path / "run.json").write_text(json.dumps({"training_scale": 0.25, "settings": {
        "dataset": "camvid", "image_size": [264, 352]}}))
    assert training_scale(path) == 0.25  # measured by `reseg train`: it wins
    (tmp_path / "run.json").write_text(json.dumps({"settings": {"dataset": "folder", "image_size": [64, 64]}}))
    assert training_scale(path) is None  # images of any size: unknown, tiles then take 1.0
    assert Predictor(load_reseg_model(path), tile=True).scale == 1.0
    (tmp_path / "run.json").unlink()
    assert training_scale(path) is None


_BIG_IMAGE_RUN = textwrap.dedent("""
    import resource, sys
    from PIL import Image
    import reseg_tf

    folder = sys.argv[1]
    config = reseg_tf.ReSegConfig(num_classes=3, class_names=("a", "b", "c"), front_end="none",
                                  renet=((4, (2, 2)),), upsampling=((4, (2, 2)),))
    model = reseg_tf.build_model(config, input_shape=(64, 64, 3))
    reseg_tf.predict(model, folder + "/small.jpg", folder + "/out", verbose=0, tile=True, scale=0.5)  # traces
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reseg_tf.predict(model, folder + "/big.jpg", folder + "/out", verbose=0, tile=True, scale=0.5)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(reseg_tf.__file__)
    print(Image.open(folder + "/out/big.png").size, (after - before) // 1024)
""")


@pytest.mark.slow
def test_a_4000x3000_image_is_tiled_in_bounded_memory(tmp_path):
    rows, columns = np.mgrid[0:3000, 0:4000].astype(np.uint8)  # wrapped gradients: cheap to encode
    pixels = np.stack([rows, columns, rows + columns], axis=-1)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=90)
    Image.fromarray(pixels[:300, :400]).save(tmp_path / "small.jpg", quality=90)
    result = subprocess.run([sys.executable, "-c", _BIG_IMAGE_RUN, str(tmp_path)], capture_output=True,
                            text=True, check=True)
    module, figures = result.stdout.strip().splitlines()[-2:]
    size, growth_mib = figures.rsplit(" ", 1)
    assert module.startswith(str(reseg_tf.__file__).rsplit("reseg_tf", 1)[0])
    assert size == "(4000, 3000)"
    # The blend of 2000x1500 pixels, the image and its probabilities at full size take a few
    # hundred MiB; the model itself only ever sees 8 windows of 64x64 at a time.
    assert int(growth_mib) < 1024, growth_mib


def test_reseg_predict_and_evaluate_take_tile_and_scale(tmp_path, capsys):
    from reseg_tf.cli import main

    model = _tiny_model()
    model.save(tmp_path / "tiny.keras")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(_image(40, 56).astype(np.uint8)).save(tmp_path / "images" / "big.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(tmp_path / "masks" / "big.png")
    assert main(["predict", "--model", str(tmp_path / "tiny.keras"), str(tmp_path / "images" / "big.png"),
                 "--tile", "--scale", "0.5", "--output", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "big.png").size == (56, 40)
    assert "images scaled by 0.5 first" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "tiny.keras"), "--dataset", "folder", "--data-dir",
                 str(tmp_path), "--num-classes", "3", "--split", "all", "--tile"]) == 0
    assert "tiled at scale 1" in capsys.readouterr().out
    summary = reseg_tf.evaluate(model, "folder", tmp_path, "all", verbose=0, tile=True, scale=0.5, num_classes=3)
    assert summary["tile_scale"] == 0.5 and summary["num_images"] == 1


def test_reseg_train_records_the_scale_it_trains_at_measured_on_the_labels(tmp_path):
    """Masks of 40x60, 40x60 and 80x120 trained at 20x30: the median of sqrt(20*30 / (h*w)) is
    0.5; a model trained there tiles at 0.5 without being told."""
    import pipelines
    from reseg_tf import cli
    from reseg_tf.training.data import measure_training_scale

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True), (data / "masks").mkdir()
    rng = np.random.default_rng(0)
    lists = {"train": [], "val": []}
    for index, (height, width) in enumerate(((40, 60), (40, 60), (80, 120), (30, 30))):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(data / "images" / f"{index}.png")
        Image.fromarray(rng.integers(0, 2, (height, width), np.uint8)).save(data / "masks" / f"{index}.png")
        lists["val" if index == 3 else "train"].append(f"images/{index}.png masks/{index}.png")
    for split, lines in lists.items():
        (data / f"{split}.txt").write_text("\n".join(lines) + "\n")
    source = pipelines.get_source("folder", str(data), num_classes=2)
    assert measure_training_scale(source, (20, 30)) == pytest.approx(0.5)
    output = tmp_path / "run"
    assert cli.main(["train", "--preset", "demo", "--dataset", "folder", "--data-dir", str(data),
                     "--num-classes", "2", "--output", str(output), "--epochs", "1", "--steps-per-epoch", "1",
                     "--image-size", "20", "32", "--batch-size", "1", "--no-augment"]) == 0
    recorded = json.loads((output / "run.json").read_text())["training_scale"]
    assert recorded == pytest.approx(np.median([np.sqrt(20 * 32 / (h * w)) for h, w in ((40, 60), (40, 60), (80, 120))]))
    assert Predictor(load_reseg_model(output / "model.keras"), tile=True).scale == pytest.approx(recorded)
