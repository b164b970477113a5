"""Runs a few synchronous training steps of a tiny ReSeg model under a tf.distribute strategy.

Used by tests/test_distribute.py in subprocesses (logical devices and TF_CONFIG must be set
before TensorFlow starts). Prints one JSON line: the loss history and a weights digest.
"""
import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--strategy", default="default")
parser.add_argument("--logical-cpus", type=int, default=0)
parser.add_argument("--weights-out", default=None)
args = parser.parse_args()

from reseg_tf import ReSegConfig, build_model  # noqa: E402
from reseg_tf.distribute import (  # noqa: E402
    configure_logical_cpus, distribute_options, is_chief, make_strategy,
)

if args.logical_cpus:
    configure_logical_cpus(args.logical_cpus)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH = 4
CONFIG = ReSegConfig(num_classes=3, class_names=("a", "b", "c"), front_end="none",
                     renet=((4, (2, 2)),), upsampling=((4, (2, 2)),))

rng = np.random.default_rng(0)
images = rng.uniform(0, 255, size=(16, 16, 16, 3)).astype("float32")
masks = (images[..., 0] > 127).astype("int32") + (images[..., 1] > 200).astype("int32")

strategy = make_strategy(args.strategy)
keras.utils.set_random_seed(7)
with strategy.scope():
    model = build_model(CONFIG, input_shape=(16, 16, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
dataset = distribute_options(
    tf.data.Dataset.from_tensor_slices((images, masks)).batch(GLOBAL_BATCH)
)
history = model.fit(dataset, epochs=2, verbose=0)
weights = model.get_weights()
if args.weights_out:
    np.savez(args.weights_out, *weights)
print(json.dumps({
    "replicas": strategy.num_replicas_in_sync,
    "chief": is_chief(strategy),
    "loss": [float(v) for v in history.history["loss"]],
    "weights_sum": float(sum(np.abs(w).sum() for w in weights)),
}))
sys.stdout.flush()
