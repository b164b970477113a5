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
  the input bias and the recurrent z/r biases folded in;
- the directions that read the same sequence share one state `(N, S*U)`, so one step of all of
  them is two fully connected products with block-diagonal recurrent kernels (z and r together,
  then the candidate), one sigmoid, one split, one tanh and eight elementwise ops: 13 operators
  per step for both directions. The candidate's recurrent bias is applied as `r * b` rather
  than as the product's bias: an int8 converter gives a fully connected op's bias a
  per-channel int32 copy, with its own quantization parameters, at every step;
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


def unrolled_gru(sequences, weights, reverse):
    """`S` GRUs over time-major sequences as one unrolled recurrence with a shared state.

    Args:
        sequences: `S` float32 tensors `(T, N, D_s)` with the same static `T` and the same `N`
            (the same tensor may be passed for several directions).
        weights: `S` tuples `(kernel (D_s, 3U), recurrent_kernel (U, 3U), bias (2, 3U))`, as
            Keras' `GRUCell` stores them.
        reverse: `S` bools: whether each GRU runs from time `T-1` down to 0.

    Returns:
        `S` float32 tensors `(T, N, U)`: each GRU's hidden states, in time order.
    """
    steps = sequences[0].shape[0]
    if steps is None:
        raise ValueError(
            "the unrolled GRU needs a static number of steps (the ReNet layer's input must have a "
            "static height and width); build the model for a fixed input size.")
    units = weights[0][1].shape[0]
    # Per gate (z, r, candidate n), one entry per direction.
    x_z, x_r, x_n, r_z, r_r, r_n, b_n = [], [], [], [], [], [], []
    for seq, (kernel, recurrent_kernel, bias), rev in zip(sequences, weights, reverse):
        shape = tf.shape(seq)
        flat = tf.reshape(seq, [-1, seq.shape[-1]])
        # The z and r gates add the input and recurrent biases alike: fold both in here.
        folded = bias[0] + tf.concat([bias[1, :2 * units], tf.zeros([units])], axis=0)
        proj = tf.reshape(tf.matmul(flat, kernel) + folded, tf.stack([steps, shape[1], 3 * units]))
        if rev:
            proj = _reverse_time(proj)
        x_z.append(proj[..., :units])
        x_r.append(proj[..., units:2 * units])
        x_n.append(proj[..., 2 * units:])
        r_z.append(recurrent_kernel[:, :units])
        r_r.append(recurrent_kernel[:, units:2 * units])
        r_n.append(recurrent_kernel[:, 2 * units:])
        b_n.append(bias[1, 2 * units:])
    directions = len(weights)
    width = directions * units
    # Gate-major layout, aligned with the state [h_1, ..., h_S]: zr = [z_1..z_S, r_1..r_S].
    inputs_zr = tf.unstack(tf.concat(x_z + x_r, axis=-1), num=steps)
    inputs_n = tf.unstack(tf.concat(x_n, axis=-1), num=steps)
    # Block-diagonal recurrent kernels in the same layout: z columns of every direction, then r.
    kernel_zr = tf.concat([_block_diagonal(r_z), _block_diagonal(r_r)], axis=1)
    kernel_n = _block_diagonal(r_n)
    bias_n = tf.concat(b_n, axis=0)

    states = []
    h = None
    for t in range(steps):
        if h is None:  # zero state: the recurrent products are just the biases
            z, r = tf.split(tf.sigmoid(inputs_zr[t]), 2, axis=-1)
            n = tf.tanh(inputs_n[t] + r * bias_n)
            h = n - z * n
        else:
            z, r = tf.split(tf.sigmoid(inputs_zr[t] + tf.matmul(h, kernel_zr)), 2, axis=-1)
            # r * (h @ R_n + b_n), written so that the bias is not the product's own bias: an
            # int8 fully connected op gets a per-channel int32 copy of its bias at every step.
            n = tf.tanh(inputs_n[t] + r * bias_n + r * tf.matmul(h, kernel_n))
            h = n + z * (h - n)
        h.set_shape([None, width])
        states.append(h)
    stacked = tf.stack(states)
    outputs = tf.split(stacked, directions, axis=-1)
    return [_reverse_time(out) if rev else out for out, rev in zip(outputs, reverse)]


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
        (forward,) = unrolled_gru([sequences], [forward_weights], [False])
        (backward,) = unrolled_gru([forward], [backward_weights], [True])
    else:
        forward, backward = unrolled_gru([sequences, sequences], [forward_weights, backward_weights],
                                         [False, True])
    return tf.concat([forward, backward], axis=-1)
