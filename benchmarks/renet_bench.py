"""Times one ReNet layer on the CPU: stock Keras bidirectional GRUs vs ReNetLayer's fast paths.

Prints one JSON line. All paths run in the same process, interleaved repeat by repeat, and the
medians are compared, because the machine is shared and its speed drifts.

Paths:
- `reference`: `keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True))` on
  the folded columns, then on the folded rows (the design card's shape), with the weights of
  the ReNetLayer copied in, so outputs are comparable. These are the Keras GRU layers that
  `ReNetLayer(implementation="keras")` runs.
- `fp32`: `ReNetLayer(implementation="fast")`.
- `bf16`: `ReNetLayer(implementation="fast_bf16")` (bfloat16 matmuls: fast only where the CPU
  has bf16 instructions, e.g. AVX512_BF16 or AMX; much slower elsewhere).

- `torch` (only when PyTorch is importable: `pip install -e ".[bench]"`): the same layer in
  PyTorch, built the way public PyTorch ReSeg ports build it: `nn.GRU(bidirectional=True)` over
  the folded columns, then over the folded rows, with the same weights (gate rows reordered from
  Keras' z, r, h to PyTorch's r, z, n), timed in the same loop. PyTorch is never a runtime or
  test dependency.

`fastest_mode` is the `implementation` whose path has the lowest fwd+bwd median in this run
(`fastest_mode_fwd`: lowest forward median); `speedup_*_fastest` and `max_rel_diff_fastest`
are that path's.

"fwd" is one call; "fwd_bwd" is one call plus the gradients of a loss with respect to the
layer's weights and its input (as in a ReNet layer that is not the first one). Speed-ups are
ratios of medians; `*_of_min` ones, of minimum times. GFLOP/s count the
matmuls only (input projections and recurrent products; fwd+bwd = 3x fwd). The relative
difference is `max|out - ref| / max|ref|` over the whole output.

`--profile` adds where the fp32 path's fwd+bwd time goes (`profile_*`), each part timed alone
on the layer's own shapes: the input projections (`x @ kernel` of the four GRUs and their two
gradient matmuls), the recurrences (both sweeps' loops, forward, and forward plus the hand-written
backward), and the rest (transposes, reshapes, concatenation: the layer's time minus the parts).
The recurrences' own matmuls (`h @ R` forward, `dh @ R^T` backward, and the recurrent kernel's
gradient) are counted in `profile_recurrence_gflops`. `profile_recurrence_matmuls_only_s` times
those matmuls alone in the same loops (no gate algebra, nothing saved): the recurrences' floor
with this machine's kernels. `profile_best_case_fwd_bwd_s` is the layer's time with its
recurrences at that floor and every other part as measured, and
`profile_best_case_speedup_vs_{reference,torch}` what that would give against the peers.

Usage: python benchmarks/renet_bench.py [--quick] [--repeats N] [--profile]
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from reseg_tf.layers import ReNetLayer  # noqa: E402

# The `ReNetLayer(implementation=...)` value each timed path stands for.
IMPLEMENTATION_OF_PATH = {"reference": "keras", "fp32": "fast", "bf16": "fast_bf16"}
FULL_SHAPE = dict(batch=5, height=90, width=120, channels=256, units=100)
QUICK_SHAPE = dict(batch=2, height=12, width=16, channels=32, units=16)


class StockReNet(keras.layers.Layer):
    """Reference ReNet layer (patch 1x1): Bidirectional GRUs on folded columns, then rows."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.columns = keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True))
        self.rows = keras.layers.Bidirectional(keras.layers.GRU(units, return_sequences=True))

    def build(self, input_shape):
        self.columns.build((None, None, input_shape[-1]))
        self.rows.build((None, None, 2 * self.units))

    def call(self, x):
        shape = tf.shape(x)
        batch, height, width = shape[0], shape[1], shape[2]
        columns = tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (-1, height, x.shape[-1]))
        y = tf.reshape(self.columns(columns), (batch, width, height, 2 * self.units))
        rows = tf.reshape(tf.transpose(y, (0, 2, 1, 3)), (-1, width, 2 * self.units))
        return tf.reshape(self.rows(rows), (batch, height, width, 2 * self.units))

    def copy_weights_from(self, renet):
        for bidirectional, (forward, backward) in ((self.columns, (renet.down, renet.up)),
                                                   (self.rows, (renet.right, renet.left))):
            bidirectional.forward_layer.set_weights(forward.get_weights())
            bidirectional.backward_layer.set_weights(backward.get_weights())


