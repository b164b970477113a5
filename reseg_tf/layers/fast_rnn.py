"""A CPU-friendly bidirectional GRU with the exact maths and variables of the Keras (cuDNN) GRU.

Keras runs a GRU on the CPU one time step at a time, projecting the step's input inside the
loop, and runs the two directions of a bidirectional sweep one after the other. Here:

- the input projections of all time steps are one large matmul per direction before the loop,
  so the loop only holds the small recurrent matmul;
- the backward direction reads and writes time `T-1-t` at step `t`: nothing is reversed in
  memory. `gru_recurrence` can run several directions in one loop (direction = leading axis,
  one batched matmul); `bidirectional_gru` runs two independent loops instead, which TF runs
  concurrently;
- tensors are time major `(T, N, features)`, so a step reads and writes contiguous slices;
- the gradient is written by hand (`tf.custom_gradient`): the backward loop holds the gate
  algebra, the recurrent matmul and the recurrent-weight gradient's accumulation; the input
  projections' gradients are large matmuls after it;
- the elementwise gate algebra of a step (forward, and backward with the gates recomputed
  from the saved `h @ R`) is one XLA-compiled function, one fused kernel instead of ~15 TF ops;
  the loop and the matmuls stay TF/oneDNN ops (XLA's CPU dot was slower here). XLA compiles
  once per distinct (directions, lines) shape, so a new image size costs one short compile;
- `matmul_dtype="bfloat16"` runs the matmuls in bfloat16 (oneDNN AVX512_BF16 / AMX) with
  float32 state and gates (products are rounded to bfloat16: ~1e-2 relative error).

TFLite: with a static input signature the loop converts to the builtin WHILE op, the fused
functions are inlined, and the model needs no Flex ops (tests/test_fast_renet.py converts one).

The GRU is Keras' `reset_after=True` one with gate order (z, r, h):

    x_proj = x @ kernel + bias[0];  h_proj = h @ recurrent_kernel + bias[1]
    z = sigmoid(x_z + h_z);  r = sigmoid(x_r + h_r);  c = tanh(x_h + r * h_h)
    h = z * h_prev + (1 - z) * c
"""
import tensorflow as tf

MATMUL_DTYPES = ("float32", "bfloat16")


# The elementwise part of one step, forward and backward. XLA fuses each into one kernel
# (instead of ~15 TF ops, each a pass over memory); the loop and the matmuls stay TF/oneDNN ops,
# which were faster here than XLA's CPU dot. `x_projs` holds one `(N, 3U)` slice per direction.
def _gates(x_projs, h_matmul, input_bias, recurrent_bias, h, matmul_dtype):
    """The new state `(S, N, U)` (float32 and in `matmul_dtype`) and its per-direction slices."""
    units = h.shape[-1]
    x_proj = tf.cast(tf.stack(x_projs), tf.float32) + input_bias[:, None, :]
    h_proj = tf.cast(h_matmul, tf.float32) + recurrent_bias[:, None, :]
    zr = tf.sigmoid(x_proj[..., : 2 * units] + h_proj[..., : 2 * units])
    z, r = zr[..., :units], zr[..., units:]
    c = tf.tanh(x_proj[..., 2 * units:] + r * h_proj[..., 2 * units:])
    h = c + z * (h - c)
    return h, tf.cast(h, matmul_dtype), tuple(tf.unstack(h))


def _gates_grad(d_outputs, d_h_direct, d_h_matmul, x_projs, h_matmul, input_bias, recurrent_bias,
                h_prevs, first_step, d_biases, matmul_dtype):
    """Backward of `_gates` with the gates recomputed. Returns d(x_proj) per direction,
    d(h_proj) and the previous state (both in `matmul_dtype`, for the matmuls), the part of
    d(h_prev) that bypasses the recurrent matmul, and the updated (input, recurrent) bias
    gradients (summed here, where it is cheap, rather than by a reduction over all steps)."""
    units = h_prevs[0].shape[-1]
    d_h = tf.stack(d_outputs) + d_h_direct + tf.cast(d_h_matmul, tf.float32)
    h_prev = tf.where(first_step, tf.zeros_like(d_h), tf.stack(h_prevs))
    x_proj = tf.cast(tf.stack(x_projs), tf.float32) + input_bias[:, None, :]
    h_proj = tf.cast(h_matmul, tf.float32) + recurrent_bias[:, None, :]
    zr = tf.sigmoid(x_proj[..., : 2 * units] + h_proj[..., : 2 * units])
    z, r = zr[..., :units], zr[..., units:]
    h_h = h_proj[..., 2 * units:]
    c = tf.tanh(x_proj[..., 2 * units:] + r * h_h)
    d_c = d_h * (1.0 - z) * (1.0 - c * c)
    d_zr = tf.concat([d_h * (h_prev - c), d_c * h_h], axis=-1) * zr * (1.0 - zr)
    d_hidden_proj = tf.concat([d_zr, d_c * r], axis=-1)
    d_input_proj = tf.concat([d_zr, d_c], axis=-1)
    d_biases = d_biases + tf.stack([tf.reduce_sum(d_input_proj, axis=1),
                                    tf.reduce_sum(d_hidden_proj, axis=1)], axis=1)
    return (tuple(tf.unstack(tf.cast(d_input_proj, matmul_dtype))), tf.cast(d_hidden_proj, matmul_dtype),
            tf.cast(h_prev, matmul_dtype), d_h * z, d_biases)


