"""ReNetLayer's fast CPU path (reseg_tf.layers.fast_rnn) against its Keras-GRU path."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import assert_layer_round_trips, tiny_config
from reseg_tf import ReNetLayer, build_model
from reseg_tf.layers.fast_rnn import bidirectional_gru

TINY = tiny_config(renet=((4, (2, 2)), (3, (1, 1))))


def _pair(implementation="fast", input_shape=(2, 5, 7, 3), **options):
    """A Keras-path layer with random non-zero biases and a fast-path copy of it."""
    keras_layer = ReNetLayer(4, implementation="keras", **options)
    keras_layer.build(input_shape)
    rng = np.random.default_rng(1)
    for direction in ("down", "up", "right", "left"):
        bias = getattr(keras_layer, direction).cell.bias
        bias.assign(rng.normal(size=bias.shape).astype("float32"))
    fast_layer = ReNetLayer.from_config({**keras_layer.get_config(), "implementation": implementation})
    fast_layer.build(input_shape)
    fast_layer.set_weights(keras_layer.get_weights())
    return keras_layer, fast_layer


def _outputs_and_gradients(layer, images):
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x)
        cotangent = np.random.default_rng(2).normal(size=out.shape).astype("float32")
        loss = tf.reduce_sum(out * cotangent)
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return [np.asarray(out)] + [np.asarray(g) for g in grads]


OPTIONS = list(itertools.product(
    ("vertical_first", "horizontal_first"), ("parallel", "stacked"), (True, False), [(1, 1), (2, 3)],
))


@pytest.mark.parametrize("sweep_order,direction_mode,stack_sublayers,patch_size", OPTIONS)
def test_fast_path_matches_keras_outputs_and_gradients(sweep_order, direction_mode, stack_sublayers,
                                                       patch_size):
    images = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")  # odd H and W
    keras_layer, fast_layer = _pair(sweep_order=sweep_order, direction_mode=direction_mode,
                                    stack_sublayers=stack_sublayers, patch_size=patch_size)
    expected = _outputs_and_gradients(keras_layer, images)
    got = _outputs_and_gradients(fast_layer, images)
    names = ["output", "input_grad"] + [w.path for w in keras_layer.trainable_weights]
    for name, e, g in zip(names, expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=name)


def test_bf16_path_is_close_to_keras():
    images = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype("float32")
    keras_layer, fast_layer = _pair("fast_bf16", input_shape=images.shape)
    expected, got = _outputs_and_gradients(keras_layer, images), _outputs_and_gradients(fast_layer, images)
    for e, g in zip(expected, got):
        assert np.abs(g - e).max() <= 3e-2 * np.abs(e).max()


def test_bidirectional_gru_matches_keras_bidirectional():
    sequences = np.random.default_rng(0).normal(size=(3, 6, 5)).astype("float32")  # (N, T, D)
    stock = keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True))
    expected = np.asarray(stock(sequences))
    cells = stock.forward_layer.cell, stock.backward_layer.cell
    weights = [(c.kernel, c.recurrent_kernel, c.bias) for c in cells]
    got = bidirectional_gru(tf.transpose(sequences, (1, 0, 2)), *weights)
    np.testing.assert_allclose(np.transpose(got, (1, 0, 2)), expected, atol=1e-6)


def test_auto_uses_fast_path_on_cpu_and_keras_for_other_rnns():
    assert not tf.config.list_logical_devices("GPU")
    assert ReNetLayer(3).effective_implementation == "fast"
    assert ReNetLayer(3, implementation="fast_bf16").effective_implementation == "fast_bf16"
    assert ReNetLayer(3, implementation="keras").effective_implementation == "keras"
    for rnn in ("lstm", "simple"):
        assert ReNetLayer(3, rnn=rnn).effective_implementation == "keras"


@pytest.mark.parametrize("kwargs", [dict(implementation="cudnn"), dict(implementation="fast", rnn="lstm")])
def test_bad_implementation(kwargs):
    with pytest.raises(ValueError, match="implementation"):
        ReNetLayer(3, **kwargs)


def test_weights_and_files_load_across_paths(tmp_path):
    keras_layer, fast_layer = _pair()
    assert [w.path for w in keras_layer.weights] == [w.path for w in fast_layer.weights]
    images = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")
    out = assert_layer_round_trips(fast_layer, images, tmp_path)
    np.testing.assert_allclose(out, np.asarray(keras_layer(images)), atol=1e-5)

    # A .keras model saved with one implementation, its weights loaded into the other.
    inputs = keras.Input((None, None, 3))
    saved = keras.Model(inputs, keras_layer(inputs))
    saved.save_weights(tmp_path / "keras_path.weights.h5")
    inputs = keras.Input((None, None, 3))
    other = keras.Model(inputs, ReNetLayer.from_config(fast_layer.get_config())(inputs))
    other.load_weights(tmp_path / "keras_path.weights.h5")
    np.testing.assert_allclose(other.predict(images, verbose=0), saved.predict(images, verbose=0),
                               atol=1e-5)


def test_fit_with_unknown_shapes_trains_the_fast_path():
    model = build_model(TINY, input_shape=(None, None, 3))
    assert model.get_layer("renet_1").effective_implementation == "fast"
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(4, 12, 10, 3)).astype("float32")
    masks = rng.integers(0, 3, size=(4, 12, 10))
    before = [w.numpy().copy() for w in model.get_layer("renet_1").trainable_weights]
    history = model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.get_layer("renet_1").trainable_weights
    assert all(np.abs(a.numpy() - b).max() > 0 for a, b in zip(after, before))
    assert model.predict(images[:1, :9, :7], verbose=0).shape == (1, 9, 7, 3)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_policy(policy):
    images = np.random.default_rng(0).normal(size=(2, 4, 6, 3)).astype("float32")
    reference = ReNetLayer(3)
    expected = np.asarray(reference(images))
    keras.mixed_precision.set_global_policy(policy)
    try:
        layer = ReNetLayer(3)
        layer.build(images.shape)
        layer.set_weights(reference.get_weights())
        out = layer(images)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert out.dtype == policy.split("_")[1]
    # `auto` on a CPU: bf16 matmuls when the layer computes in bfloat16, float32 otherwise.
    assert layer.effective_implementation == ("fast_bf16" if policy == "mixed_bfloat16" else "fast")
    np.testing.assert_allclose(np.asarray(out, "float32"), expected, atol=3e-2)


def test_tflite_export_of_fast_path_uses_builtin_ops_only(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = build_model(TINY, input_shape=(None, None, 3))
    assert model.get_layer("renet_1").effective_implementation == "fast"
    height, width = 12, 10
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda x: model(x, training=False),
                         input_signature=[tf.TensorSpec([1, height, width, 3], tf.float32)])
    archive.write_out(str(tmp_path / "saved_model"))
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on Flex ops
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    images = np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype("float32")
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, model.predict(images, verbose=0), atol=1e-5)
    op_names = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not any(name.startswith("Flex") for name in op_names)


def test_directions_in_one_loop_equal_separate_loops():
    from reseg_tf.layers.fast_rnn import gru_recurrence

    rng = np.random.default_rng(0)
    projs = [tf.constant(rng.normal(size=(5, 3, 6)).astype("float32")) for _ in range(2)]
    kernels = tf.constant(rng.normal(size=(2, 2, 6)).astype("float32"))
    biases = tf.constant(rng.normal(size=(2, 2, 6)).astype("float32"))
    reverse = (False, True)

    def run(together):
        with tf.GradientTape() as tape:
            tape.watch([*projs, kernels, biases])
            if together:
                states = gru_recurrence(projs, reverse, kernels, biases, "float32", True)
            else:
                states = [gru_recurrence([p], (r,), kernels[s:s + 1], biases[s:s + 1], "float32", True)[0]
                          for s, (p, r) in enumerate(zip(projs, reverse))]
            loss = tf.reduce_sum(tf.stack(states) * np.linspace(-1, 1, 5 * 3 * 2 * 2).reshape(2, 5, 3, 2))
        return [np.asarray(t) for t in [*states, *tape.gradient(loss, [*projs, kernels, biases])]]

    for together, separate in zip(run(True), run(False)):
        np.testing.assert_allclose(together, separate, atol=1e-6)


def test_unrolled_path_matches_keras_outputs_and_gradients():
    images = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")
    for sweep_order, direction_mode, stack_sublayers, patch_size in OPTIONS:
        keras_layer, unrolled = _pair("unrolled", sweep_order=sweep_order, direction_mode=direction_mode,
                                      stack_sublayers=stack_sublayers, patch_size=patch_size)
        assert unrolled.effective_implementation == "unrolled"
        expected = _outputs_and_gradients(keras_layer, images)
        got = _outputs_and_gradients(unrolled, images)
        names = ["output", "input_grad"] + [w.path for w in keras_layer.trainable_weights]
        for name, e, g in zip(names, expected, got):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name} {sweep_order} {direction_mode} {stack_sublayers} {patch_size}")


def test_unrolled_path_needs_a_static_size():
    layer = ReNetLayer(3, implementation="unrolled")
    traced = tf.function(layer, input_signature=[tf.TensorSpec([1, None, None, 2], tf.float32)])
    with pytest.raises(ValueError, match="static number of steps"):
        traced.get_concrete_function()
    with pytest.raises(ValueError, match="implementation"):
        ReNetLayer(3, rnn="lstm", implementation="unrolled")


def test_unrolled_tflite_has_few_ops_per_step_and_no_internal_names(tmp_path):
    from reseg_tf.export.saved_model import write_archive
    from reseg_tf.export.tflite import convert_tflite, load_tflite, tflite_size_breakdown

    height, width, channels = 6, 8, 3
    inputs = keras.Input((height, width, channels), batch_size=1, name="features")
    model = keras.Model(inputs, ReNetLayer(4, implementation="unrolled")(inputs))
    signature = [tf.TensorSpec([1, height, width, channels], tf.float32, name="features")]
    write_archive(model, tmp_path / "sm", {"serving_default": (lambda x: {"out": model(x)}, signature)})
    convert_tflite(tmp_path / "sm", "fp32", tmp_path / "m.tflite")
    breakdown = tflite_size_breakdown(tmp_path / "m.tflite")
    steps = height + width  # vertical then horizontal sweep, both directions in each step
    # 11 ops per step for both directions (fewer at step 0), plus ~15 per sweep (projection,
    # layout, reversal); Keras' unrolled GRU layers take ~34 per step and direction (~950 here).
    assert breakdown["operators"] <= 11 * steps + 15 * 2, breakdown
    interpreter = load_tflite(tmp_path / "m.tflite")
    input_details, output_details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert breakdown["tensor_name_bytes"] == len(input_details["name"]) + len(output_details["name"]) > 0
    x = np.random.default_rng(0).normal(size=(1, height, width, channels)).astype("float32")
    runner = interpreter.get_signature_runner("serving_default")
    np.testing.assert_allclose(runner(features=x)["out"], model(x), atol=1e-5)
