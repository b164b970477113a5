"""Cost of each front end at CamVid's 264x352, beside the shipped model, in one run.

For the shipped `saved_models/camvid/model.keras` (the `scratch_stem` front end) and one preset
per other front end (`--presets`, built with random weights: the costs do not depend on them),
at `--image-size` (default 264x352): parameters, GFLOP per image (float operations of the
model with unrolled ReNet layers, counted by the TensorFlow profiler), TFLite fp32 and int8 ms
per image (batch 1, `--threads` interpreter threads, all cores by default; int8 calibrated on the same real images) and file size, and the
time of one training step (batch `--batch-size`, Adam, each front end frozen or trained as its
preset says). `int8_vs_shipped` is each model's int8 ms over the shipped model's, measured in
this run.

    python benchmarks/front_end_bench.py [--presets camvid,camvid_mobilenet,...] [--repeats N] [--variants fp32,int8]
        [--threads N]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import reseg_tf  # noqa: E402
from reseg_tf import export  # noqa: E402
from reseg_tf.export.saved_model import export_twin, write_static_saved_model  # noqa: E402
from reseg_tf.losses import VoidAwareCrossEntropy  # noqa: E402

SHIPPED = ROOT / "saved_models" / "camvid" / "model.keras"
SHARED_CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"
DEFAULT_PRESETS = ("camvid", "camvid_mobilenet", "camvid_resnet50", "demo")


def gflop_per_image(model, image_size):
    twin, _ = export_twin(model, (*image_size, 3), unroll_rnns=True)
    function = tf.function(lambda images: twin(images)).get_concrete_function(
        tf.TensorSpec([1, *image_size, 3], tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph=function.graph, options=options).total_float_ops / 1e9


def train_step_seconds(model, image_size, batch_size, repeats):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=VoidAwareCrossEntropy(model.reseg_config.num_classes))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, *image_size, 3)).astype(np.float32)
    masks = rng.integers(0, model.reseg_config.num_classes, (batch_size, *image_size)).astype(np.int32)
    model.train_on_batch(images, masks)
    start = time.perf_counter()
    for _ in range(repeats):
        model.train_on_batch(images, masks)
    return (time.perf_counter() - start) / repeats


def tflite_ms(path, images, repeats, threads, clock=time.perf_counter):
    """ms per image of the `.tflite` file at `path` (`threads` interpreter threads), after one
    warm-up call, over `repeats` passes over `images`, on `clock` (wall time by default;
    `time.process_time`, the process's CPU time, is steadier on a busy machine)."""
    predict = export.tflite_predict_fn(export.load_tflite(path, num_threads=threads))
    predict(images[0])
    start = clock()
    for _ in range(repeats):
        for image in images:
            predict(image)
    return round((clock() - start) * 1000 / (repeats * len(images)), 2)


def tflite_figures(model, image_size, images, variants, scratch, repeats, threads):
    source = scratch / f"{model.name}_saved_model"
    write_static_saved_model(model, source, image_size)
    figures = {}
    for variant in variants:
        path = scratch / f"{model.name}_{variant}.tflite"
        export.convert_tflite(source, variant, path, representative_images=images if variant == "int8" else None)
        figures[f"tflite_{variant}_ms"] = tflite_ms(path, images, repeats, threads)
        figures[f"tflite_{variant}_mb"] = round(path.stat().st_size / 2**20, 3)
        # Operators run one after another: the unrolled recurrences' many small ones cost their
        # dispatch more than their arithmetic.
        figures[f"tflite_{variant}_ops"] = export.tflite_size_breakdown(path)["operators"]
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS),
                        help="comma-separated presets measured beside the shipped model")
    parser.add_argument("--image-size", nargs=2, type=int, default=(264, 352), metavar=("H", "W"))
    parser.add_argument("--variants", default="fp32,int8", help="TFLite variants to convert and time")
    parser.add_argument("--num-images", type=int, default=4, help="real images timed (and calibrating int8)")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the images / training steps timed")
    parser.add_argument("--batch-size", type=int, default=5, help="training-step batch")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=FILE",
                        help="also measure this .keras model (e.g. a variant of a preset); repeatable")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="TFLite interpreter threads; default: all cores")
    args = parser.parse_args()
    image_size = tuple(args.image_size)
    variants = export.parse_variants(args.variants)
    images_dir = SHARED_CAMVID if SHARED_CAMVID.is_dir() else export.sample_data_dir()
    images = export.load_images(export.spread_files(export.find_images(images_dir), args.num_images), image_size)

    models = {"shipped camvid (scratch_stem)": lambda: reseg_tf.models.with_input_size(
        export.load_reseg_model(str(SHIPPED)), image_size)}
    for preset in filter(None, args.presets.split(",")):
        models[preset] = lambda preset=preset: reseg_tf.build_model(preset, input_shape=(*image_size, 3))
    for labelled in args.model:
        label, _, path = labelled.partition("=")
        if not label or not path:
            parser.error(f"--model {labelled!r}: expected LABEL=FILE")
        models[label] = lambda path=path: reseg_tf.models.with_input_size(export.load_reseg_model(path), image_size)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="reseg-front-end-bench-") as scratch:
        for label, make in models.items():
            keras.utils.set_random_seed(0)
            model = make()
            config = model.reseg_config
            row = {"front_end": config.front_end, "frozen": config.freeze_front_end,
                   "params": model.count_params(), "gflop": round(gflop_per_image(model, image_size), 3)}
            row.update(tflite_figures(model, image_size, images, variants, Path(scratch), args.repeats, args.threads))
            row["train_step_s"] = round(train_step_seconds(make(), image_size, args.batch_size, args.repeats), 3)
            rows[label] = row
            print(label, row, file=sys.stderr, flush=True)
    shipped = rows["shipped camvid (scratch_stem)"].get("tflite_int8_ms")
    if shipped:
        for row in rows.values():
            if "tflite_int8_ms" in row:
                row["int8_vs_shipped"] = round(row["tflite_int8_ms"] / shipped, 3)
    print(json.dumps({"benchmark": "front_end_costs", "image_size": list(image_size), "cpu_count": os.cpu_count(),
                      "tflite_threads": args.threads,
                      "images": os.path.relpath(images_dir, ROOT), "repeats": args.repeats, "models": rows}))


if __name__ == "__main__":
    main()
