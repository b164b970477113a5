import itertools

import keras
import numpy as np
import tensorflow as tf
import pytest

from helpers import assert_layer_round_trips
from reseg_tf import ReNetLayer
from reseg_tf.layers.renet import InitializeInFloat32


# ---------------------------------------------------------------- NumPy reference (independent)
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gru_weights(rnn_layer):
    cell = rnn_layer.cell
    return (keras.ops.convert_to_numpy(cell.kernel), keras.ops.convert_to_numpy(cell.recurrent_kernel),
            keras.ops.convert_to_numpy(cell.bias))


def _np_gru(sequence, weights, reverse):
    """Keras GRU (reset_after=True) over one sequence (T, D); returns outputs in input order."""
    kernel, recurrent, bias = weights
    units = recurrent.shape[0]
    h = np.zeros(units)
    outputs = np.zeros((len(sequence), units))
    steps = range(len(sequence) - 1, -1, -1) if reverse else range(len(sequence))
    for t in steps:
        x_proj = sequence[t] @ kernel + bias[0]
        h_proj = h @ recurrent + bias[1]
        z = _sigmoid(x_proj[:units] + h_proj[:units])
        r = _sigmoid(x_proj[units:2 * units] + h_proj[units:2 * units])
        candidate = np.tanh(x_proj[2 * units:] + r * h_proj[2 * units:])
        h = z * h + (1 - z) * candidate
        outputs[t] = h
    return outputs


def _np_bidirectional(sequence, forward, backward, stacked):
    out_f = _np_gru(sequence, forward, reverse=False)
    out_b = _np_gru(out_f if stacked else sequence, backward, reverse=True)
    return np.concatenate([out_f, out_b], axis=-1)


def _np_patches(image, ph, pw):
    height, width, channels = image.shape
    rows, cols = -(-height // ph), -(-width // pw)
    padded = np.zeros((rows * ph, cols * pw, channels))
    padded[:height, :width] = image
    out = np.zeros((rows, cols, ph * pw * channels))
    for i in range(rows):
        for j in range(cols):
            out[i, j] = padded[i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].reshape(-1)
    return out


def _np_vertical(grid, forward, backward, stacked):
    rows, cols, _ = grid.shape
    return np.stack([_np_bidirectional(grid[:, j], forward, backward, stacked) for j in range(cols)], axis=1)


def _np_horizontal(grid, forward, backward, stacked):
    return np.stack([_np_bidirectional(row, forward, backward, stacked) for row in grid], axis=0)


def np_renet(layer, images):
    weights = {d: _gru_weights(getattr(layer, d)) for d in ("down", "up", "right", "left")}
    stacked = layer.direction_mode == "stacked"
    vertical = lambda g: _np_vertical(g, weights["down"], weights["up"], stacked)
    horizontal = lambda g: _np_horizontal(g, weights["right"], weights["left"], stacked)
    first, second = (vertical, horizontal) if layer.sweep_order == "vertical_first" else (horizontal, vertical)
    results = []
    for image in images:
        grid = _np_patches(image, *layer.patch_size)
        if layer.stack_sublayers:
            results.append(second(first(grid)))
        else:
            results.append(np.concatenate([first(grid), second(grid)], axis=-1))
    return np.stack(results)


OPTIONS = list(itertools.product(
    ("vertical_first", "horizontal_first"), ("parallel", "stacked"), (True, False),
))


@pytest.mark.parametrize("sweep_order,direction_mode,stack_sublayers", OPTIONS)
@pytest.mark.parametrize("patch_size", [(1, 1), (2, 3)])
def test_matches_numpy_reference(sweep_order, direction_mode, stack_sublayers, patch_size):
    images = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype("float32")
    layer = ReNetLayer(4, patch_size=patch_size, sweep_order=sweep_order,
                       direction_mode=direction_mode, stack_sublayers=stack_sublayers)
    layer.build(images.shape)
    # Non-zero biases so the reference checks their placement too.
    for direction in ("down", "up", "right", "left"):
        bias = getattr(layer, direction).cell.bias
        bias.assign(np.random.default_rng(1).normal(size=bias.shape).astype("float32"))
    got = keras.ops.convert_to_numpy(layer(images))
    np.testing.assert_allclose(got, np_renet(layer, images), atol=2e-5)


def test_sweeps_are_directional():
    """A perturbation at one patch changes the output only along its column and row."""
    layer = ReNetLayer(3)
    images = np.zeros((1, 6, 6, 2), "float32")
    base = keras.ops.convert_to_numpy(layer(images))
    images[0, 2, 3] = 5.0
    changed = np.abs(keras.ops.convert_to_numpy(layer(images)) - base).max(axis=-1)[0] > 1e-7
    # The vertical sweep spreads along column 3, then the horizontal sweep along every row.
    assert changed[:, 3].all() and changed.all()
    vertical_only = ReNetLayer(3, sweep_order="vertical_first", stack_sublayers=False)
    base = keras.ops.convert_to_numpy(vertical_only(np.zeros_like(images)))
    changed = np.abs(keras.ops.convert_to_numpy(vertical_only(images)) - base).max(axis=-1)[0] > 1e-7
    cross = np.zeros((6, 6), bool)
    cross[:, 3] = cross[2, :] = True
    np.testing.assert_array_equal(changed, cross)


@pytest.mark.parametrize("height,width,patch,expected", [
    (8, 8, (1, 1), (8, 8)), (7, 9, (2, 2), (4, 5)), (5, 6, (3, 1), (2, 6)), (4, 4, 4, (1, 1)),
])
def test_output_shape_pads_partial_patches(height, width, patch, expected):
    layer = ReNetLayer(2, patch_size=patch)
    out = layer(np.zeros((2, height, width, 3), "float32"))
    assert tuple(out.shape) == (2, *expected, 4)
    assert layer.compute_output_shape((2, height, width, 3)) == (2, *expected, 4)


def test_unknown_spatial_dims_and_batch_one():
    layer = ReNetLayer(3, patch_size=(2, 2), stack_sublayers=False)
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, layer(inputs))
    assert model.output_shape == (None, None, None, 12)
    for shape in [(1, 5, 3, 4), (3, 8, 10, 4)]:
        out = model.predict(np.ones(shape, "float32"), verbose=0)
        assert out.shape == (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), 12)