_FUSED = {}


def _fused(function, jit_compile):
    if not jit_compile:
        return function
    if function not in _FUSED:
        _FUSED[function] = tf.function(function, jit_compile=True, autograph=False)
    return _FUSED[function]


def _time_index(step, steps, reverse):
    return steps - 1 - step if reverse else step


def gru_recurrence(projs, reverse, recurrent_kernel, biases, matmul_dtype, jit_compile):
    """Runs `S` independent GRUs over `T` steps, all in one loop.

    Args:
        projs: `S` tensors `(T, N, 3U)` in `matmul_dtype`, `x @ kernel` of each direction (no
            bias), in time order.
        reverse: `S` bools: whether each direction runs from time `T-1` down to 0.
        recurrent_kernel: `(S, U, 3U)` float32.
        biases: `(S, 2, 3U)` float32, the Keras GRU biases (input, recurrent) of each direction.
        matmul_dtype: `"float32"` or `"bfloat16"`.
        jit_compile: XLA-fuse the elementwise part of each step.

    Returns:
        `S` tensors `(T, N, U)`: each direction's hidden states, in time order.
    """
    directions = len(projs)
    gates, gates_grad = _fused(_gates, jit_compile), _fused(_gates_grad, jit_compile)

    @tf.custom_gradient
    def recurrence(*args):
        projs, (recurrent_kernel, biases) = args[:directions], args[directions:]
        input_bias, recurrent_bias = biases[:, 0], biases[:, 1]
        steps, lines = tf.shape(projs[0])[0], tf.shape(projs[0])[1]
        units = recurrent_kernel.shape[1]
        kernel = tf.cast(recurrent_kernel, matmul_dtype)
        line_shape = projs[0].shape[1:2]
        state_shape = tf.TensorShape([directions]).concatenate(line_shape).concatenate([units])

        def array(dtype, element_shape):
            return tf.TensorArray(dtype, size=steps, element_shape=element_shape)

        def step(t, h, h_for_matmul, states, h_matmuls):
            x_projs = tuple(proj[_time_index(t, steps, rev)] for proj, rev in zip(projs, reverse))
            h_matmul = tf.matmul(h_for_matmul, kernel)
            h, h_for_matmul, per_direction = gates(x_projs, h_matmul, input_bias, recurrent_bias, h,
                                                   matmul_dtype)
            h.set_shape(state_shape)
            h_for_matmul.set_shape(state_shape)
            states = tuple(array.write(_time_index(t, steps, rev), state)
                           for array, state, rev in zip(states, per_direction, reverse))
            return t + 1, h, h_for_matmul, states, h_matmuls.write(t, h_matmul)

        h0 = tf.zeros(tf.stack([directions, lines, units]), tf.float32)
        states = tuple(array(tf.float32, line_shape.concatenate([units])) for _ in projs)
        h_matmuls = array(matmul_dtype, state_shape[:-1].concatenate([3 * units]))
        _, _, _, states, h_matmuls = tf.while_loop(
            lambda t, *_: t < steps, step,
            (0, h0, tf.cast(h0, matmul_dtype), states, h_matmuls), parallel_iterations=1)
        states = tuple(array.stack() for array in states)
        h_matmuls = h_matmuls.stack()

        def grad(*d_states):
            d_states = [tf.zeros_like(s) if d is None else d for d, s in zip(d_states, states)]

            def back_step(t, d_h_direct, d_h_matmul, d_kernel, d_biases, d_projs):
                times = [_time_index(t, steps, rev) for rev in reverse]
                # The state before step t: time t-1 going forward, t+1 going backward.
                prev_times = [tf.clip_by_value(_time_index(t - 1, steps, rev), 0, steps - 1)
                              for rev in reverse]
                d_input_projs, d_hidden_proj, h_prev, d_h_direct, d_biases = gates_grad(
                    tuple(d[i] for d, i in zip(d_states, times)), d_h_direct, d_h_matmul,
                    tuple(p[i] for p, i in zip(projs, times)), h_matmuls[t], input_bias,
                    recurrent_bias, tuple(s[i] for s, i in zip(states, prev_times)),
                    tf.equal(t, 0), d_biases, matmul_dtype)
                d_h_direct.set_shape(state_shape)
                d_h_matmul = tf.matmul(d_hidden_proj, kernel, transpose_b=True)
                d_kernel += tf.cast(tf.matmul(h_prev, d_hidden_proj, transpose_a=True), tf.float32)
                d_projs = tuple(array.write(i, d) for array, i, d in zip(d_projs, times, d_input_projs))
                return t - 1, d_h_direct, d_h_matmul, d_kernel, d_biases, d_projs

            d_projs = tuple(array(matmul_dtype, line_shape.concatenate([3 * units])) for _ in projs)
            zeros = tf.zeros_like(h0)
            _, _, _, d_kernel, d_biases, d_projs = tf.while_loop(
                lambda t, *_: t >= 0, back_step,
                (steps - 1, zeros, tf.cast(zeros, matmul_dtype), tf.zeros_like(recurrent_kernel),
                 tf.zeros_like(biases), d_projs),
                parallel_iterations=1)
            return (*(array.stack() for array in d_projs), d_kernel, d_biases)

        return states, grad

    return recurrence(*projs, recurrent_kernel, biases)


