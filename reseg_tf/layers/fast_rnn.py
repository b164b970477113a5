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


def _gru_recurrence(input_proj, recurrent_kernel, recurrent_bias, matmul_dtype):
    """Runs the recurrence of `S` independent GRUs over `T` steps.

    Args:
        input_proj: `(T, S, N, 3U)` float32, `x @ kernel + bias[0]` for each direction, in the
            order each direction reads its steps.
        recurrent_kernel: `(S, U, 3U)` float32.
        recurrent_bias: `(S, 3U)` float32.
        matmul_dtype: `"float32"` or `"bfloat16"`.

    Returns:
        `(T, S, N, U)` hidden states, in the same step order as `input_proj`.
    """

    @tf.custom_gradient
    def recurrence(input_proj, recurrent_kernel, recurrent_bias):
        steps = tf.shape(input_proj)[0]
        directions, units = recurrent_kernel.shape[0], recurrent_kernel.shape[1]
        lines = tf.shape(input_proj)[2]
        state_shape = tf.TensorShape([directions, input_proj.shape[2], units])
        bias = recurrent_bias[:, None, :]
        kernel = recurrent_kernel if matmul_dtype == "float32" else tf.cast(recurrent_kernel, matmul_dtype)

        def array(shape):
            return tf.TensorArray(tf.float32, size=steps, element_shape=shape)

        def step(t, h, states, gates, candidates, hidden_projs):
            x_proj = input_proj[t]
            h_proj = _matmul(h, kernel, matmul_dtype) + bias
            zr = tf.sigmoid(x_proj[..., : 2 * units] + h_proj[..., : 2 * units])
            z, r = zr[..., :units], zr[..., units:]
            h_h = h_proj[..., 2 * units:]
            c = tf.tanh(x_proj[..., 2 * units:] + r * h_h)
            h = c + z * (h - c)
            h.set_shape(state_shape)
            return (t + 1, h, states.write(t, h), gates.write(t, zr), candidates.write(t, c),
                    hidden_projs.write(t, h_h))

        h0 = tf.zeros(tf.stack([directions, lines, units]), tf.float32)
        gate_shape = state_shape[:-1].concatenate([2 * units])
        _, _, states, gates, candidates, hidden_projs = tf.while_loop(
            lambda t, *_: t < steps,
            step,
            (0, h0, array(state_shape), array(gate_shape), array(state_shape), array(state_shape)),
            parallel_iterations=1,
        )
        states, gates = states.stack(), gates.stack()
        candidates, hidden_projs = candidates.stack(), hidden_projs.stack()

        def grad(d_states):
            previous = tf.concat([h0[None], states[:-1]], axis=0)
            kernel_t = tf.transpose(kernel, (0, 2, 1))

            def back_step(t, d_h_carry, d_input_projs, d_hidden_projs):
                d_h = d_states[t] + d_h_carry
                zr, c, h_h = gates[t], candidates[t], hidden_projs[t]
                z, r = zr[..., :units], zr[..., units:]
                d_z = d_h * (previous[t] - c)
                d_c = d_h * (1.0 - z) * (1.0 - c * c)
                d_zr = tf.concat([d_z, d_c * h_h], axis=-1) * zr * (1.0 - zr)
                d_input_proj = tf.concat([d_zr, d_c], axis=-1)
                d_hidden_proj = tf.concat([d_zr, d_c * r], axis=-1)
                d_h_carry = d_h * z + _matmul(d_hidden_proj, kernel_t, matmul_dtype)
                d_h_carry.set_shape(state_shape)
                return (t - 1, d_h_carry, d_input_projs.write(t, d_input_proj),
                        d_hidden_projs.write(t, d_hidden_proj))

            proj_shape = state_shape[:-1].concatenate([3 * units])
            _, _, d_input_projs, d_hidden_projs = tf.while_loop(
                lambda t, *_: t >= 0,
                back_step,
                (steps - 1, tf.zeros_like(h0), array(proj_shape), array(proj_shape)),
                parallel_iterations=1,
            )
            d_input_projs, d_hidden_projs = d_input_projs.stack(), d_hidden_projs.stack()
            # Weight gradients: one (U x T*N) @ (T*N x 3U) matmul per direction.
            prev_by_direction = tf.reshape(tf.transpose(previous, (1, 0, 2, 3)), (directions, -1, units))
            d_by_direction = tf.reshape(
                tf.transpose(d_hidden_projs, (1, 0, 2, 3)), (directions, -1, 3 * units)
            )
            d_kernel = _matmul(prev_by_direction, d_by_direction, matmul_dtype, transpose_a=True)
            d_bias = tf.reduce_sum(d_hidden_projs, axis=(0, 2))
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
                      matmul_dtype="float32"):
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

    Returns:
        `(T, N, 2U)` float32: forward outputs, then backward outputs, both in input order.
    """
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"`matmul_dtype` must be one of {MATMUL_DTYPES}, got {matmul_dtype!r}.")

    forward_weights = [tf.convert_to_tensor(w, tf.float32) for w in forward_weights]
    backward_weights = [tf.convert_to_tensor(w, tf.float32) for w in backward_weights]

    if stacked:
        forward_states = _single_gru(sequences, forward_weights, matmul_dtype)
        backward_states = _single_gru(tf.reverse(forward_states, axis=[0]), backward_weights, matmul_dtype)
        return tf.concat([forward_states, tf.reverse(backward_states, axis=[0])], axis=-1)

    # The backward direction reads the steps in reverse order.
    proj = tf.stack([
        _project(sequences, forward_weights[0], forward_weights[2][0], matmul_dtype),
        _project(tf.reverse(sequences, axis=[0]), backward_weights[0], backward_weights[2][0], matmul_dtype),
    ], axis=1)
    recurrent_kernels = tf.stack([forward_weights[1], backward_weights[1]])
    recurrent_biases = tf.stack([forward_weights[2][1], backward_weights[2][1]])
    states = _gru_recurrence(proj, recurrent_kernels, recurrent_biases, matmul_dtype)
    return tf.concat([states[:, 0], tf.reverse(states[:, 1], axis=[0])], axis=-1)


def _single_gru(sequences, weights, matmul_dtype):
    kernel, recurrent_kernel, bias = weights
    proj = _project(sequences, kernel, bias[0], matmul_dtype)[:, None]
    return _gru_recurrence(proj, recurrent_kernel[None], bias[1][None], matmul_dtype)[:, 0]
