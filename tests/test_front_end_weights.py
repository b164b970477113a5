"""Where the VGG16 front end's weights come from: ImageNet by default for the presets whose
front end is VGG16 itself, a local weights file, or none (then the front end trains).

No test downloads anything: the download is replaced by one that fails, as it does offline.
"""
import keras
import numpy as np
import pytest

import reseg_tf
from pipelines_layouts import write_camvid
from reseg_tf import cli
from reseg_tf.evaluation import load_reseg_model
from reseg_tf.models import FrontEndWeightsError
from reseg_tf.front_ends.vgg import vgg_layer_names

SIZE = 32
VGG_LAYER_NAMES = vgg_layer_names(3)


@pytest.fixture
def offline(monkeypatch):
    def unreachable(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", unreachable)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_camvid(tmp_path_factory.mktemp("camvid"), size=(SIZE, SIZE)))


def _train_args(data_dir, output, *extra):
    return ["train", "--preset", "camvid", "--dataset", "camvid", "--data-dir", data_dir, "--output", str(output),
            "--epochs", "1", "--steps-per-epoch", "1", "--image-size", str(SIZE), str(SIZE), "--batch-size", "2",
            "--no-augment", *extra]


def test_the_paper_presets_start_from_imagenet_and_the_others_from_nothing():
    for preset in ("camvid", "camvid_paper_patches", "horse", "flowers"):
        assert reseg_tf.TrainConfig(preset=preset).front_end_weights == "imagenet", preset
    for preset in ("demo", "horse_no_vgg", "camvid_scratch"):
        assert reseg_tf.TrainConfig(preset=preset).front_end_weights is None, preset


def test_a_failed_download_stops_before_anything_is_written(offline, data_dir, tmp_path, capsys):
    output = tmp_path / "run"
    assert cli.main(_train_args(data_dir, output)) == 2
    error = capsys.readouterr().err
    assert "could not be downloaded" in error and "Name or service not known" in error
    assert "--vgg-weights FILE" in error and "--vgg-weights none" in error
    assert len(error.strip().splitlines()) == 1
    assert not output.exists()
    with pytest.raises(FrontEndWeightsError, match='vgg_weights="none"'):
        reseg_tf.train(preset="camvid", dataset="camvid", data_dir=data_dir, output=str(output))
    assert not output.exists()


def test_none_trains_the_front_end(data_dir):
    import pipelines
    from reseg_tf.training import model_config_for

    config = reseg_tf.TrainConfig(preset="camvid", vgg_weights="none")
    model_config, _ = model_config_for(config, pipelines.get_source("camvid", data_dir))
    model = reseg_tf.build_model(model_config, input_shape=(SIZE, SIZE, 3))
    trainable = {weight.path.split("/")[0] for weight in model.trainable_weights}
    assert set(VGG_LAYER_NAMES) <= trainable
    for name in VGG_LAYER_NAMES:
        assert model.get_layer(name).trainable, name


def test_a_weights_file_is_loaded_and_kept(offline, data_dir, tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    output = tmp_path / "run"
    assert cli.main(_train_args(data_dir, output, "--vgg-weights", str(path))) == 0
    model = load_reseg_model(str(output / "model.keras"))
    for name in VGG_LAYER_NAMES:
        assert not model.get_layer(name).trainable, name
        for got, written in zip(model.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, written, err_msg=name)


def test_a_random_fixed_front_end_only_when_asked(data_dir):
    import pipelines
    from reseg_tf.training import model_config_for

    source = pipelines.get_source("camvid", data_dir)
    asked = reseg_tf.TrainConfig(preset="camvid", vgg_weights="None", freeze_front_end=True)
    assert asked.front_end_weights == "none" and model_config_for(asked, source)[0].freeze_front_end
    assert not model_config_for(reseg_tf.TrainConfig(preset="camvid", vgg_weights="none"), source)[0].freeze_front_end
    with pytest.raises(ValueError, match="--freeze-front-end"):
        reseg_tf.TrainConfig(preset="camvid", cache_features=True, vgg_weights="none")
    reseg_tf.TrainConfig(preset="camvid", cache_features=True, vgg_weights="none", freeze_front_end=True)
    with pytest.raises(ValueError, match="--freeze-front-end keeps the front end fixed"):
        reseg_tf.TrainConfig(preset="camvid_scratch", freeze_front_end=True)


def test_weights_that_cannot_fit_are_refused_at_once(tmp_path):
    with pytest.raises(FileNotFoundError, match="--vgg-weights"):
        reseg_tf.TrainConfig(preset="camvid", vgg_weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="takes no pretrained weights"):
        reseg_tf.TrainConfig(preset="camvid_scratch", vgg_weights="imagenet")
    assert reseg_tf.TrainConfig(preset="camvid_scratch", vgg_weights="none").front_end_weights == "none"


def test_a_finished_imagenet_run_asked_again_offline_is_reported_without_a_download(data_dir, tmp_path,
                                                                                     monkeypatch, capsys):
    """The same command again on a finished run reports it; it needs no ImageNet weights, so it
    works offline although the run started from downloaded ones."""
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    downloaded = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(downloaded)
    monkeypatch.setattr(keras.utils, "get_file", lambda fname, origin, **kwargs: str(downloaded))  # online
    output = tmp_path / "run"
    assert cli.main(_train_args(data_dir, output)) == 0
    capsys.readouterr()

    def unreachable(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", unreachable)  # offline
    assert cli.main(_train_args(data_dir, output)) == 0
    captured = capsys.readouterr()
    assert "already holds this run" in captured.out and "could not be downloaded" not in captured.err
    # Other settings still go through the normal checks (and need the weights first).
    assert cli.main(_train_args(data_dir, output, "--optimizer", "sgd")) == 2