def torch_peer(renet, steps_input, cotangent):
    """`(forward, forward_backward, output)` of the PyTorch twin of a 1x1-patch `renet` layer,
    or None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None

    units = renet.units

    def gru_from(forward, backward):
        gru = torch.nn.GRU(forward.cell.kernel.shape[0], units, batch_first=True, bidirectional=True)
        with torch.no_grad():
            for suffix, rnn in (("", forward), ("_reverse", backward)):
                kernel, recurrent, bias = (np.asarray(w) for w in rnn.get_weights())
                # Keras gate columns (z, r, h) -> PyTorch gate rows (r, z, n).
                order = lambda m: np.concatenate([m[..., units:2 * units], m[..., :units], m[..., 2 * units:]], axis=-1)  # noqa: E731
                getattr(gru, f"weight_ih_l0{suffix}").copy_(torch.from_numpy(order(kernel).T.copy()))
                getattr(gru, f"weight_hh_l0{suffix}").copy_(torch.from_numpy(order(recurrent).T.copy()))
                getattr(gru, f"bias_ih_l0{suffix}").copy_(torch.from_numpy(order(bias[0]).copy()))
                getattr(gru, f"bias_hh_l0{suffix}").copy_(torch.from_numpy(order(bias[1]).copy()))
        return gru

    columns_gru, rows_gru = gru_from(renet.down, renet.up), gru_from(renet.right, renet.left)
    x = torch.from_numpy(np.array(steps_input)).requires_grad_(True)
    weight_cotangent = torch.from_numpy(np.array(cotangent))
    parameters = [x, *columns_gru.parameters(), *rows_gru.parameters()]

    def layer(x):
        batch, height, width, channels = x.shape
        columns = x.permute(0, 2, 1, 3).reshape(batch * width, height, channels)
        y = columns_gru(columns)[0].reshape(batch, width, height, 2 * units)
        rows = y.permute(0, 2, 1, 3).reshape(batch * height, width, 2 * units)
        return rows_gru(rows)[0].reshape(batch, height, width, 2 * units)

    def forward():
        with torch.no_grad():
            return layer(x).numpy()

    def forward_backward():
        loss = (layer(x) * weight_cotangent).sum()
        grads = torch.autograd.grad(loss, parameters)
        return float(sum(g.sum() for g in grads))

    return forward, forward_backward, torch.__version__


def profile(shape, layer, repeats):
    """`{part: median seconds}` of the fp32 path's fwd+bwd parts on `shape`, plus GFLOP/s."""
    from reseg_tf.layers.fast_rnn import gru_recurrence

    b, h, w, c, u = (shape[k] for k in ("batch", "height", "width", "channels", "units"))
    rng = np.random.default_rng(1)
    # Variables, not constants: the graph optimizer would fold matmuls of constants away.
    normal = lambda *dims: tf.Variable(rng.normal(size=dims).astype("float32"))  # noqa: E731
    # (steps, lines, input depth) of the vertical then the horizontal sweep.
    sweeps = [(h, b * w, c), (w, b * h, 2 * u)]
    projection_inputs = [(normal(t * n, d), normal(d, 3 * u), normal(t * n, 3 * u)) for t, n, d in sweeps]
    recurrence_inputs = [([normal(t, n, 3 * u), normal(t, n, 3 * u)], normal(2, u, 3 * u),
                          normal(2, 2, 3 * u), normal(t, n, u)) for t, n, _ in sweeps]

    @tf.function(autograph=False)
    def projections():
        total = 0.0
        for x, kernel, d_proj in projection_inputs:
            for _ in range(2):  # two directions per sweep: forward x @ K, backward dP @ K^T, x^T @ dP
                total += tf.reduce_sum(tf.matmul(x, kernel)) + tf.reduce_sum(
                    tf.matmul(d_proj, kernel, transpose_b=True)) + tf.reduce_sum(
                    tf.matmul(x, d_proj, transpose_a=True))
        return total

    def recurrence(with_gradient):
        @tf.function(autograph=False)
        def run():
            total = 0.0
            for projs, kernels, biases, cotangent in recurrence_inputs:
                # As the layer runs them: one loop per direction, concurrently.
                with tf.GradientTape() as tape:
                    projs_, kernels_, biases_ = [tf.identity(p) for p in projs], 0.1 * kernels, 0.1 * biases
                    tape.watch([*projs_, kernels_, biases_])
                    states = [gru_recurrence([p], (rev,), kernels_[i:i + 1], biases_[i:i + 1], "float32", True)[0]
                              for i, (p, rev) in enumerate(zip(projs_, (False, True)))]
                    loss = tf.add_n([tf.reduce_sum(s * cotangent) for s in states])
                if with_gradient:
                    grads = tape.gradient(loss, [*projs_, kernels_, biases_])
                    total += tf.add_n([tf.reduce_sum(g) for g in grads])
                else:
                    total += loss
            return total
        return run

    @tf.function(autograph=False)
    def recurrence_matmuls_only():
        # The recurrences' matmuls alone, in the same loops: forward h @ R; backward dh @ R^T
        # and the recurrent kernel's gradient h^T @ dh. No gate algebra, no saved states: a
        # floor for the recurrences on this machine's matmul kernels and loop machinery.
        total = 0.0
        for projs, kernels, _, cotangent in recurrence_inputs:
            for i, proj in enumerate(projs):
                kernel, steps = 0.1 * kernels[i], proj.shape[0]
                state = tf.while_loop(lambda t, _: t < steps,
                                      lambda t, h: (t + 1, tf.matmul(h, kernel)[:, :u]),
                                      (0, cotangent[0]), parallel_iterations=1)[1]

                def back(t, d_proj, d_kernel, h=cotangent[0]):
                    d_h = tf.matmul(d_proj, kernel, transpose_b=True)
                    d_kernel += tf.matmul(h, d_proj, transpose_a=True)
                    return t + 1, tf.concat([d_h, d_h, d_h], axis=-1), d_kernel

                d_kernel = tf.while_loop(lambda t, *_: t < steps, back, (0, proj[0], tf.zeros_like(kernel)),
                                         parallel_iterations=1)[2]
                total += tf.reduce_sum(state) + tf.reduce_sum(d_kernel)
        return total

    parts = {"projections": projections, "recurrence_fwd": recurrence(False),
             "recurrence_fwd_bwd": recurrence(True), "recurrence_matmuls_only": recurrence_matmuls_only}
    for fn in parts.values():
        fn()  # traces
    times = {name: [] for name in parts}
    for _ in range(repeats):
        for name, fn in parts.items():
            times[name].append(timed(fn))
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    recurrent_gflop = sum(2 * t * n * u * 3 * u for t, n, _ in sweeps) * 2 / 1e9  # both directions
    return medians, {"recurrence_fwd": recurrent_gflop, "recurrence_fwd_bwd": 3 * recurrent_gflop,
                     "recurrence_matmuls_only": 3 * recurrent_gflop}