def _project(sequences, kernel, matmul_dtype):
    """`(T, N, D) -> (T, N, 3U)` input projections of all steps in one matmul, in `matmul_dtype`
    (the bias is added in the loop)."""
    shape = tf.shape(sequences)
    flat = tf.reshape(tf.cast(sequences, matmul_dtype), (-1, sequences.shape[-1]))
    proj = tf.matmul(flat, tf.cast(kernel, matmul_dtype))
    return tf.reshape(proj, tf.stack([shape[0], shape[1], kernel.shape[-1]]))


def bidirectional_gru(sequences, forward_weights, backward_weights, stacked=False,
                      matmul_dtype="float32", jit_compile=True):
    """A forward and a backward GRU over time-major sequences, outputs concatenated.

    Equals Keras `GRU(return_sequences=True)` (forward) and `GRU(return_sequences=True,
    go_backwards=True)` whose output is flipped back to input order (backward).

    Args:
        sequences: `(T, N, D)` float32, time major.
        forward_weights, backward_weights: `(kernel (D, 3U), recurrent_kernel (U, 3U),
            bias (2, 3U))` of each direction, as stored by Keras' `GRUCell`.
        stacked: if True the backward GRU reads the forward GRU's outputs instead of
            `sequences` (its kernel is then `(U, 3U)`).
        matmul_dtype: `"float32"` or `"bfloat16"` (faster where the CPU has bf16 matmuls).
        jit_compile: XLA-fuse the elementwise gate algebra of each step (the loop and the
            matmuls stay TF ops).

    Returns:
        `(T, N, 2U)` float32: forward outputs, then backward outputs, both in input order.
    """
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"`matmul_dtype` must be one of {MATMUL_DTYPES}, got {matmul_dtype!r}.")

    forward_weights = [tf.convert_to_tensor(w, tf.float32) for w in forward_weights]
    backward_weights = [tf.convert_to_tensor(w, tf.float32) for w in backward_weights]

    def run(inputs_and_weights, reverse):
        projs = [_project(inputs, kernel, matmul_dtype) for inputs, (kernel, _, _) in inputs_and_weights]
        recurrent_kernels = tf.stack([weights[1] for _, weights in inputs_and_weights])
        biases = tf.stack([weights[2] for _, weights in inputs_and_weights])
        return gru_recurrence(projs, reverse, recurrent_kernels, biases, matmul_dtype, jit_compile)

    if stacked:
        (forward_states,) = run([(sequences, forward_weights)], (False,))
        (backward_states,) = run([(forward_states, backward_weights)], (True,))
    else:
        # Two independent loops, which TF runs concurrently (one per core here); one loop over
        # both directions (batched matmul) measured as fast under load and slower in best-case
        # times, where its single-threaded fused kernels leave a core idle.
        sequences = tf.cast(sequences, matmul_dtype)  # once for both directions
        (forward_states,) = run([(sequences, forward_weights)], (False,))
        (backward_states,) = run([(sequences, backward_weights)], (True,))
    return tf.concat([forward_states, backward_states], axis=-1)
