"""The ReNet layer: four RNN sweeps over a grid of non-overlapping patches."""
import keras
import tensorflow as tf
from keras import ops

from reseg_tf.layers.fast_rnn import bidirectional_gru
from reseg_tf.layers.unrolled_rnn import unrolled_bidirectional_gru

RNN_CLASSES = {
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
    "simple": keras.layers.SimpleRNN,
}
SWEEP_ORDERS = ("vertical_first", "horizontal_first")
DIRECTION_MODES = ("parallel", "stacked")
# "fast" paths: matmul dtype of reseg_tf.layers.fast_rnn.bidirectional_gru.
FAST_IMPLEMENTATIONS = {"fast": "float32", "fast_bf16": "bfloat16"}
# The statically unrolled GRU (reseg_tf.layers.unrolled_rnn), the TFLite export source.
UNROLLED = "unrolled"
# Values of `ReNetLayer(implementation=...)`; flags that choose one take their choices from here.
IMPLEMENTATIONS = ("auto", "keras", *FAST_IMPLEMENTATIONS, UNROLLED)
# The implementations that read the GRU cells' weights directly (GRU only).
GRU_ONLY_IMPLEMENTATIONS = (*FAST_IMPLEMENTATIONS, UNROLLED)


@keras.saving.register_keras_serializable(package="reseg_tf")
class InitializeInFloat32(keras.initializers.Initializer):
    """Draws `initializer`'s values in float32 and casts them to the variable's dtype.

    Some initializers have no low-precision kernel on the TensorFlow backend (the orthogonal
    initializer's QR decomposition has none for bfloat16), so a layer under a full `bfloat16`
    or `float16` dtype policy could not even be built; values drawn in float32 and rounded are
    what a float32 model cast to that dtype would hold.
    """

    def __init__(self, initializer):
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        return ops.cast(self.initializer(shape, dtype="float32"), dtype or "float32")

    def get_config(self):
        return {"initializer": keras.initializers.serialize(self.initializer)}


def _as_pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be an int or a pair of ints, got {value!r}.") from None
    if len(pair) != 2 or min(pair) < 1 or any(int(v) != v for v in value):
        raise ValueError(f"`{name}` must be one or two positive ints, got {value!r}.")
    return pair