def matmul_gflop_fwd(shape):
    """Matmul GFLOP of one forward pass (both sweeps, both directions, all steps)."""
    b, h, w, c, u = (shape[k] for k in ("batch", "height", "width", "channels", "units"))
    positions = b * h * w
    per_direction = lambda depth: positions * (2 * depth * 3 * u + 2 * u * 3 * u)  # noqa: E731
    return 2 * (per_direction(c) + per_direction(2 * u)) / 1e9


def make_steps(layer, x, cotangent):
    @tf.function(autograph=False)
    def forward():
        return layer(x)

    @tf.function(autograph=False)
    def forward_backward():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * cotangent)
        grads = tape.gradient(loss, [x] + layer.trainable_weights)
        return tf.add_n([tf.reduce_sum(g) for g in grads])

    return forward, forward_backward


def timed(fn):
    start = time.perf_counter()
    out = fn()
    np.asarray(out)  # waits for the result
    return time.perf_counter() - start


def matmul_ceiling(repeats):
    a = tf.random.normal((2048, 2048))
    b = tf.random.normal((2048, 2048))
    matmul = tf.function(lambda: tf.matmul(a, b))
    matmul()
    seconds = statistics.median(timed(matmul) for _ in range(repeats))
    return 2 * 2048**3 / seconds / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shape (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per path")
    parser.add_argument("--profile", action="store_true",
                        help="also time the fp32 path's parts (projections, recurrences, layout)")
    args = parser.parse_args()
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    repeats = args.repeats or (3 if args.quick else 7)

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(shape["batch"], shape["height"], shape["width"],
                                     shape["channels"])).astype("float32"))
    fp32 = ReNetLayer(shape["units"], implementation="fast")
    fp32.build(x.shape)
    bf16 = ReNetLayer(shape["units"], implementation="fast_bf16")
    bf16.build(x.shape)
    bf16.set_weights(fp32.get_weights())
    reference = StockReNet(shape["units"])
    reference.build(x.shape)
    reference.copy_weights_from(fp32)
    paths = {"reference": reference, "fp32": fp32, "bf16": bf16}

    out_shape = (shape["batch"], shape["height"], shape["width"], 2 * shape["units"])
    cotangent = tf.constant(rng.normal(size=out_shape).astype("float32"))
    steps = {name: make_steps(layer, x, cotangent) for name, layer in paths.items()}
    torch_steps = torch_peer(fp32, x, cotangent)
    torch_version = None
    if torch_steps is not None:
        *torch_pair, torch_version = torch_steps
        steps["torch"] = tuple(torch_pair)
        paths["torch"] = None
    outputs = {name: np.asarray(fwd()) for name, (fwd, _) in steps.items()}
    for _, fwd_bwd in steps.values():
        fwd_bwd()  # traces

    times = {(name, kind): [] for name in paths for kind in ("fwd", "fwd_bwd")}
    for _ in range(repeats):
        for name, (fwd, fwd_bwd) in steps.items():
            times[name, "fwd"].append(timed(fwd))
            times[name, "fwd_bwd"].append(timed(fwd_bwd))
    ceiling = matmul_ceiling(repeats)

    gflop = {"fwd": matmul_gflop_fwd(shape), "fwd_bwd": 3 * matmul_gflop_fwd(shape)}
    scale = np.abs(outputs["reference"]).max()
    result = {"shape": shape, "repeats": repeats, "ceiling_gflops": round(ceiling, 1),
              "matmul_gflop_fwd": round(gflop["fwd"], 2), "torch": torch_version}
    for (name, kind), samples in times.items():
        median = statistics.median(samples)
        result[f"{name}_{kind}_s"] = round(median, 4)
        result[f"{name}_{kind}_min_s"] = round(min(samples), 4)
        result[f"{name}_{kind}_gflops"] = round(gflop[kind] / median, 1)
        result[f"{name}_{kind}_fraction_of_ceiling"] = round(gflop[kind] / median / ceiling, 3)
    # Chosen from the unrounded medians of this run: no path is assumed to be the fastest.
    ours = [name for name in paths if name in IMPLEMENTATION_OF_PATH]
    fastest = {kind: min(ours, key=lambda name: statistics.median(times[name, kind]))
               for kind in ("fwd", "fwd_bwd")}
    for kind in ("fwd", "fwd_bwd"):
        for name in ("fp32", "bf16", "fastest"):
            path = fastest[kind] if name == "fastest" else name
            result[f"speedup_{kind}_{name}"] = round(
                result[f"reference_{kind}_s"] / result[f"{path}_{kind}_s"], 2)
            # Minimum times: less sensitive to other processes on a shared machine.
            result[f"speedup_{kind}_{name}_of_min"] = round(
                result[f"reference_{kind}_min_s"] / result[f"{path}_{kind}_min_s"], 2)
        if "torch" in paths:  # ours vs the PyTorch peer (> 1: ours is faster)
            for name in ("fp32", "bf16", "fastest"):
                path = fastest[kind] if name == "fastest" else name
                result[f"vs_torch_{kind}_{name}"] = round(
                    result[f"torch_{kind}_s"] / result[f"{path}_{kind}_s"], 2)
    for name in ("fp32", "bf16", "fastest") + (("torch",) if "torch" in paths else ()):
        path = fastest["fwd_bwd"] if name == "fastest" else name
        result[f"max_rel_diff_{name}"] = float(np.abs(outputs[path] - outputs["reference"]).max() / scale)
    if args.profile:
        medians, part_gflop = profile(shape, fp32, repeats)
        layer_s = result["fp32_fwd_bwd_s"]
        for name, seconds in medians.items():
            result[f"profile_{name}_s"] = round(seconds, 4)
        result["profile_recurrence_bwd_only_s"] = round(medians["recurrence_fwd_bwd"] - medians["recurrence_fwd"], 4)
        result["profile_layout_and_rest_s"] = round(
            layer_s - medians["projections"] - medians["recurrence_fwd_bwd"], 4)
        for name in ("projections", "recurrence_fwd_bwd"):
            result[f"profile_{name}_share"] = round(medians[name] / layer_s, 3)
        result["profile_layout_and_rest_share"] = round(result["profile_layout_and_rest_s"] / layer_s, 3)
        projection_gflop = gflop["fwd_bwd"] - part_gflop["recurrence_fwd_bwd"]
        result["profile_projections_gflops"] = round(projection_gflop / medians["projections"], 1)
        for name in ("recurrence_fwd", "recurrence_fwd_bwd", "recurrence_matmuls_only"):
            result[f"profile_{name}_gflops"] = round(part_gflop[name] / medians[name], 1)
        # The layer with recurrences at their matmul floor (free gate algebra and saved states)
        # and everything else as measured: what the fp32 path could reach with these kernels.
        best_case = layer_s - medians["recurrence_fwd_bwd"] + medians["recurrence_matmuls_only"]
        result["profile_best_case_fwd_bwd_s"] = round(best_case, 4)
        for peer in ("reference", "torch"):
            if f"{peer}_fwd_bwd_s" in result:
                result[f"profile_best_case_speedup_vs_{peer}"] = round(result[f"{peer}_fwd_bwd_s"] / best_case, 2)
    result["fastest_mode"] = IMPLEMENTATION_OF_PATH[fastest["fwd_bwd"]]
    result["fastest_mode_fwd"] = IMPLEMENTATION_OF_PATH[fastest["fwd"]]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