@pytest.mark.parametrize("rnn", ["gru", "lstm", "simple"])
def test_rnn_types_round_trip(rnn, tmp_path):
    layer = ReNetLayer(3, patch_size=(2, 1), rnn=rnn, direction_mode="stacked", name="renet")
    inputs = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype("float32")
    out = assert_layer_round_trips(layer, inputs, tmp_path)
    assert out.shape == (2, 3, 5, 6)
    assert layer.down.__class__.__name__.lower().startswith({"gru": "gru", "lstm": "lstm", "simple": "simplernn"}[rnn])


def test_default_sublayers_are_cudnn_eligible():
    layer = ReNetLayer(5)
    layer.build((None, None, None, 3))
    for direction in ("down", "up", "right", "left"):
        rnn = getattr(layer, direction)
        assert isinstance(rnn, keras.layers.GRU)
        cell = rnn.cell
        assert cell.activation is keras.activations.tanh
        assert cell.recurrent_activation is keras.activations.sigmoid
        assert cell.reset_after and cell.use_bias and cell.recurrent_dropout == 0 and not rnn.unroll
        # Orthogonal, drawn in float32 whatever the dtype policy (the QR has no bfloat16 kernel).
        assert isinstance(cell.recurrent_initializer, InitializeInFloat32)
        assert isinstance(cell.recurrent_initializer.initializer, keras.initializers.Orthogonal)


@pytest.mark.parametrize("kwargs,message", [
    (dict(units=0), "units"),
    (dict(units=4, patch_size=0), "patch_size"),
    (dict(units=4, patch_size=(2, 0)), "patch_size"),
    (dict(units=4, patch_size=(1, 2, 3)), "patch_size"),
    (dict(units=4, rnn="transformer"), "rnn"),
    (dict(units=4, sweep_order="diagonal"), "sweep_order"),
    (dict(units=4, direction_mode="both"), "direction_mode"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ReNetLayer(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="4D|ndim"):
        ReNetLayer(2)(np.zeros((2, 5, 3), "float32"))


@pytest.mark.parametrize("implementation", ["keras", "fast"])
@pytest.mark.parametrize("policy", ["float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16"])
def test_every_dtype_policy_builds_and_matches_float32(policy, implementation):
    # Full low-precision policies used to fail at build: the orthogonal initializer's QR has no
    # bfloat16 kernel. Weights are now drawn in float32 and cast.
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype("float32")
    reference = ReNetLayer(4, implementation="keras")
    expected = reference(x).numpy()
    layer = ReNetLayer(4, implementation=implementation, dtype=policy)
    layer.build(x.shape)
    assert layer.down.cell.recurrent_kernel.dtype == layer.variable_dtype
    layer.set_weights(reference.get_weights())
    with tf.GradientTape() as tape:
        inputs = tf.cast(x, layer.compute_dtype)
        tape.watch(inputs)
        outputs = layer(inputs)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) ** 2)
    assert outputs.dtype == layer.compute_dtype
    tolerance = {"float32": 1e-5, "float16": 3e-3, "bfloat16": 3e-2}[layer.compute_dtype]
    np.testing.assert_allclose(tf.cast(outputs, tf.float32).numpy(), expected, atol=tolerance)
    gradients = tape.gradient(loss, layer.trainable_variables)
    assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(tf.cast(g, tf.float32)))) for g in gradients)
