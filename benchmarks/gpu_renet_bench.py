"""Times ReNetLayer's cuDNN path on a GPU and checks that the kernel really is cuDNN.

Prints one JSON line: median fwd and fwd+bwd seconds of one ReNet layer (90x120x256 input,
100 units, patch 1x1, the CamVid shape) at batch 5 and 16, with `implementation="auto"` (which
must pick the Keras GRU layers when a GPU is visible). The kernel check looks for `CudnnRNN*`
ops in the traced graphs of the timed functions (forward and gradient); `cudnn_in_graph` must be
true. Run it where TensorFlow sees a GPU (`nvidia-smi`; `pip install tensorflow[and-cuda]`).

Usage: python benchmarks/gpu_renet_bench.py [--repeats N]
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from reseg_tf.layers import ReNetLayer  # noqa: E402
from renet_bench import make_steps  # noqa: E402  (same folder)

SHAPE = dict(height=90, width=120, channels=256, units=100)


def op_types(concrete_function):
    """Op types of a traced function, its nested functions (while bodies, gradients) included."""
    graph_def = concrete_function.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types.update(node.op for node in function.node_def)
    return types


def timed(fn):
    start = time.perf_counter()
    np.asarray(fn())  # waits for the device
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per case")
    args = parser.parse_args()
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        raise SystemExit("no GPU visible to TensorFlow: run this on a GPU machine.")

    layer = ReNetLayer(SHAPE["units"])
    assert layer.effective_implementation == "keras", "implementation='auto' must use Keras/cuDNN on a GPU"
    result = {"device": tf.config.experimental.get_device_details(
        tf.config.list_physical_devices("GPU")[0]).get("device_name", gpus[0].name),
        "tensorflow": tf.__version__, "shape": SHAPE}
    cudnn_ops = set()
    for batch in (5, 16):
        x = tf.random.normal((batch, SHAPE["height"], SHAPE["width"], SHAPE["channels"]))
        cotangent = tf.random.normal((batch, SHAPE["height"], SHAPE["width"], 2 * SHAPE["units"]))

        forward, forward_backward = make_steps(layer, x, cotangent)

        for fn in (forward, forward_backward):
            cudnn_ops |= {op for op in op_types(fn.get_concrete_function()) if op.startswith("CudnnRNN")}
            for _ in range(3):
                timed(fn)  # warm-up: cuDNN plans, autotuning
        for name, fn in (("fwd", forward), ("fwd_bwd", forward_backward)):
            result[f"batch{batch}_{name}_s"] = round(
                statistics.median(timed(fn) for _ in range(args.repeats)), 5)
    result["cudnn_ops"] = sorted(cudnn_ops)
    result["cudnn_in_graph"] = bool(cudnn_ops)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
