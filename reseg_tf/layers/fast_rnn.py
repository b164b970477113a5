"""A CPU-friendly bidirectional GRU with the exact maths and variables of the Keras (cuDNN) GRU.

Keras runs a GRU on the CPU one time step at a time, projecting the step's input inside the
loop, and runs the two directions of a bidirectional sweep one after the other. Here:

- the input projections of all time steps (and both directions) are one large matmul before
  the loop, so the loop only holds the small recurrent matmul;
- both directions run in the same loop: the backward direction reads its time-reversed input,
  so direction `s` is an extra leading axis of every loop tensor and the recurrent matmul is
  one batched matmul;
- tensors are time major `(T, S, N, features)`, so a step reads and writes contiguous slices;
- the gradient is written by hand (`tf.custom_gradient`): the backward loop holds only the
  elementwise gate algebra and one batched matmul per step; the weight gradients are single
  large matmuls after the loop, instead of autodiff's per-step accumulations;
- `matmul_dtype="bfloat16"` runs the matmuls in bfloat16 (oneDNN AVX512_BF16 / AMX) with
  float32 state, gates and accumulation.

The GRU is Keras' `reset_after=True` one with gate order (z, r, h):

    x_proj = x @ kernel + bias[0];  h_proj = h @ recurrent_kernel + bias[1]
    z = sigmoid(x_z + h_z);  r = sigmoid(x_r + h_r);  c = tanh(x_h + r * h_h)
    h = z * h_prev + (1 - z) * c
"""
import tensorflow as tf

MATMUL_DTYPES = ("float32", "bfloat16")


def _matmul(a, b, matmul_dtype, **kwargs):
    if matmul_dtype == "float32":
        return tf.matmul(a, b, **kwargs)
    product = tf.matmul(tf.cast(a, matmul_dtype), tf.cast(b, matmul_dtype), **kwargs)
    return tf.cast(product, tf.float32)


def _tensor_array(steps, element_shape):
    return tf.TensorArray(tf.float32, size=steps, element_shape=element_shape)


# The elementwise gate algebra of one step, forward and backward. XLA fuses each into one
# kernel (instead of ~12 TF ops, each a pass over memory), while the matmuls stay on oneDNN,
# which is faster than XLA's CPU dot here.
def _gates(x_proj, h_matmul, recurrent_bias, h):
    """Returns the new state from `x_proj = x @ W + b_x` and `h_matmul = h @ R`, `(S, N, 3U)`."""
    units = h.shape[-1]
    h_proj = tf.cast(h_matmul, tf.float32) + recurrent_bias[:, None, :]
    zr = tf.sigmoid(x_proj[..., : 2 * units] + h_proj[..., : 2 * units])
    z, r = zr[..., :units], zr[..., units:]
    c = tf.tanh(x_proj[..., 2 * units:] + r * h_proj[..., 2 * units:])
    return c + z * (h - c)


def _gates_grad(d_h, x_proj, h_matmul, recurrent_bias, h_prev):
    """Backward of `_gates` (gates recomputed): returns d(x_proj), d(h_proj) and d(h_prev)
    without the recurrent matmul's part."""
    units = h_prev.shape[-1]
    h_proj = tf.cast(h_matmul, tf.float32) + recurrent_bias[:, None, :]
    zr = tf.sigmoid(x_proj[..., : 2 * units] + h_proj[..., : 2 * units])
    z, r = zr[..., :units], zr[..., units:]
    h_h = h_proj[..., 2 * units:]
    c = tf.tanh(x_proj[..., 2 * units:] + r * h_h)
    d_c = d_h * (1.0 - z) * (1.0 - c * c)
    d_zr = tf.concat([d_h * (h_prev - c), d_c * h_h], axis=-1) * zr * (1.0 - zr)
    return (tf.concat([d_zr, d_c], axis=-1), tf.concat([d_zr, d_c * r], axis=-1), d_h * z)


_FUSED = {}


def _fused(function, jit_compile):
    if not jit_compile:
        return function
    if function not in _FUSED:
        _FUSED[function] = tf.function(function, jit_compile=True, autograph=False)
    return _FUSED[function]


def _raw_matmul(a, b, matmul_dtype, **kwargs):
    """`a @ b` in `matmul_dtype` (the result stays in it: `_gates` casts it)."""
    return tf.matmul(tf.cast(a, matmul_dtype), b, **kwargs)


def _forward_loop(input_proj, kernel, recurrent_bias, matmul_dtype, jit_compile):
    """The GRU steps: returns the states and the recurrent matmuls `h @ R`, `(T, S, N, .)`."""
    steps, lines = tf.shape(input_proj)[0], tf.shape(input_proj)[2]
    directions, units = kernel.shape[0], kernel.shape[1]
    state_shape = tf.TensorShape([directions, input_proj.shape[2], units])
    gates = _fused(_gates, jit_compile)

    def step(t, h, states, h_matmuls):
        h_matmul = _raw_matmul(h, kernel, matmul_dtype)
        h = gates(input_proj[t], h_matmul, recurrent_bias, h)
        h.set_shape(state_shape)
        return t + 1, h, states.write(t, h), h_matmuls.write(t, h_matmul)

    h0 = tf.zeros(tf.stack([directions, lines, units]), tf.float32)
    h_matmuls = tf.TensorArray(kernel.dtype, size=steps,
                               element_shape=state_shape[:-1].concatenate([3 * units]))
    _, _, states, h_matmuls = tf.while_loop(
        lambda t, *_: t < steps, step, (0, h0, _tensor_array(steps, state_shape), h_matmuls),
        parallel_iterations=1)
    return states.stack(), h_matmuls.stack()


