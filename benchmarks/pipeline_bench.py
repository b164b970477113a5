"""Input pipeline vs training speed on CamVid train at 360x480, batch 5, augmentation on.

Prints one JSON line: `pipeline_batches_per_s` (steady state, after the first epoch filled the
in-memory cache), `train_steps_per_s` (`model.fit` steps of the camvid preset, weights=None,
sparse cross-entropy ignoring void, on one in-memory batch) and `ratio` = their quotient
(>= 3 means input never starves training). Both are measured in this run, one after the other.

    python benchmarks/pipeline_bench.py [--data-dir ../shared/datasets/camvid]
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

# Run from a checkout: the repository root holds `pipelines` and `reseg_tf`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import pipelines  # noqa: E402
import reseg_tf  # noqa: E402

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                "datasets", "camvid")
BATCH_SIZE = 5
IMAGE_SHAPE = (360, 480, 3)


def pipeline_batches_per_s(data_dir, batches):
    dataset = pipelines.make_dataset("camvid", "train", data_dir=data_dir, batch_size=BATCH_SIZE,
                                     image_size=IMAGE_SHAPE[:2], augment=True, repeat=True,
                                     drop_remainder=True)
    iterator = iter(dataset)
    epoch_batches = len(pipelines.get_source("camvid", data_dir).pairs("train")) // BATCH_SIZE
    start = time.perf_counter()
    for _ in range(epoch_batches + 1):  # the first epoch decodes and fills the cache
        first_batch = next(iterator)
    first_epoch_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start), first_epoch_s, first_batch


def train_steps_per_s(batch, steps):
    model = reseg_tf.build_model("camvid", input_shape=IMAGE_SHAPE, weights=None)
    num_classes = model.reseg_config.num_classes
    model.compile(optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-6),
                  loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=num_classes))
    data = tf.data.Dataset.from_tensors(batch[:2]).repeat()
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # traces the train step
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="CamVid root (SegNet layout)")
    parser.add_argument("--pipeline-batches", type=int, default=150, help="timed pipeline batches")
    parser.add_argument("--train-steps", type=int, default=3, help="timed train steps")
    args = parser.parse_args()
    pipeline_speed, first_epoch_s, batch = pipeline_batches_per_s(args.data_dir, args.pipeline_batches)
    train_speed = train_steps_per_s(batch, args.train_steps)
    print(json.dumps({
        "pipeline_batches_per_s": round(pipeline_speed, 3),
        "train_steps_per_s": round(train_speed, 4),
        "ratio": round(pipeline_speed / train_speed, 2),
        "first_epoch_s": round(first_epoch_s, 2),
        "batch_size": BATCH_SIZE, "image_size": list(IMAGE_SHAPE[:2]), "augment": True,
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
