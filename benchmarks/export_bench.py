"""Per-image latency of Keras predict vs the SavedModel vs each TFLite variant, in one run.

Exports a trained `.keras` model (default: the shipped saved_models/camvid/model.keras; `--model
preset:NAME` for a preset with weights=None) at its own input size (a model that accepts any
size: its preset's training size) into a temporary folder with
`reseg_tf.export.export_model(verify=False)`, then times batch-1 inference of every artifact on
the same real images resized to that size as training resizes them (one warm-up call each) and
prints one JSON line: per artifact, latency in ms per image (`latency_ms`), frames per second at
the model's size (`fps`), file size (`size_mb`) and argmax agreement with Keras (`agreement`;
meaningless for an untrained model, reported anyway) and, per TFLite file, where its bytes go
(`size_breakdown`: constants, operator and tensor counts, tensor-name and quantization-parameter
bytes). Paths are relative to the repository.

`--front-end` also converts the model's front end (the preprocessing and the layers up to the
output layer its registered front end declares) to fp32 and int8 TFLite and times them the same way (`front_end_latency_ms`), with
their share of the whole model's time per variant (`front_end_share`): which part bounds the
latency.

    python benchmarks/export_bench.py [--model PATH|preset:NAME] [--images DIR] [--repeats N] [--front-end]
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import reseg_tf  # noqa: E402
from reseg_tf import export  # noqa: E402
from reseg_tf.export.signatures import DEFAULT_SIGNATURE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_CAMVID = ROOT.parent / "shared" / "datasets" / "camvid"
DEFAULT_MODEL = ROOT / "saved_models" / "camvid" / "model.keras"
PRESET_PREFIX = "preset:"


def per_image_seconds(function, images, repeats):
    function(images[0])
    start = time.perf_counter()
    outputs = []
    for _ in range(repeats):
        outputs = [function(image) for image in images]
    return outputs, (time.perf_counter() - start) / (repeats * len(images))


def front_end_latency_ms(model, image_size, images, calibration, scratch, repeats):
    """`{tflite_fp32, tflite_int8: ms per image}` of the model's front end (to the output layer
    its registered front end declares), converted and timed like the whole model (int8
    calibrated on `calibration`, the images the whole model's int8 variant was calibrated on)."""
    import keras

    from reseg_tf.export.saved_model import export_twin, write_archive
    twin, _ = export_twin(model, (*image_size, 3), unroll_rnns=True)
    front_end = keras.Model(twin.input, twin.front_end_features, name="front_end")
    signature = [tf.TensorSpec([1, *image_size, 3], tf.float32, name="images")]
    source = scratch / "front_end_saved_model"
    write_archive(front_end, source, {DEFAULT_SIGNATURE.name: (lambda images: {"features": front_end(images)}, signature)})
    latency = {}
    for variant in ("fp32", "int8"):
        path = scratch / f"front_end_{variant}.tflite"
        export.convert_tflite(source, variant, path, representative_images=calibration if variant == "int8" else None)
        predict = export.tflite_predict_fn(export.load_tflite(path, num_threads=os.cpu_count()))
        latency[f"tflite_{variant}"] = per_image_seconds(predict, images, repeats)[1] * 1000
    return latency


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="trained .keras model, or preset:NAME for a preset with weights=None; "
                             "default: saved_models/camvid/model.keras")
    parser.add_argument("--images", default=None,
                        help="folder of real images (calibration + timing); default: shared CamVid, else the embedded sample")
    parser.add_argument("--num-images", type=int, default=4, help="images timed per artifact")
    parser.add_argument("--num-calibration-images", type=int, default=8, help="int8 calibration images")
    parser.add_argument("--repeats", type=int, default=1, help="passes over the timed images")
    parser.add_argument("--tflite", default=",".join(export.TFLITE_VARIANTS), help="TFLite variants to time")
    parser.add_argument("--front-end", action="store_true",
                        help="also time the layers before the first ReNet layer alone (fp32 and int8 TFLite)")
    args = parser.parse_args()

    if args.model.startswith(PRESET_PREFIX):
        preset = args.model[len(PRESET_PREFIX):]
        model = reseg_tf.build_model(preset, input_shape=(None, None, 3), weights=None)
        model_name = f"{preset}(weights=None)"
    else:
        model = export.load_reseg_model(args.model)
        model_name = os.path.relpath(args.model, ROOT)
    image_size = export.resolve_image_size(model)
    images_dir = args.images or (SHARED_CAMVID if SHARED_CAMVID.is_dir() else export.sample_data_dir())
    files = export.find_images(images_dir)
    images = export.load_images(export.spread_files(files, args.num_images), image_size)

    results = {"benchmark": "export_latency", "model": model_name,
               "image_size": list(image_size), "images": os.path.relpath(images_dir, ROOT),
               "num_images": len(images),
               "repeats": args.repeats, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
               "tf": tf.__version__, "latency_ms": {}, "fps": {}, "size_mb": {}, "agreement": {}, "size_breakdown": {},
               "convert_s": None}
    with tempfile.TemporaryDirectory(prefix="reseg-export-bench-") as scratch:
        start = time.perf_counter()
        result = export.export_model(model, Path(scratch) / model.name, image_size=image_size,
                                     tflite=args.tflite, representative_data=images_dir, verify=False,
                                     num_calibration_images=args.num_calibration_images)
        results["convert_s"] = round(time.perf_counter() - start, 1)

        reference, seconds = per_image_seconds(
            lambda image: model.predict(image[np.newaxis].astype(np.float32), verbose=0), images, args.repeats)
        reference = np.concatenate(reference)
        results["latency_ms"]["keras_predict"] = seconds * 1000

        serving = tf.saved_model.load(str(result.saved_model_dir)).signatures[DEFAULT_SIGNATURE.name]
        outputs, seconds = per_image_seconds(
            lambda image: serving(**{DEFAULT_SIGNATURE.input_name: tf.constant(image[np.newaxis], tf.float32)})[
                "probabilities"].numpy(),
            images, args.repeats)
        results["latency_ms"]["saved_model"] = seconds * 1000
        results["agreement"]["saved_model"] = float(np.mean(np.concatenate(outputs).argmax(-1) == reference.argmax(-1)))
        results["size_mb"]["saved_model"] = sum(
            p.stat().st_size for p in result.saved_model_dir.rglob("*") if p.is_file()) / 2**20

        for variant, path in result.tflite_paths.items():
            predict = export.tflite_predict_fn(export.load_tflite(path, num_threads=os.cpu_count()))
            outputs, seconds = per_image_seconds(predict, images, args.repeats)
            probabilities = np.concatenate(outputs)
            results["latency_ms"][f"tflite_{variant}"] = seconds * 1000
            results["size_mb"][f"tflite_{variant}"] = path.stat().st_size / 2**20
            results["size_breakdown"][f"tflite_{variant}"] = export.tflite_size_breakdown(path)
            results["agreement"][f"tflite_{variant}"] = float(np.mean(probabilities.argmax(-1) == reference.argmax(-1)))
        if args.front_end:
            calibration = export.load_images(export.spread_files(files, args.num_calibration_images), image_size)
            results["front_end_latency_ms"] = front_end_latency_ms(
                model, image_size, images, calibration, Path(scratch), args.repeats)
            results["front_end_share"] = {
                name: round(ms / results["latency_ms"][name], 3)
                for name, ms in results["front_end_latency_ms"].items() if name in results["latency_ms"]}
    results["fps"] = {name: 1000 / ms for name, ms in results["latency_ms"].items()}
    for key in ({"latency_ms", "fps", "size_mb", "front_end_latency_ms"} & set(results)):
        results[key] = {name: round(value, 2) for name, value in results[key].items()}
    results["agreement"] = {name: round(value, 4) for name, value in results["agreement"].items()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
