"""Training-step time of a preset under float32 and mixed-precision policies on this machine.

Prints one JSON line: median `train_on_batch` seconds (Adam, `VoidAwareCrossEntropy`, random
images/masks) per policy, measured in one process one policy after another, and each policy's
speed-up over float32. The ReNet layers run `implementation="auto"`: the fast CPU path, with
bf16 matmuls under `mixed_bfloat16`.

`renet_fwd_bwd_s` / `renet_share_of_step`: where the reference policy's step time goes: the
model's ReNet layers' forward + backward (gradients of their weights and inputs), timed alone on
their own input shapes, and their share of the step; the rest is the convolutional front end,
the upsampling, the loss and the optimizer.

Usage: python benchmarks/precision_bench.py [--preset camvid_scratch] [--image-size 180 240]
       [--batch-size 5] [--repeats 8] [--policies float32,mixed_bfloat16]
"""
import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from reseg_tf import build_model, get_preset  # noqa: E402
from reseg_tf.losses import VoidAwareCrossEntropy  # noqa: E402


def renet_seconds(model, batch_size, repeats):
    """Median fwd+bwd seconds of all of `model`'s ReNet layers, each on a random input of its shape."""
    import tensorflow as tf

    from reseg_tf.layers import ReNetLayer

    rng = np.random.default_rng(1)
    steps = []
    for layer in model.layers:
        if not isinstance(layer, ReNetLayer):
            continue
        x = tf.constant(rng.normal(size=(batch_size, *layer.input.shape[1:])).astype("float32"))

        @tf.function(autograph=False)
        def fwd_bwd(layer=layer, x=x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) ** 2)
            return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, [x] + layer.trainable_weights)])

        fwd_bwd()
        steps.append(fwd_bwd)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for step in steps:
            np.asarray(step())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_seconds(config, size, batch_size, repeats, policy, with_renet=False):
    """Median train step seconds under `policy`, and (`with_renet`) the median fwd+bwd seconds of
    the same model's ReNet layers (else None)."""
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build_model(config, input_shape=(*size, 3))
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=VoidAwareCrossEntropy(config.num_classes))
    finally:
        keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch_size, *size, 3)).astype("float32")
    masks = rng.integers(0, config.num_classes, (batch_size, *size)).astype("int32")
    for _ in range(3):  # tracing and warm-up
        model.train_on_batch(images, masks)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(images, masks)
        times.append(time.perf_counter() - start)
    return statistics.median(times), renet_seconds(model, batch_size, repeats) if with_renet else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="camvid_scratch", help="model preset; default: camvid_scratch")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="image size; default: the preset's")
    parser.add_argument("--batch-size", type=int, default=5, help="images per step; default: 5")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per policy; default: 8")
    parser.add_argument("--policies", default="float32,mixed_bfloat16",
                        help="comma-separated Keras dtype policies; the first is the reference")
    args = parser.parse_args()
    config, preset_size, _ = get_preset(args.preset)
    size = tuple(args.image_size or preset_size)
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    # The ReNet layers' share is measured on the reference (first) policy's model.
    seconds, renet = {}, {}
    for policy in policies:
        seconds[policy], renet[policy] = step_seconds(config, size, args.batch_size, args.repeats, policy,
                                                      with_renet=policy == policies[0])
    renet_s = renet[policies[0]]
    reference = seconds[policies[0]]
    print(json.dumps({
        "preset": args.preset, "image_size": list(size), "batch_size": args.batch_size, "repeats": args.repeats,
        "step_s": {p: round(s, 3) for p, s in seconds.items()},
        "images_per_s": {p: round(args.batch_size / s, 2) for p, s in seconds.items()},
        "speedup_vs_" + policies[0]: {p: round(reference / s, 2) for p, s in seconds.items()},
        "renet_fwd_bwd_s": round(renet_s, 3), "renet_share_of_step": round(renet_s / reference, 3),
    }))


if __name__ == "__main__":
    main()
