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


def overlay_painter(model_config, legend=False):
    """A function `(uint8 RGB image, class map) -> overlay` in the model's class colours, with a
    class legend (`pipelines.palettes.draw_legend`, names from the config) when `legend`."""
    from pipelines.palettes import draw_legend

    palette = class_palette(model_config)

    def paint(image, classes):
        blended = overlay(image, classes, palette)
        return draw_legend(blended, model_config.class_names, palette) if legend else blended

    return paint


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


# Uncertainty maps written by `reseg predict --uncertainty`: name -> (file suffix, meaning).
UNCERTAINTY_MAPS = {
    "confidence": ("_confidence.png", "largest class probability"),
    "entropy": ("_entropy.png", "predictive entropy of the averaged class probabilities (nats)"),
    "mutual_information": ("_mutual_information.png",
                           "mutual information between the prediction and the sub-network (nats): "
                           "the part of the entropy due to the model, with --mc-samples only"),
}
HEAT_COLORMAP = "inferno"


def uncertainty_ranges(num_classes):
    """`{map: (low, high)}`: the fixed value range each heat map spans, so maps compare across
    images: confidence 0..1, entropy and mutual information 0..log(num_classes)."""
    top = float(np.log(num_classes))
    return {"confidence": (0.0, 1.0), "entropy": (0.0, top), "mutual_information": (0.0, top)}


def heat_map(values, low, high):
    """uint8 RGB `(H, W, 3)` heat map (inferno colours) of `values` spanning `low..high`."""
    import cv2

    scaled = np.clip((np.asarray(values, np.float64) - low) / (high - low), 0.0, 1.0)
    indices = np.round(255 * scaled).astype(np.uint8)
    return cv2.applyColorMap(indices, cv2.COLORMAP_INFERNO)[..., ::-1].copy()


def write_uncertainty_scale(output_dir, num_classes, maps):
    """Writes `uncertainty_scale.png` (one labelled colour bar per map) and
    `uncertainty_scale.json` (file suffixes, meanings, value ranges) to `output_dir`; returns
    their paths."""
    import cv2

    from reseg_tf.run_files import atomic_write_json

    ranges = uncertainty_ranges(num_classes)
    width, bar, row = 512, 24, 64
    canvas = np.full((row * len(maps) + 8, width + 40, 3), 255, np.uint8)
    for index, name in enumerate(maps):
        low, high = ranges[name]
        top = index * row + 22
        ramp = np.linspace(low, high, width)[None].repeat(bar, axis=0)
        canvas[top:top + bar, 20:20 + width] = heat_map(ramp, low, high)
        cv2.putText(canvas, name.replace("_", " "), (20, top - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for value, x in ((low, 20), ((low + high) / 2, 20 + width // 2 - 16), (high, 20 + width - 40)):
            cv2.putText(canvas, f"{value:.2f}", (x, top + bar + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 0, 0), 1, cv2.LINE_AA)
    png = os.path.join(output_dir, "uncertainty_scale.png")
    atomic_write_png(png, canvas)
    description = {
        "colormap": HEAT_COLORMAP,
        "encoding": "pixel colour = colormap[round(255 * (value - low) / (high - low))], values clipped to "
                    "[low, high]; reseg predict --probabilities writes the exact probabilities",
        "maps": {name: {"file_suffix": UNCERTAINTY_MAPS[name][0], "meaning": UNCERTAINTY_MAPS[name][1],
                        "low": ranges[name][0], "high": ranges[name][1]} for name in maps},
    }
    scale = os.path.join(output_dir, "uncertainty_scale.json")
    atomic_write_json(scale, description)
    return [png, scale]
