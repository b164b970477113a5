"""Pictures of predictions: class palettes, colour overlays and `image | truth | prediction` strips."""
import os

import numpy as np

from reseg_tf.models import CAMVID_CLASSES
from reseg_tf.run_files import atomic_write_png

OVERLAY_ALPHA = 0.5


def class_palette(model_config):
    """uint8 `(num_classes + 1, 3)` colours (last: void) for a model's classes: CamVid's for 11
    classes, black/white for two, generated colours otherwise."""
    from pipelines.palettes import BINARY_PALETTE, CAMVID_PALETTE, default_palette

    if model_config.num_classes == len(CAMVID_CLASSES):
        return np.asarray(CAMVID_PALETTE, np.uint8)
    if model_config.num_classes == 2:
        return np.asarray(BINARY_PALETTE, np.uint8)
    return default_palette(model_config.num_classes)


def colorize(classes, palette):
    """uint8 RGB `(H, W, 3)` of class indices `(H, W)` (see `pipelines.palettes.colorize`)."""
    from pipelines.palettes import colorize as colorize_labels

    return colorize_labels(classes, palette)


def overlay(image, classes, palette, alpha=OVERLAY_ALPHA):
    """uint8 RGB image blended with the colours of its class map."""
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * colorize(classes, palette)
    return np.round(blended).astype(np.uint8)


def write_prediction_strips(model, source, split, output_dir, count=4, image_size=None):
    """Writes `count` PNG strips `image | ground truth | prediction` of a split to `output_dir`.

    Each pair is decoded by its dataset source and predicted through
    `reseg_tf.inference.Predictor`, as evaluation does, at the labels' size.
    """
    from reseg_tf.inference import Predictor

    if count <= 0:
        return []
    predictor = Predictor(model, image_size)
    os.makedirs(output_dir, exist_ok=True)
    written = []
    for index, (image_path, mask_path) in enumerate(source.pairs(split)[:count]):
        image, labels = (tensor.numpy() for tensor in source.load_example(image_path, mask_path))
        classes = predictor.classes(image[None])[0].numpy()
        gap = np.full((image.shape[0], 4, 3), 255, np.uint8)
        stem = os.path.splitext(os.path.basename(image_path))[0]
        path = os.path.join(output_dir, f"{index:02d}_{stem}.png")
        strip = [image, gap, colorize(labels, source.palette), gap, colorize(classes, source.palette)]
        atomic_write_png(path, np.concatenate(strip, axis=1))
        written.append(path)
    return written
