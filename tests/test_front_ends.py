"""Every registered front end, through the same checks: build, forward, backward, `.keras`
round trip, fine-tuning's layer matching, feature caching and builtin-ops TFLite conversion.

A new front end registered in `reseg_tf/front_ends/` is covered here without a new test;
`TINY_OPTIONS` may give it smaller options than its defaults.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import reseg_tf
from helpers import assert_model_round_trips, tiny_config
from reseg_tf import export
from reseg_tf.export.saved_model import write_static_saved_model
from reseg_tf.front_ends import WEIGHT_SOURCES, FrontEndWeightsError, get_front_end
from reseg_tf.front_ends.applications import KerasApplication
from reseg_tf.models import front_end_layers
from reseg_tf.training.feature_cache import split_frozen_front_end
from reseg_tf.training.init_from import load_matching_layers

SIZE = (32, 32)
TINY_OPTIONS = {"scratch_stem": {"filters": (4, 4, 8)}, "resnet50": {"output_stride": 4}}
FRONT_ENDS = reseg_tf.list_front_ends()


def _config(name, **changes):
    return tiny_config(front_end=name, front_end_options=TINY_OPTIONS.get(name), renet=((4, (1, 1)),), **changes)


def _images(count=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, *SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module", params=FRONT_ENDS)
def built(request):
    """`(front end name, a tiny model with it trained (not frozen))`, seeded."""
    keras.utils.set_random_seed(0)
    return request.param, reseg_tf.build_model(_config(request.param, freeze_front_end=False),
                                               input_shape=(*SIZE, 3), name=f"tiny_{request.param}")


def test_at_least_five_front_ends_are_registered():
    assert len(FRONT_ENDS) >= 5 and {"vgg16", "scratch_stem", "none"} <= set(FRONT_ENDS)


def test_forward_gives_the_declared_features_and_probabilities(built):
    name, model = built
    config = model.reseg_config
    front_end, options = get_front_end(name), config.front_end_settings
    features = keras.Model(model.input, model.front_end_features)(_images())
    if front_end.output_layer(options) != front_end.name:  # not a nested backbone: the layer's own output
        assert model.get_layer(front_end.output_layer(options)).output is model.front_end_features
    stride = front_end.output_stride(options)
    assert tuple(features.shape) == (2, SIZE[0] // stride, SIZE[1] // stride, front_end.output_channels(options))
    assert config.input_stride == (stride, stride)
    probabilities = model(_images())
    assert probabilities.shape == (2, *SIZE, 3)
    np.testing.assert_allclose(np.sum(probabilities, -1), 1.0, atol=1e-5)
    assert set(front_end.weight_sources) <= set(WEIGHT_SOURCES)


def test_backward_reaches_the_front_end_unless_frozen(built):
    name, model = built
    images, masks = _images(), np.zeros((2, *SIZE), np.int32)
    with tf.GradientTape() as tape:
        loss = keras.losses.sparse_categorical_crossentropy(masks, model(images, training=True))
    gradients = tape.gradient(loss, model.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in gradients)
    trained = {id(w) for w in model.trainable_weights}
    assert all(id(w) in trained for w in _front_end_kernels(model))
    frozen = reseg_tf.build_model(_config(name, freeze_front_end=True), input_shape=(*SIZE, 3))
    assert not {id(w) for w in frozen.trainable_weights} & {id(w) for w in _front_end_kernels(frozen)}
    assert frozen.trainable_weights  # the ReNet layers and the head still train


def _front_end_kernels(model):
    return [w for name in front_end_layers(model) for w in model.get_layer(name).weights if "kernel" in w.path]


def test_keras_file_round_trip(built, tmp_path):
    _, model = built
    restored = assert_model_round_trips(model, _images(1), tmp_path)
    assert restored.reseg_config == model.reseg_config
    assert reseg_tf.ReSegConfig.from_dict(model.reseg_config.to_dict()) == model.reseg_config


def test_init_from_loads_every_layer_front_end_included(built):
    name, model = built
    keras.utils.set_random_seed(1)
    fresh = reseg_tf.build_model(_config(name, freeze_front_end=False), input_shape=(*SIZE, 3))
    result = load_matching_layers(fresh, model)
    assert result["new"] == [] and set(front_end_layers(model)) <= set(result["loaded"])
    np.testing.assert_allclose(fresh(_images(1)), model(_images(1)), atol=1e-6)


def test_cached_features_give_the_model_output(built):
    name, model = built
    frozen = reseg_tf.build_model(_config(name, freeze_front_end=True), input_shape=(*SIZE, 3))
    frozen.set_weights(model.get_weights())
    front_end, head = split_frozen_front_end(frozen)
    images = _images()
    np.testing.assert_allclose(head(front_end(images)), frozen(images), atol=1e-5)
    if front_end_layers(model):
        with pytest.raises(ValueError, match="freeze_front_end"):
            split_frozen_front_end(model)


@pytest.mark.slow
def test_tflite_builtin_ops_answer_like_keras(built, tmp_path):
    _, model = built
    write_static_saved_model(model, tmp_path / "saved_model", SIZE)
    export.convert_tflite(tmp_path / "saved_model", "fp32", tmp_path / "model.tflite")
    predict = export.tflite_predict_fn(export.load_tflite(tmp_path / "model.tflite"))  # refuses Flex ops
    image = _images(1)[0]
    np.testing.assert_allclose(predict(image), model(image[np.newaxis]), atol=1e-4)


@pytest.mark.parametrize("name", [n for n in FRONT_ENDS if "imagenet" in get_front_end(n).weight_sources])
def test_offline_imagenet_weights_name_both_ways_on(name, monkeypatch):
    def unreachable(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", unreachable)
    front_end = get_front_end(name)
    with pytest.raises(FrontEndWeightsError) as raised:
        reseg_tf.build_model(_config(name), input_shape=(*SIZE, 3), weights="imagenet")
    message = str(raised.value)
    assert f"{front_end.weights_flag} FILE" in message and f"{front_end.weights_flag} none" in message
    assert front_end.imagenet_weights_file(front_end.options(TINY_OPTIONS.get(name)))[0] in message


@pytest.mark.parametrize("name", [n for n in FRONT_ENDS if isinstance(get_front_end(n), KerasApplication)])
def test_a_keras_application_weights_file_is_loaded(name, tmp_path):
    front_end = get_front_end(name)
    keras.utils.set_random_seed(2)
    full = front_end._full()
    path = tmp_path / f"{name}.weights.h5"
    full.save_weights(path)
    model = reseg_tf.build_model(_config(name), input_shape=(*SIZE, 3), weights=str(path))
    backbone = model.get_layer(name)
    checked = 0
    for layer in backbone.layers:
        if not layer.weights:
            continue
        for got, written in zip(layer.get_weights(), full.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, written, err_msg=layer.name)
            checked += 1
    assert checked > 10
