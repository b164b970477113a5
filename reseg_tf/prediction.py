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
import numpy as np
import tensorflow as tf

from reseg_tf.evaluation import Predictor, colorize, load_reseg_model, write_png
from reseg_tf.models import CAMVID_CLASSES, config_from_model

OVERLAY_ALPHA = 0.5


def class_palette(model_config):
    """uint8 `(num_classes + 1, 3)` colors (last: void) for a model's classes."""
    from pipelines.sources import BINARY_PALETTE, CAMVID_PALETTE, default_palette

    if model_config.num_classes == len(CAMVID_CLASSES):
        return np.asarray(CAMVID_PALETTE, np.uint8)
    if model_config.num_classes == 2:
        return np.asarray(BINARY_PALETTE, np.uint8)
    return default_palette(model_config.num_classes)


def list_images(inputs):
    """Image files of `inputs` (files as given, directories' images sorted), and the inputs that
    are missing as `(path, reason)` pairs."""
    from pipelines.files import IMAGE_SUFFIXES, shown_path

    files, problems = [], []
    for entry in inputs:
        entry = os.fspath(entry)
        if os.path.isdir(entry):
            found = sorted(
                os.path.join(entry, name) for name in os.listdir(entry)
                if name.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(entry, name))
            )
            if not found:
                problems.append((entry, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this directory"))
            files.extend(found)
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            problems.append((shown_path(entry), "no such file or directory"))
    return files, problems


def read_image(path):
    """uint8 RGB `(H, W, 3)`; raises ValueError naming the file if it cannot be used."""
    from pipelines.files import BadFileError, inspect_image_file

    try:
        inspect_image_file(path)  # missing, empty, truncated, oversized, not an image, bad name
    except BadFileError as error:
        raise ValueError(str(error)) from None
    try:
        # Gray, palette and RGBA images become RGB; 16-bit ones are scaled to 8 bits.
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8,
                                   expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"{path}: cannot decode the image ({error.message.splitlines()[0]})") from None
    return image.numpy()


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
    files, skipped = list_images(inputs)
    for path, reason in skipped:
        print(f"skipped: {path}: {reason}", flush=True)
    os.makedirs(output_dir, exist_ok=True)
    written, used_stems = [], set()
    for path in files:
        try:
            image = read_image(path)
        except ValueError as error:
            skipped.append((path, str(error)))
            print(f"skipped: {error}", flush=True)
            continue
        classes = predictor.classes(image[None])[0].numpy()
        stem = _output_stem(path, used_stems)
        outputs = [os.path.join(output_dir, f"{stem}.png")]
        write_png(outputs[0], classes)
        if overlay:
            blended = (1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * colorize(classes, palette)
            outputs.append(os.path.join(output_dir, f"{stem}_overlay.png"))
            write_png(outputs[1], np.round(blended))
        written.extend(outputs)
        if verbose:
            print(f"{path} -> {', '.join(outputs)}", flush=True)
    return {"written": written, "skipped": skipped}
