"""A statically unrolled bidirectional GRU with few ops per step, the source of TFLite exports.

TFLite's full-integer (int8) converter cannot quantize a recurrence written as a while-loop, so
exported ReNet layers are unrolled. Unrolling Keras' GRU layer copies its whole step graph for
every time step and direction (~34 ops and ~39 tensors per step: the step's input projection,
bias adds, gate slices, ...), and in a `.tflite` file every one of them costs an operator and
tensors with names and, in int8, quantization parameters: at CamVid's 264x352 that metadata
outweighed the weights and made the int8 file larger than the float one.

Here, for the same variables and the same maths (Keras' `reset_after=True` GRU, gate order
z, r, h; see `reseg_tf.layers.fast_rnn`):

- every direction's input projections of all steps are one matmul before the recurrence, with
  the input bias and the recurrent z/r biases folded in, in the state's gate-major layout
  `[z_1..z_S, r_1..r_S, n_1..n_S]`; reversed directions read it through one time-reversing
  gather and a select (and give their states back the same way);
- the directions share one state `(N, S*U)`, so one step of all of them is 11 operators:
  one fully connected product with a block-diagonal recurrent kernel `[R_z, R_r, R_n]`, one add
  of the step's input `[x_z, x_r, b_n]` (the candidate's recurrent bias rides on the input,
  not on the product: an int8 converter gives a fully connected op's bias a per-channel int32
  copy, with its own quantization parameters, at every step), one split into z, r and the
  candidate's product, a sigmoid each for z and r, `n = tanh(x_n + r * (h R_n + b_n))`
  (mul, add, tanh) and `h' = n + z * (h - n)` (sub, mul, add). Fewer would change the maths
  or the weights: the sigmoid must not see the candidate's product (one sigmoid over z and r
  would need a second split, as costly as a second sigmoid, and copies more); the update needs
  its three ops; a second product instead of the split costs more;
- step 0 starts from a zero state, so it has no recurrent product at all.

The unrolled graph needs a static number of steps. Its gradient is TensorFlow's own, so the
same code also trains (slowly to trace at large sizes: use it for export).
"""
import tensorflow as tf


def _block_diagonal(blocks):
    """`(sum rows, sum cols)` matrix with `blocks` on its diagonal."""
    rows = [b.shape[0] for b in blocks]
    cols = [b.shape[1] for b in blocks]
    padded = [
        tf.pad(block, [[0, 0], [sum(cols[:i]), sum(cols[i + 1:])]]) for i, block in enumerate(blocks)
    ]
    matrix = tf.concat(padded, axis=0)
    matrix.set_shape([sum(rows), sum(cols)])
    return matrix


def _reverse_time(x):
    """`x` reversed along its static leading (time) axis, as a gather: TFLite's int8 REVERSE_V2
    kernel mis-scaled its output (measured: errors of 18 quantization steps), a gather copies
    int8 values as they are."""
    return tf.gather(x, tf.range(x.shape[0] - 1, -1, -1))


def _time_aligned(x, reversed_columns):
    """`x` `(T, N, C)` with the columns marked in `reversed_columns` (`C` bools) reversed in time:
    one gather and, when only some columns are marked, one select."""
    if not any(reversed_columns):
        return x
    flipped = _reverse_time(x)
    if all(reversed_columns):
        return flipped
    return tf.where(tf.constant(reversed_columns), flipped, x)


def _steps(x):
    """The `T` slices `(N, C)` of `x` `(T, N, C)`, by one split: TFLite's GPU delegate takes
    SPLIT but not UNPACK (`tf.unstack`)."""
    return tf.split(tf.reshape(x, [-1, x.shape[-1]]), x.shape[0], axis=0)