@keras.saving.register_keras_serializable(package="reseg_tf")
class ReNetLayer(keras.layers.Layer):
    """One ReNet layer (Visin et al. 2015): a vertical and a horizontal bidirectional RNN sweep.

    The input feature map is cut into non-overlapping `patch_size` patches, each flattened to a
    vector in (row, column, channel) order. When the height or width is not a multiple of the
    patch size, the map is zero-padded at the bottom and on the right first, so the output has
    `ceil(H / ph)` rows and `ceil(W / pw)` columns.

    The vertical sublayer runs one RNN down and one RNN up every column of patches; all columns
    are folded into the batch axis, so they are swept in parallel (one cuDNN call each on a
    GPU). The two outputs are concatenated (`2 * units` features). The horizontal sublayer then
    does the same right and left along every row, reading the vertical sublayer's output.

    With the default arguments every RNN is a stock Keras GRU that is eligible for the cuDNN
    kernel on a GPU (tanh/sigmoid activations, `reset_after=True`, biases, no recurrent dropout).
    The recurrent weights start orthogonal and the input weights Glorot-uniform, as in the paper.

    On a CPU the GRU layer runs by default on a faster implementation of the same function with
    the same variables (`reseg_tf.layers.fast_rnn`): one matmul projects the inputs of all
    steps, both directions share one recurrent loop, and the gradient is hand written. Weights
    and `.keras` files are interchangeable between implementations.

    Args:
        units: positive int, hidden units of each of the four RNNs (per direction).
        patch_size: int or `(ph, pw)`, size of the non-overlapping patches read by the layer.
        rnn: `"gru"` (paper), `"lstm"` or `"simple"`.
        sweep_order: `"vertical_first"` (paper) or `"horizontal_first"` (the authors' code).
        direction_mode: `"parallel"` (paper: the backward RNN reads the same input as the
            forward one) or `"stacked"` (the authors' code: the backward RNN reads the forward
            RNN's output sequence). Both directions' outputs are concatenated in either mode.
        stack_sublayers: `True` (paper): the second sublayer reads the first one's output.
            `False`: both sublayers read the patches and their outputs are concatenated, giving
            `4 * units` features.
        kernel_initializer: initializer of the RNNs' input weights.
        recurrent_initializer: initializer of the RNNs' recurrent weights.
        implementation: `"auto"` (default: the Keras RNN layers, cuDNN, when a GPU is visible,
            else `"fast"` for GRUs, or `"fast_bf16"` when the layer computes in bfloat16, e.g.
            under the `mixed_bfloat16` policy; LSTM and SimpleRNN always use the Keras layers), `"keras"`
            (always the Keras RNN layers), `"fast"` (float32 CPU path, GRU only) or
            `"fast_bf16"` (the fast path with bfloat16 matmuls and float32 state: about 1e-2
            relative error, for CPUs with AVX512_BF16/AMX) or `"unrolled"` (GRU only, a static
            input size: every step written out with 11 ops for both directions, the source of
            TFLite exports, see `reseg_tf.layers.unrolled_rnn`). The fast and unrolled paths
            compute in float32 under mixed-precision policies (weights read in the policy's
            compute dtype, output cast back to it).
        kernel_regularizer: regularizer of the four RNNs' input weights (e.g. `L2(1e-3)`).
        recurrent_regularizer: regularizer of their recurrent weights.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, `trainable`).

    Example:

    >>> layer = ReNetLayer(units=8, patch_size=(2, 2))
    >>> layer(keras.ops.zeros((2, 32, 30, 3))).shape
    (2, 16, 15, 16)
    """

    def __init__(
        self,
        units,
        patch_size=(1, 1),
        rnn="gru",
        sweep_order="vertical_first",
        direction_mode="parallel",
        stack_sublayers=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        implementation="auto",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be a positive int, got {units!r}.")
        if rnn not in RNN_CLASSES:
            raise ValueError(f"`rnn` must be one of {sorted(RNN_CLASSES)}, got {rnn!r}.")
        if sweep_order not in SWEEP_ORDERS:
            raise ValueError(f"`sweep_order` must be one of {SWEEP_ORDERS}, got {sweep_order!r}.")
        if direction_mode not in DIRECTION_MODES:
            raise ValueError(
                f"`direction_mode` must be one of {DIRECTION_MODES}, got {direction_mode!r}."
            )
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {IMPLEMENTATIONS}, got {implementation!r}."
            )
        if implementation in GRU_ONLY_IMPLEMENTATIONS and rnn != "gru":
            raise ValueError(
                f"`implementation={implementation!r}` supports only rnn='gru', got rnn={rnn!r}; "
                "use implementation='auto' or 'keras'."
            )
        self.units = units
        self.implementation = implementation
        self.patch_size = _as_pair(patch_size, "patch_size")
        self.rnn = rnn
        self.sweep_order = sweep_order
        self.direction_mode = direction_mode
        self.stack_sublayers = bool(stack_sublayers)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

        # Directions of travel: "down"/"up" sweep columns, "right"/"left" sweep rows.
        self.down = self._make_rnn("down", go_backwards=False)
        self.up = self._make_rnn("up", go_backwards=True)
        self.right = self._make_rnn("right", go_backwards=False)
        self.left = self._make_rnn("left", go_backwards=True)

    def _make_rnn(self, direction, go_backwards):
        return RNN_CLASSES[self.rnn](
            self.units,
            return_sequences=True,
            go_backwards=go_backwards,
            # A fresh copy per RNN (seeded initializers), drawn in float32 for any dtype policy.
            kernel_initializer=InitializeInFloat32(keras.initializers.serialize(self.kernel_initializer)),
            recurrent_initializer=InitializeInFloat32(keras.initializers.serialize(self.recurrent_initializer)),
            # Regularizers act on the RNN cells' variables, which both implementations use.
            kernel_regularizer=self.kernel_regularizer,
            recurrent_regularizer=self.recurrent_regularizer,
            dtype=self.dtype_policy,
            name=direction,
        )

    @property
    def sweeps(self):
        """The (forward, backward) RNN pairs in the order they are applied."""
        vertical, horizontal = (self.down, self.up), (self.right, self.left)
        if self.sweep_order == "vertical_first":
            return vertical, horizontal
        return horizontal, vertical

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"ReNetLayer '{self.name}' expects a 4D input (batch, height, width, channels), "
                f"got shape {tuple(input_shape)}."
            )
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"ReNetLayer '{self.name}' needs a known channel count, got shape {tuple(input_shape)}."
            )
        patch_dim = self.patch_size[0] * self.patch_size[1] * channels
        first, second = self.sweeps
        second_input_dim = 2 * self.units if self.stack_sublayers else patch_dim
        for (forward, backward), input_dim in ((first, patch_dim), (second, second_input_dim)):
            forward.build((None, None, input_dim))
            backward_dim = self.units if self.direction_mode == "stacked" else input_dim
            backward.build((None, None, backward_dim))

    def _to_patches(self, inputs):
        ph, pw = self.patch_size
        if (ph, pw) == (1, 1):
            return inputs
        shape = ops.shape(inputs)
        height, width, channels = shape[1], shape[2], inputs.shape[-1]
        pad_h, pad_w = (-height) % ph, (-width) % pw
        x = ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        rows, cols = (height + pad_h) // ph, (width + pad_w) // pw
        x = ops.reshape(x, (-1, rows, ph, cols, pw, channels))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, rows, cols, ph * pw * channels))

    def _sweep(self, x, rnn_pair):
        forward, backward = rnn_pair
        vertical = forward is self.down
        if vertical:
            x = ops.transpose(x, (0, 2, 1, 3))
        shape = ops.shape(x)
        batch, lines, steps = shape[0], shape[1], shape[2]
        sequences = ops.reshape(x, (-1, steps, x.shape[-1]))
        forward_out = forward(sequences)
        backward_in = forward_out if self.direction_mode == "stacked" else sequences
        # go_backwards RNNs emit their outputs in reversed time order.
        backward_out = ops.flip(backward(backward_in), axis=1)
        out = ops.concatenate([forward_out, backward_out], axis=-1)
        out = ops.reshape(out, (batch, lines, steps, 2 * self.units))
        if vertical:
            out = ops.transpose(out, (0, 2, 1, 3))
        return out

    @property
    def effective_implementation(self):
        """The implementation `call` runs on this machine now: `"keras"`, `"fast"` or `"fast_bf16"`.

        `"auto"` is resolved as `call` resolves it (device, RNN type, compute dtype).
        """
        if self.implementation == UNROLLED:
            return UNROLLED
        matmul_dtype = self._fast_matmul_dtype()
        if matmul_dtype is None:
            return "keras"
        return next(name for name, dtype in FAST_IMPLEMENTATIONS.items() if dtype == matmul_dtype)

    def _fast_matmul_dtype(self):
        """The fast path's matmul dtype, or None where the Keras RNN layers run."""
        if self.implementation == "auto":
            if self.rnn != "gru" or tf.config.list_logical_devices("GPU"):
                return None
            # A bfloat16 compute policy already accepts bf16 rounding: take the faster matmuls.
            return FAST_IMPLEMENTATIONS["fast_bf16" if self.compute_dtype == "bfloat16" else "fast"]
        return FAST_IMPLEMENTATIONS.get(self.implementation)

    def _fast_sweep(self, x, rnn_pair, matmul_dtype):
        """`_sweep` on the fast path (or, with `matmul_dtype=None`, the unrolled one): `x` is
        `(B, rows, cols, F)` float32."""
        forward, backward = rnn_pair
        # Time major: (steps, batch, lines, F), lines folded into the batch.
        vertical = forward is self.down
        x = tf.transpose(x, (1, 0, 2, 3) if vertical else (2, 0, 1, 3))
        shape = tf.shape(x)
        sequences = tf.reshape(x, tf.stack([shape[0], -1, x.shape[-1]]))
        weights = [
            tuple(tf.cast(w.value, tf.float32) for w in (rnn.cell.kernel, rnn.cell.recurrent_kernel, rnn.cell.bias))
            for rnn in rnn_pair
        ]
        stacked = self.direction_mode == "stacked"
        if matmul_dtype is None:
            out = unrolled_bidirectional_gru(sequences, *weights, stacked=stacked)
        else:
            out = bidirectional_gru(sequences, *weights, stacked=stacked, matmul_dtype=matmul_dtype)
        out = tf.reshape(out, tf.stack([shape[0], shape[1], shape[2], 2 * self.units]))
        return tf.transpose(out, (1, 0, 2, 3) if vertical else (1, 2, 0, 3))

    def call(self, inputs):
        matmul_dtype = self._fast_matmul_dtype()
        if matmul_dtype is not None or self.implementation == UNROLLED:
            patches = tf.cast(self._to_patches(inputs), tf.float32)
            first, second = self.sweeps
            if self.stack_sublayers:
                out = self._fast_sweep(self._fast_sweep(patches, first, matmul_dtype), second, matmul_dtype)
            else:
                out = tf.concat([self._fast_sweep(patches, first, matmul_dtype),
                                 self._fast_sweep(patches, second, matmul_dtype)], axis=-1)
            return tf.cast(out, self.compute_dtype)
        patches = self._to_patches(inputs)
        first, second = self.sweeps
        if self.stack_sublayers:
            return self._sweep(self._sweep(patches, first), second)
        return ops.concatenate([self._sweep(patches, first), self._sweep(patches, second)], axis=-1)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        ph, pw = self.patch_size
        rows = None if height is None else -(-height // ph)
        cols = None if width is None else -(-width // pw)
        features = 2 * self.units if self.stack_sublayers else 4 * self.units
        return (batch, rows, cols, features)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            patch_size=self.patch_size,
            rnn=self.rnn,
            sweep_order=self.sweep_order,
            direction_mode=self.direction_mode,
            stack_sublayers=self.stack_sublayers,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            implementation=self.implementation,
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            recurrent_regularizer=keras.regularizers.serialize(self.recurrent_regularizer),
        )
        return config
