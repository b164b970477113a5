"""Step time of `model.fit` on one device vs `MirroredStrategy` over 2 logical CPU devices.

Each configuration runs in its own process (logical devices must be set before TensorFlow
starts); both train the same preset on the same synthetic batches with the same global batch.
Prints one JSON line: median step seconds of each and their ratio.

    python benchmarks/distribute_bench.py [--preset demo] [--image-size 180 240] [--batch 4] [--steps 12]
"""
import argparse
import json
import subprocess
import sys

WORKER = r"""
import json, sys, time
import numpy as np
args = json.loads(sys.argv[1])
from reseg_tf.distribute import configure_logical_cpus, make_strategy
if args["replicas"] > 1:
    configure_logical_cpus(args["replicas"])
import keras, tensorflow as tf
from reseg_tf import build_model
strategy = make_strategy("mirrored" if args["replicas"] > 1 else "default")
height, width = args["image_size"]
rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (args["batch"] * 4, height, width, 3)).astype("float32")
masks = rng.integers(0, 11, (args["batch"] * 4, height, width)).astype("int32")
data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(args["batch"]).repeat()
with strategy.scope():
    model = build_model(args["preset"], input_shape=(height, width, 3))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
times = []
class Timer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        times.append(time.perf_counter() - self.start)
model.fit(data, steps_per_epoch=args["steps"], epochs=1, verbose=0, callbacks=[Timer()])
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "step_s": float(np.median(times[2:]))}))
"""


def run(settings):
    output = subprocess.run([sys.executable, "-c", WORKER, json.dumps(settings)],
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", help="model preset; default: demo")
    parser.add_argument("--image-size", nargs=2, type=int, default=(180, 240), metavar=("H", "W"),
                        help="input size; default: 180 240")
    parser.add_argument("--batch", type=int, default=4, help="global batch size; default: 4")
    parser.add_argument("--steps", type=int, default=12, help="timed steps (first 2 dropped); default: 12")
    args = parser.parse_args()
    common = dict(preset=args.preset, image_size=args.image_size, batch=args.batch, steps=args.steps)
    single = run({**common, "replicas": 1})
    mirrored = run({**common, "replicas": 2})
    print(json.dumps({
        "preset": args.preset, "image_size": list(args.image_size), "global_batch": args.batch,
        "single_device_step_s": round(single["step_s"], 4),
        "mirrored_2_logical_cpus_step_s": round(mirrored["step_s"], 4),
        "mirrored_over_single": round(mirrored["step_s"] / single["step_s"], 3),
    }))


if __name__ == "__main__":
    main()