def unrolled_gru(sequence, weights, reverse):
    """`S` GRUs over one time-major sequence as one unrolled recurrence with a shared state.

    Args:
        sequence: float32 `(T, N, D)` with a static `T`, read by every GRU.
        weights: `S` tuples `(kernel (D, 3U), recurrent_kernel (U, 3U), bias (2, 3U))`, as
            Keras' `GRUCell` stores them.
        reverse: `S` bools: whether each GRU runs from time `T-1` down to 0.

    Returns:
        float32 `(T, N, S*U)`: the GRUs' hidden states side by side, in time order.
    """
    steps = sequence.shape[0]
    if steps is None:
        raise ValueError(
            "the unrolled GRU needs a static number of steps (the ReNet layer's input must have a "
            "static height and width); build the model for a fixed input size.")
    units = weights[0][1].shape[0]
    width = len(weights) * units

    def gate_major(tensors):
        """`[z_1..z_S, r_1..r_S, n_1..n_S]` from per-direction `[z_s, r_s, n_s]` (last axis)."""
        parts = [tf.split(tensor, 3, axis=-1) for tensor in tensors]
        return tf.concat([part[gate] for gate in range(3) for part in parts], axis=-1)

    # Every direction's input projection of every step in one product. The z and r gates add
    # the input and recurrent biases alike: both are folded in here.
    kernel = gate_major([k for k, _, _ in weights])
    bias = gate_major([b[0] + tf.concat([b[1, :2 * units], tf.zeros([units])], axis=0) for _, _, b in weights])
    shape = tf.shape(sequence)
    projected = tf.matmul(tf.reshape(sequence, [-1, sequence.shape[-1]]), kernel) + bias
    projected = tf.reshape(projected, tf.stack([steps, shape[1], 3 * width]))
    # Step t of a reversed direction reads time T-1-t.
    projected = _time_aligned(projected, [rev for _ in range(3) for rev in reverse for _ in range(units)])
    # A step adds [x_z, x_r, b_n] to the recurrent product h @ [R_z, R_r, R_n] in one op: the
    # candidate's recurrent bias rides on the step's input (the projection there times 0, plus
    # b_n), not on the product, whose int8 fully connected op would get a per-channel int32
    # copy of its bias at every step.
    keep_zr = tf.concat([tf.ones([2 * width]), tf.zeros([width])], axis=0)
    bias_n = tf.concat([tf.zeros([2 * width])] + [b[1, 2 * units:] for _, _, b in weights], axis=0)
    step_gates = _steps(projected * keep_zr + bias_n)
    step_n = _steps(projected[..., 2 * width:])
    recurrent_kernel = tf.concat(
        [_block_diagonal([tf.split(r, 3, axis=-1)[gate] for _, r, _ in weights]) for gate in range(3)], axis=1)

    states = []
    h = None
    for t in range(steps):
        # Step 0 starts from a zero state: no recurrent product.
        gates = step_gates[t] if h is None else step_gates[t] + tf.matmul(h, recurrent_kernel)
        z, r, recurrent_n = tf.split(gates, 3, axis=-1)
        z, r = tf.sigmoid(z), tf.sigmoid(r)
        n = tf.tanh(step_n[t] + r * recurrent_n)
        h = n - z * n if h is None else n + z * (h - n)
        h.set_shape([None, width])
        states.append(h)
    return _time_aligned(tf.stack(states), [rev for rev in reverse for _ in range(units)])


def unrolled_bidirectional_gru(sequences, forward_weights, backward_weights, stacked=False):
    """`reseg_tf.layers.fast_rnn.bidirectional_gru`'s contract (float32), statically unrolled.

    Args:
        sequences: `(T, N, D)` float32, time major, static `T`.
        forward_weights, backward_weights: `(kernel, recurrent_kernel, bias)` of each direction.
        stacked: the backward GRU reads the forward GRU's outputs (two recurrences one after the
            other) instead of `sequences` (one shared recurrence).

    Returns:
        `(T, N, 2U)` float32: forward outputs, then backward outputs, both in input order.
    """
    forward_weights = [tf.convert_to_tensor(w, tf.float32) for w in forward_weights]
    backward_weights = [tf.convert_to_tensor(w, tf.float32) for w in backward_weights]
    if stacked:
        forward = unrolled_gru(sequences, [forward_weights], [False])
        return tf.concat([forward, unrolled_gru(forward, [backward_weights], [True])], axis=-1)
    return unrolled_gru(sequences, [forward_weights, backward_weights], [False, True])
