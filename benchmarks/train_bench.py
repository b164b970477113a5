"""Training throughput of the camvid preset: full model vs the head on cached VGG features.

Prints one JSON line. One training step (`train_on_batch`, Adadelta, sparse cross-entropy) of
the full model on images and of the `reseg_tf.training.feature_cache` head on the cached
features of the same images, interleaved repeat by repeat in one process (the machine is
shared), medians compared. Peak RSS is the process's high-water mark: `peak_rss_mib_cached`
after the cached path alone has run, `peak_rss_mib` after both.

`flop_bound_speedup` is the most caching can give if the front end and the head ran at the same
FLOP/s: (front-end forward + head training FLOPs) / head training FLOPs, counted from the
layers' shapes (convolutions and the GRUs' matmuls; a training step = 3x the forward, less the
input gradient of the head's first layer, which nothing needs). `*_gflops` are the achieved
rates: the front end's from the full step minus the cached step.

`--implementation` sets every ReNetLayer's `implementation`; `effective_implementation` is the
one that ran (`"auto"` resolved on this machine).

Usage: python benchmarks/train_bench.py [--quick] [--repeats N] [--implementation auto|keras|fast|fast_bf16]
"""
import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from reseg_tf import build_model, get_preset  # noqa: E402
from reseg_tf.layers import ReNetLayer  # noqa: E402
from reseg_tf.layers.renet import IMPLEMENTATIONS  # noqa: E402
from reseg_tf.training.feature_cache import cache_features, front_end_output_layer, split_frozen_front_end  # noqa: E402


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def layer_gflop(layer, batch_size):
    """`(forward GFLOP, GFLOP of its input gradient)` of one layer (matmul/conv FLOPs only)."""
    if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose, ReNetLayer)):
        return 0.0, 0.0
    in_shape, out_shape = layer.input.shape, layer.output.shape
    if isinstance(layer, keras.layers.Conv2DTranspose):
        kh, kw = layer.kernel_size
        flops = 2 * kh * kw * in_shape[-1] * layer.filters * in_shape[1] * in_shape[2]
        return batch_size * flops / 1e9, batch_size * flops / 1e9
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        flops = 2 * kh * kw * in_shape[-1] * layer.filters * out_shape[1] * out_shape[2]
        return batch_size * flops / 1e9, batch_size * flops / 1e9
    units, (ph, pw) = layer.units, layer.patch_size  # a ReNetLayer
    positions = -(-in_shape[1] // ph) * -(-in_shape[2] // pw)
    patch_features = in_shape[-1] * ph * pw
    second_in = 2 * units if layer.stack_sublayers else patch_features
    total = 0
    for features in (patch_features, second_in):
        backward_in = units if layer.direction_mode == "stacked" else features
        for direction_in in (features, backward_in):
            total += 2 * (direction_in + units) * 3 * units * positions
    input_grad = 2 * 2 * patch_features * 3 * units * positions  # both directions' input projections
    return batch_size * total / 1e9, batch_size * input_grad / 1e9


def flop_counts(model, batch_size):
    """`(front-end forward GFLOP, head training-step GFLOP)` of a ReSeg model at a static size."""
    boundary = model.layers.index(model.get_layer(front_end_output_layer(model)))
    front = sum(layer_gflop(layer, batch_size)[0] for layer in model.layers[: boundary + 1])
    head = [layer_gflop(layer, batch_size) for layer in model.layers[boundary + 1:]]
    head_forward = sum(forward for forward, _ in head)
    first_input_grad = next((grad for forward, grad in head if forward), 0.0)
    return front, 3 * head_forward - first_input_grad


def use_implementation(model, implementation):
    """Sets `implementation` on every ReNetLayer of `model`; returns the implementation that runs.

    The value goes through the layer's own validation (its constructor, from the layer's
    config) before it is set, and every layer must then report the same effective path.
    """
    renet_layers = [layer for layer in model.layers if isinstance(layer, ReNetLayer)]
    if not renet_layers:
        raise ValueError(f"model {model.name!r} has no ReNetLayer to set implementation={implementation!r} on.")
    for layer in renet_layers:
        ReNetLayer.from_config({**layer.get_config(), "implementation": implementation})
        layer.implementation = implementation
    effective = {layer.effective_implementation for layer in renet_layers}
    if len(effective) != 1:
        raise RuntimeError(f"implementation={implementation!r} runs {sorted(effective)} in different layers.")
    return effective.pop()


def timed(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="96x128 images (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per path")
    parser.add_argument("--batch-size", type=int, default=5, help="images per step")
    parser.add_argument("--implementation", default="auto", choices=IMPLEMENTATIONS,
                        help="ReNetLayer implementation; default: auto")
    args = parser.parse_args()
    size = (96, 128) if args.quick else get_preset("camvid")[1]
    repeats = args.repeats or (3 if args.quick else 5)

    keras.utils.set_random_seed(0)
    config = get_preset("camvid")[0]
    model = build_model(config, input_shape=(*size, 3))
    effective_implementation = use_implementation(model, args.implementation)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(args.batch_size, *size, 3)).astype("float32")
    masks = rng.integers(0, config.num_classes, size=(args.batch_size, *size)).astype("int32")

    front_end, head = split_frozen_front_end(model)
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(args.batch_size)
    start = time.perf_counter()
    cached = cache_features(front_end, dataset, dtype="float16", verbose=0)
    features, cached_masks = next(iter(cached.batch(args.batch_size)))
    cache_seconds = time.perf_counter() - start

    def compiled(trainable):
        trainable.compile(optimizer=keras.optimizers.Adadelta(1.0, rho=0.95, epsilon=1e-6),
                          loss="sparse_categorical_crossentropy")
        return trainable

    head = compiled(head)
    steps = {"cached": lambda: head.train_on_batch(features, cached_masks)}
    steps["cached"]()  # traces
    peak_cached = peak_rss_mib()
    model = compiled(model)
    steps["full"] = lambda: model.train_on_batch(images, masks)
    steps["full"]()
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step))

    medians = {name: statistics.median(samples) for name, samples in times.items()}
    front_gflop, head_gflop = flop_counts(model, args.batch_size)
    full_ips = args.batch_size / medians["full"]
    cached_ips = args.batch_size / medians["cached"]
    print(json.dumps({
        "image_size": list(size), "batch_size": args.batch_size, "repeats": repeats,
        "implementation": args.implementation, "effective_implementation": effective_implementation,
        "full_step_s": round(medians["full"], 3), "cached_step_s": round(medians["cached"], 3),
        "full_images_per_s": round(full_ips, 3), "cached_images_per_s": round(cached_ips, 3),
        "cached_speedup": round(cached_ips / full_ips, 2),
        "cache_seconds_per_image": round(cache_seconds / args.batch_size, 3),
        "front_end_fwd_gflop": round(front_gflop, 1), "head_train_gflop": round(head_gflop, 1),
        "flop_bound_speedup": round((front_gflop + head_gflop) / head_gflop, 2),
        "front_end_gflops": round(front_gflop / max(medians["full"] - medians["cached"], 1e-9), 1),
        "head_gflops": round(head_gflop / medians["cached"], 1),
        "peak_rss_mib_cached": round(peak_cached, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
    }))


if __name__ == "__main__":
    main()