def _backward_loop(d_states, input_proj, h_matmuls, recurrent_bias, previous, kernel,
                   matmul_dtype, jit_compile):
    """Backpropagates through the GRU steps: returns d(input_proj), d(h_proj), `(T, S, N, 3U)`."""
    steps = tf.shape(d_states)[0]
    state_shape = d_states.shape[1:]
    proj_shape = state_shape[:-1].concatenate([3 * kernel.shape[1]])
    gates_grad = _fused(_gates_grad, jit_compile)

    def back_step(t, d_h_carry, d_input_projs, d_hidden_projs):
        d_input_proj, d_hidden_proj, d_h_direct = gates_grad(
            d_states[t] + d_h_carry, input_proj[t], h_matmuls[t], recurrent_bias, previous[t])
        d_h_carry = d_h_direct + tf.cast(
            _raw_matmul(d_hidden_proj, kernel, matmul_dtype, transpose_b=True), tf.float32)
        d_h_carry.set_shape(state_shape)
        return (t - 1, d_h_carry, d_input_projs.write(t, d_input_proj),
                d_hidden_projs.write(t, d_hidden_proj))

    arrays = (_tensor_array(steps, proj_shape), _tensor_array(steps, proj_shape))
    _, _, *arrays = tf.while_loop(lambda t, *_: t >= 0, back_step,
                                  (steps - 1, tf.zeros_like(d_states[0]), *arrays),
                                  parallel_iterations=1)
    return tuple(array.stack() for array in arrays)


def _gru_recurrence(input_proj, recurrent_kernel, recurrent_bias, matmul_dtype, jit_compile=True):
    """Runs the recurrence of `S` independent GRUs over `T` steps.

    Args:
        input_proj: `(T, S, N, 3U)` float32, `x @ kernel + bias[0]` for each direction, in the
            order each direction reads its steps.
        recurrent_kernel: `(S, U, 3U)` float32.
        recurrent_bias: `(S, 3U)` float32.
        matmul_dtype: `"float32"` or `"bfloat16"`.
        jit_compile: XLA-fuse the elementwise part of each step.

    Returns:
        `(T, S, N, U)` hidden states, in the same step order as `input_proj`.
    """

    @tf.custom_gradient
    def recurrence(input_proj, recurrent_kernel, recurrent_bias):
        directions, units = recurrent_kernel.shape[0], recurrent_kernel.shape[1]
        kernel = tf.cast(recurrent_kernel, matmul_dtype)
        states, h_matmuls = _forward_loop(input_proj, kernel, recurrent_bias, matmul_dtype,
                                          jit_compile)

        def grad(d_states):
            previous = tf.concat([tf.zeros_like(states[:1]), states[:-1]], axis=0)
            d_input_projs, d_hidden_projs = _backward_loop(
                d_states, input_proj, h_matmuls, recurrent_bias, previous, kernel, matmul_dtype,
                jit_compile)
            # Weight gradients: one (U x T*N) @ (T*N x 3U) matmul per direction.
            prev_by_direction = tf.reshape(tf.transpose(previous, (1, 0, 2, 3)), (directions, -1, units))
            d_by_direction = tf.reshape(
                tf.transpose(d_hidden_projs, (1, 0, 2, 3)), (directions, -1, 3 * units)
            )
            d_kernel = _matmul(prev_by_direction, d_by_direction, matmul_dtype, transpose_a=True)
            d_bias = tf.reduce_sum(d_by_direction, axis=1)
            return d_input_projs, d_kernel, d_bias

        return states, grad

    return recurrence(input_proj, recurrent_kernel, recurrent_bias)


def _project(sequences, kernel, input_bias, matmul_dtype):
    """`(T, N, D) -> (T, N, 3U)` input projections of all steps in one matmul."""
    shape = tf.shape(sequences)
    flat = tf.reshape(sequences, (-1, sequences.shape[-1]))
    proj = _matmul(flat, kernel, matmul_dtype) + input_bias
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

    if stacked:
        forward_states = _single_gru(sequences, forward_weights, matmul_dtype, jit_compile)
        backward_states = _single_gru(tf.reverse(forward_states, axis=[0]), backward_weights,
                                      matmul_dtype, jit_compile)
        return tf.concat([forward_states, tf.reverse(backward_states, axis=[0])], axis=-1)

    # The backward direction reads the steps in reverse order.
    proj = tf.stack([
        _project(sequences, forward_weights[0], forward_weights[2][0], matmul_dtype),
        _project(tf.reverse(sequences, axis=[0]), backward_weights[0], backward_weights[2][0], matmul_dtype),
    ], axis=1)
    recurrent_kernels = tf.stack([forward_weights[1], backward_weights[1]])
    recurrent_biases = tf.stack([forward_weights[2][1], backward_weights[2][1]])
    states = _gru_recurrence(proj, recurrent_kernels, recurrent_biases, matmul_dtype, jit_compile)
    # unstack, not [:, s]: the gradient of a strided slice scatters into a zero tensor.
    forward_states, backward_states = tf.unstack(states, axis=1)
    return tf.concat([forward_states, tf.reverse(backward_states, axis=[0])], axis=-1)


def _single_gru(sequences, weights, matmul_dtype, jit_compile):
    kernel, recurrent_kernel, bias = weights
    proj = tf.expand_dims(_project(sequences, kernel, bias[0], matmul_dtype), 1)
    states = _gru_recurrence(proj, recurrent_kernel[None], bias[1][None], matmul_dtype, jit_compile)
    return tf.squeeze(states, 1)
