import keras
import numpy as np
import pytest

from helpers import assert_model_round_trips, tiny_config
from reseg_tf import ReSegConfig, ReSegModel, build_model, get_preset, list_presets
from reseg_tf.models import config_from_model
from reseg_tf.front_ends.vgg import vgg_layer_names

VGG_LAYER_NAMES = vgg_layer_names(3)

TINY = tiny_config(renet=((4, (2, 2)), (3, (1, 1))))


def _images(batch, height, width, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(batch, height, width, 3)).astype("float32")


def test_camvid_preset_matches_the_paper():
    model = build_model("camvid", input_shape=(360, 480, 3), weights=None)
    assert model.output_shape == (None, 360, 480, 11)
    assert 2_400_000 <= model.count_params() <= 2_700_000
    for name in VGG_LAYER_NAMES:
        assert not model.get_layer(name).trainable
    assert not any("block" in w.path for w in model.trainable_weights)
    names = [layer.name for layer in model.layers]
    for expected in ("block1_conv1", "block3_conv3", "renet_1", "renet_2", "upsample_1", "upsample_2",
                     "probabilities"):
        assert expected in names
    assert model.get_layer("renet_1").units == 100
    assert model.get_layer("upsample_1").strides == (2, 2)


def test_every_preset_builds_and_runs():
    for name in list_presets():
        config, _, _ = get_preset(name)
        model = build_model(name, input_shape=(None, None, 3))
        out = model.predict(_images(1, 40, 36), verbose=0)
        assert out.shape == (1, 40, 36, config.num_classes)
        np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("size", [(32, 32), (30, 45), (17, 9)])
def test_output_matches_input_size_for_any_size(size):
    model = build_model(TINY)
    out = model.predict(_images(2, *size), verbose=0)
    assert out.shape == (2, *size, 3)


def test_vgg_model_with_size_not_multiple_of_stride():
    config = get_preset("camvid")[0].replace(renet=((4, (1, 1)),), upsampling=((4, (2, 2)), (4, (2, 2))))
    model = build_model(config, input_shape=(None, None, 3))
    assert model.predict(_images(1, 23, 30), verbose=0).shape == (1, 23, 30, 11)


def test_uint8_input_equals_float_input():
    model = build_model(TINY, input_shape=(16, 16, 3))
    images = _images(2, 16, 16).round()
    np.testing.assert_allclose(model(images.astype("uint8")), model(images), atol=1e-6)


def test_save_load_round_trip_and_batch_one(tmp_path):
    model = build_model(TINY, input_shape=(None, None, 3))
    restored = assert_model_round_trips(model, _images(2, 24, 20), tmp_path)
    assert config_from_model(restored) == TINY
    one = _images(1, 13, 11, seed=3)
    np.testing.assert_allclose(restored.predict(one, verbose=0), model.predict(one, verbose=0), atol=1e-5)


