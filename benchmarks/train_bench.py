"""Training throughput of the camvid preset: full model vs the head on cached VGG features.

Prints one JSON line. One training step (`train_on_batch`, Adadelta, sparse cross-entropy) of
the full model on images and of the `reseg_tf.feature_cache` head on the cached features of the
same images, interleaved repeat by repeat in one process (the machine is shared), medians
compared. Peak RSS is the process's high-water mark: `peak_rss_mib_cached` after the cached
path alone has run, `peak_rss_mib` after both.

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
from reseg_tf.feature_cache import cache_features, split_frozen_front_end  # noqa: E402


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="96x128 images (smoke test)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per path")
    parser.add_argument("--batch-size", type=int, default=5, help="images per step")
    parser.add_argument("--implementation", default="auto", help="ReNetLayer implementation")
    args = parser.parse_args()
    size = (96, 128) if args.quick else get_preset("camvid")[1]
    repeats = args.repeats or (3 if args.quick else 5)

    keras.utils.set_random_seed(0)
    config = get_preset("camvid")[0]
    model = build_model(config, input_shape=(*size, 3))
    for layer in model.layers:
        if hasattr(layer, "implementation"):
            layer.implementation = args.implementation
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
    full_ips = args.batch_size / medians["full"]
    cached_ips = args.batch_size / medians["cached"]
    print(json.dumps({
        "image_size": list(size), "batch_size": args.batch_size, "repeats": repeats,
        "implementation": args.implementation,
        "full_step_s": round(medians["full"], 3), "cached_step_s": round(medians["cached"], 3),
        "full_images_per_s": round(full_ips, 3), "cached_images_per_s": round(cached_ips, 3),
        "cached_speedup": round(cached_ips / full_ips, 2),
        "cache_seconds_per_image": round(cache_seconds / args.batch_size, 3),
        "peak_rss_mib_cached": round(peak_cached, 1), "peak_rss_mib": round(peak_rss_mib(), 1),
    }))


if __name__ == "__main__":
    main()
