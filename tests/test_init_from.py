"""Fine-tuning from a trained model: `reseg train --init-from` and `load_matching_layers`."""
import json

import keras
import numpy as np
import pytest

import reseg_tf
from reseg_tf import cli, training
from reseg_tf.training.init_from import freeze_front_end, load_matching_layers
from helpers import tiny_model
from pipelines_layouts import write_folder

SIZE = 24


def _model(num_classes=3, units=6, vgg=False):
    stem = dict(front_end="scratch_stem", front_end_options={"filters": (4, 4, 8)}) if vgg else {}
    return tiny_model((SIZE, SIZE, 3), num_classes=num_classes, renet=((units, (2, 2)),), **stem)


def test_every_layer_but_a_resized_classifier_is_loaded(tmp_path):
    trained = _model(num_classes=3)
    trained.save(tmp_path / "trained.keras")
    model = _model(num_classes=2)
    result = load_matching_layers(model, str(tmp_path / "trained.keras"))
    assert result["loaded"] == ["renet_1", "upsample_1"]
    assert [name for name, _ in result["new"]] == ["classifier"]
    assert "shapes differ" in result["new"][0][1]
    for name in result["loaded"]:
        for mine, theirs in zip(model.get_layer(name).get_weights(), trained.get_layer(name).get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    assert not np.array_equal(model.get_layer("classifier").get_weights()[0][..., :2],
                              trained.get_layer("classifier").get_weights()[0][..., :2])


def test_same_class_count_loads_everything_and_predicts_the_same():
    trained = _model()
    model = _model()
    result = load_matching_layers(model, trained)
    assert result["new"] == []
    images = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(model(images), trained(images), atol=1e-6)


def test_nothing_matching_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="no layer matches"):
        load_matching_layers(_model(units=6, num_classes=2), _model(units=5, num_classes=3))


def test_freeze_front_end_freezes_the_stem_only():
    model = _model(vgg=True)
    frozen = freeze_front_end(model)
    assert frozen and all(name.startswith("block") for name in frozen)
    assert not any(model.get_layer(name).trainable for name in frozen)
    assert model.get_layer("renet_1").trainable and model.get_layer("classifier").trainable


class _InterruptAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def test_cli_fine_tunes_on_new_classes_records_it_and_resumes(tmp_path, capsys, monkeypatch):
    camvid = reseg_tf.build_model("demo", input_shape=(SIZE, SIZE, 3))  # 11 classes
    source = tmp_path / "camvid.keras"
    camvid.save(source)
    data = write_folder(tmp_path / "data", count=8, size=(SIZE, SIZE), num_classes=3)
    output = tmp_path / "tuned"
    args = ["train", "--preset", "demo", "--dataset", "folder", "--data-dir", data, "--num-classes", "3",
            "--output", str(output), "--epochs", "2", "--image-size", str(SIZE), str(SIZE), "--batch-size", "2",
            "--no-augment", "--init-from", str(source), "--freeze-front-end"]
    make_callbacks = training.make_callbacks
    monkeypatch.setattr(training.trainer, "make_callbacks",  # Ctrl-C once epoch 1 is backed up
                        lambda *a, **k: make_callbacks(*a, **k) + [_InterruptAfterFirstEpoch()])
    assert cli.main(args) == 130
    printed = capsys.readouterr().out
    assert "loaded 4 layer(s): renet_1, renet_2, upsample_1, upsample_2" in printed
    assert "classifier (shapes differ" in printed
    assert "Frozen front end: none" in printed
    settings = json.loads((output / "run.json").read_text())["settings"]
    assert settings["init_from"] == str(source) and settings["freeze_front_end"] is True

    monkeypatch.setattr(training.trainer, "make_callbacks", make_callbacks)
    assert cli.main(args) == 0  # the same command resumes from epoch 1's backup
    assert "Resuming the unfinished run" in capsys.readouterr().out
    assert [row["epoch"] for row in training.read_history(str(output / "history.csv"))] == [1, 2]

    other = _model(num_classes=4, vgg=True)  # another architecture: nothing matches
    other.save(tmp_path / "other.keras")
    args[args.index(str(source))] = str(tmp_path / "other.keras")
    args[args.index(str(output))] = str(tmp_path / "refused")
    assert cli.main(args) == 2
    assert "no layer matches" in capsys.readouterr().err


def test_init_from_errors_name_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--init-from"):
        reseg_tf.TrainConfig(init_from=str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="--freeze-front-end"):
        reseg_tf.TrainConfig(freeze_front_end=True)