def test_vgg_weights_from_file(tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(path)
    model = build_model("camvid", input_shape=(None, None, 3), weights=str(path))
    for name in VGG_LAYER_NAMES:
        for got, want in zip(model.get_layer(name).get_weights(), vgg.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    # A freshly initialised model differs, so the equality above is due to the file.
    fresh = build_model("camvid", input_shape=(None, None, 3))
    assert not np.array_equal(fresh.get_layer("block1_conv1").get_weights()[0],
                              vgg.get_layer("block1_conv1").get_weights()[0])


def test_vgg_preprocessing_is_bgr_minus_mean():
    model = build_model("camvid", input_shape=(4, 4, 3))
    rgb = np.zeros((1, 4, 4, 3), "float32")
    rgb[..., 0] = 200.0  # red
    out = keras.ops.convert_to_numpy(model.get_layer("preprocess")(rgb))
    np.testing.assert_allclose(out[0, 0, 0], [-103.939, -116.779, 200.0 - 123.68], atol=1e-4)


def test_config_dict_round_trip():
    config = get_preset("camvid_paper_patches")[0]
    assert ReSegConfig.from_dict(config.to_dict()) == config
    assert config.input_stride == (8, 8) and config.output_stride == (8, 8)


@pytest.mark.parametrize("call,message", [
    (lambda: build_model("nope"), "unknown preset"),
    (lambda: build_model(TINY, input_shape=(32, 32, 1)), "input_shape"),
    (lambda: build_model(TINY, input_shape=(32, 32)), "input_shape"),
    (lambda: build_model(TINY, weights="imagenet"), "no ImageNet weights"),
    (lambda: build_model("camvid", weights="/no/such/vgg.h5"), "does not exist"),
    (lambda: build_model(42), "preset_or_config"),
    (lambda: ReSegConfig(num_classes=1), "num_classes"),
    (lambda: ReSegConfig(num_classes=3, class_names=("a",)), "class_names"),
    (lambda: ReSegConfig(renet=()), "renet"),
    (lambda: ReSegConfig(renet=((0, (1, 1)),)), "units"),
    (lambda: ReSegConfig(upsampling=((8, (0, 2)),)), "kernel_size"),
    (lambda: ReSegConfig.from_dict({"num_clases": 3}), "unknown"),
])
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_reseg_model_is_refused():
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not a ReSeg model"):
        config_from_model(other)
    assert isinstance(build_model(TINY), ReSegModel)


def test_thin_batch_norm_front_end_trains_from_scratch():
    config = get_preset("camvid")[0].replace(front_end="scratch_stem", front_end_options={"filters": (8, 16, 16)},
                                             freeze_front_end=None, renet=((4, (1, 1)),))
    model = build_model(config, input_shape=(None, None, 3))
    assert model.get_layer("block3_conv3").filters == 16
    assert model.get_layer("block1_bn1").trainable and model.get_layer("block1_conv1").trainable
    assert any("block1_conv1" in w.path for w in model.trainable_weights)
    assert model.predict(_images(1, 20, 24), verbose=0).shape == (1, 20, 24, 11)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_model(config, weights="imagenet")
    with pytest.raises(ValueError, match="filters"):
        ReSegConfig(front_end="scratch_stem", front_end_options={"filters": (8, 16)})
    with pytest.raises(ValueError, match="no option"):
        ReSegConfig(front_end="vgg16", front_end_options={"filters": (8, 16, 16)})
    with pytest.raises(ValueError, match="unknown front end"):
        ReSegConfig(front_end="vgg19")


@pytest.mark.parametrize("legacy,front_end,options,frozen", [
    (dict(use_vgg=True), "vgg16", {"output_layer": "block3_conv3"}, True),
    (dict(use_vgg=True, freeze_vgg=False), "vgg16", {"output_layer": "block3_conv3"}, False),
    (dict(use_vgg=True, freeze_vgg=False, vgg_filters=[32, 64, 128], vgg_batch_norm=True), "scratch_stem",
     {"filters": (32, 64, 128), "batch_norm": True}, False),
    (dict(use_vgg=False, freeze_vgg=True), "none", {}, False),
])
def test_configs_written_before_the_front_end_registry_still_read(legacy, front_end, options, frozen):
    current = {key: value for key, value in TINY.to_dict().items()
               if key not in ("front_end", "front_end_options", "freeze_front_end")}
    config = ReSegConfig.from_dict({**current, **legacy})
    assert (config.front_end, config.front_end_settings, config.freeze_front_end) == (front_end, options, frozen)
    assert ReSegConfig.from_dict(config.to_dict()) == config


def test_conv_context_baseline_has_about_the_same_parameters():
    renet = build_model("camvid_scratch")
    conv = build_model("camvid_scratch_conv")
    assert "conv_context_1" in [layer.name for layer in conv.layers]
    assert not any(isinstance(layer, type(renet.get_layer("renet_1"))) for layer in conv.layers)
    assert abs(conv.count_params() - renet.count_params()) / renet.count_params() < 0.02
    assert conv.predict(_images(1, 20, 24), verbose=0).shape == (1, 20, 24, 11)
    with pytest.raises(ValueError, match="context"):
        ReSegConfig(context="transformer")


def test_weight_decay_reaches_every_trainable_kernel_including_the_grus(tmp_path):
    config = TINY.replace(weight_decay=1e-3)
    model = build_model(config, input_shape=(8, 8, 3))
    model(np.zeros((1, 8, 8, 3), "float32"))
    # 2 ReNet layers x 4 RNNs x (kernel + recurrent kernel) + upsample + classifier kernels.
    assert len(model.losses) == 2 * 4 * 2 + 2
    expected = 1e-3 * sum(float(np.sum(np.square(w.numpy()))) for w in model.trainable_weights
                          if w.path.endswith("kernel"))
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    assert_model_round_trips(model, _images(1, 8, 8), tmp_path)
