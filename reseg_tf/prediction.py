"""Segmenting image files: `reseg_tf.predict(...)` and `reseg predict`.

For each input image `NAME.ext` it writes `NAME.png` (uint8 class indices, same size as the
image) and, with `overlay=True`, `NAME_overlay.png` (the image blended with the class colors:
the CamVid palette for CamVid's 11 classes, black/white for two classes, generated colors
otherwise). Images that cannot be read are skipped with a message naming the file; the rest
are still segmented. Skipped too: files whose header claims more than
`pipelines.files.MAX_IMAGE_PIXELS` pixels, and file names that are not valid UTF-8.
Conversions: gray, gray+alpha, palette and RGBA images become RGB; 16-bit ones are scaled to 8 bits.
"""
import os

import keras

from reseg_tf.inference import Predictor, list_image_files
from reseg_tf.model_io import load_reseg_model
from reseg_tf.models import config_from_model
from reseg_tf.run_files import atomic_write_png
from reseg_tf.visualize import class_palette, overlay as blend


def _output_stem(path, used):
    stem = os.path.splitext(os.path.basename(path))[0]
    candidate, suffix = stem, 1
    while candidate in used:  # same names from different input folders
        candidate, suffix = f"{stem}_{suffix}", suffix + 1
    used.add(candidate)
    return candidate


def predict(model, inputs, output_dir, overlay=False, image_size=None, verbose=1):
    """Segments image files and writes class-index PNGs (and overlays) to `output_dir`.

    Args:
        model: a ReSeg Keras model or the path of its `.keras` file.
        inputs: image files and/or directories (their images, not recursive).
        output_dir: where `NAME.png` / `NAME_overlay.png` go (created if needed).
        overlay: also write color overlays.
        image_size: `(height, width)` to run the model at (default: its input size); outputs
            always have each image's own size.
        verbose: print one line per image.

    Returns:
        A dict: `written` (paths) and `skipped` (`(path, reason)` pairs). The CLI exits
        non-zero if anything was skipped.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(model, keras.Model):
        model = load_reseg_model(model)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f"output folder {os.fspath(output_dir)} is an existing file; give a folder")
    palette = class_palette(config_from_model(model))
    predictor = Predictor(model, image_size)
    files, skipped = list_image_files(inputs)
    for path, reason in skipped:
        print(f"skipped: {path}: {reason}", flush=True)
    os.makedirs(output_dir, exist_ok=True)
    written, used_stems = [], set()
    for path in files:
        try:
            image, classes = predictor.classes_of_file(path)
        except ValueError as error:
            skipped.append((path, str(error)))
            print(f"skipped: {error}", flush=True)
            continue
        stem = _output_stem(path, used_stems)
        outputs = [os.path.join(output_dir, f"{stem}.png")]
        atomic_write_png(outputs[0], classes)
        if overlay:
            outputs.append(os.path.join(output_dir, f"{stem}_overlay.png"))
            atomic_write_png(outputs[1], blend(image, classes, palette))
        written.extend(outputs)
        if verbose:
            print(f"{path} -> {', '.join(outputs)}", flush=True)
    return {"written": written, "skipped": skipped}
