"""Pixel agreement of every exported path with `reseg predict`, on the same image files.

Exports the model (SavedModel + TFLite fp32, fp16, dynamic, int8) into a temporary folder with
`reseg_tf.export.export_model(verify=False)`, runs `reseg_tf.predict` (the `reseg predict` code
path) on the image files and reads its class-map PNGs, then prints one JSON line with the
fraction of pixels (0..1) where each path gives predict's class:

- `savedmodel_bytes`: the encoded files through the `serving_bytes` signature;
- `savedmodel_default`: the decoded pixels through `serving_default`;
- `tflite_<variant>`: the contract around the static model (resize to the working size as
  training does, interpreter, probabilities resized back to the image's size, argmax).

Each image is its own request, at its own size. `int8` is calibrated on --representative-data
(default: the embedded CamVid sample, train/ val/ test/ together).

    python benchmarks/parity_bench.py [--model PATH] [--images DIR] [--num-images N]

Default model: saved_models/camvid/model.keras; default images: the embedded CamVid sample's
val images. Paths in the JSON line are relative to the repository.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

import pipelines  # noqa: E402
import reseg_tf  # noqa: E402
from reseg_tf import export  # noqa: E402
from reseg_tf.inference import model_input_size, read_image_file  # noqa: E402
from reseg_tf.export.signatures import BYTES_SIGNATURE, DEFAULT_SIGNATURE  # noqa: E402

DEFAULT_MODEL = ROOT / "saved_models" / "camvid" / "model.keras"


def agreement_with_predict(model, files, work_dir, variants=export.TFLITE_VARIANTS, representative_data=None):
    """`{path: fraction of pixels where it gives reseg predict's class}` over the image `files`.

    Args:
        model: a ReSeg Keras model or the path of its `.keras` file.
        files: image files (any sizes).
        work_dir: an empty folder for the export and predict's class maps.
        variants: TFLite variants to convert and compare.
        representative_data: folder of images to calibrate `int8` on (see `export_model`).

    Returns:
        A dict with `savedmodel_bytes`, `savedmodel_default` and `tflite_<variant>` agreements.
    """
    model = export.load_reseg_model(model)
    work_dir = Path(work_dir)
    exported = export.export_model(model, work_dir / "export", tflite=variants,
                                   representative_data=representative_data, verify=False)
    predicted = reseg_tf.predict(model, files, work_dir / "predicted", verbose=0)
    if predicted["skipped"]:
        raise ValueError(f"reseg predict skipped {predicted['skipped']}")
    expected = [np.asarray(Image.open(path)) for path in predicted["written"]]

    signatures = tf.saved_model.load(str(exported.saved_model_dir)).signatures
    images = [read_image_file(path) for path in files]
    classes = {
        "savedmodel_bytes": [
            signatures[BYTES_SIGNATURE.name](**{BYTES_SIGNATURE.input_name: tf.constant([Path(path).read_bytes()])})[
                "classes"][0].numpy()
            for path in files],
        "savedmodel_default": [
            signatures[DEFAULT_SIGNATURE.name](**{DEFAULT_SIGNATURE.input_name: tf.constant(image[np.newaxis], tf.float32)})[
                "classes"][0].numpy()
            for image in images],
    }
    for variant, path in exported.tflite_paths.items():
        probabilities = export.tflite_image_probabilities(export.load_tflite(path))
        classes[f"tflite_{variant}"] = [probabilities(image)[0].argmax(-1) for image in images]

    pixels = sum(class_map.size for class_map in expected)
    return {name: sum(int(np.sum(got == want)) for got, want in zip(maps, expected)) / pixels
            for name, maps in classes.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="trained .keras model")
    parser.add_argument("--images", default=None,
                        help="folder of images to compare on; default: the embedded CamVid sample's val/")
    parser.add_argument("--num-images", type=int, default=None,
                        help="images spread over the folder; default: all of them")
    parser.add_argument("--tflite", default=",".join(export.TFLITE_VARIANTS), help="TFLite variants to compare")
    parser.add_argument("--representative-data", default=None,
                        help="folder of images to calibrate int8 on; default: the embedded CamVid sample")
    args = parser.parse_args(argv)

    images_dir = Path(args.images) if args.images else Path(pipelines.sample_data_dir()) / "val"
    files = export.find_images(images_dir)
    if args.num_images:
        files = export.spread_files(files, args.num_images)
    model = export.load_reseg_model(args.model)
    # Export's progress goes to stderr: stdout is the one JSON line.
    with tempfile.TemporaryDirectory(prefix="reseg-parity-bench-") as scratch, \
            contextlib.redirect_stdout(sys.stderr):
        agreement = agreement_with_predict(model, files, scratch, export.parse_variants(args.tflite),
                                           args.representative_data)
    sizes = sorted({"{}x{}".format(*Image.open(path).size[::-1]) for path in files})
    working_size = model_input_size(model)
    results = {"benchmark": "parity_with_predict", "model": os.path.relpath(args.model, ROOT),
               "images": os.path.relpath(images_dir, ROOT),
               "num_images": len(files), "image_sizes": sizes,
               "working_size": list(working_size) if working_size else None,
               **{name: round(value, 6) for name, value in agreement.items()}}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
