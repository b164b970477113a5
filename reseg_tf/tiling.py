"""Tiled inference: large images segmented in overlapping windows at the training pixel scale.

Squeezing a 4000x3000 photo to the model's working size (264x352 for CamVid) throws away the
detail thin classes need. With tiles instead:

1. the image is resized (as training resizes) by the pixel scale the model was trained at
   (`training_scale`: the training size over the dataset's own image size, e.g. 264/360 for
   CamVid; 1.0 when unknown, so the image's own pixels; `scale` overrides it). An image smaller
   than one window at that scale is resized to one window, as untiled inference does;
2. it is cut into windows of the working size that overlap by `overlap` of a window;
3. each window's class probabilities are weighted by a smooth window (`window_weights`: largest
   at the centre, near zero at the edges, where a window knows least about its surroundings)
   and blended: each pixel gets the weighted mean over the windows covering it;
4. the blend is resized (bilinear) back to the image's own size.

Windows run in batches of at most `batch_size`, so the model's memory stays the same whatever
the image size; only the blend (the scaled image's size times the classes) grows with the image.
"""
import json
import math
import os

import numpy as np

# Windows are counted in a progress bar from this many per image on.
PROGRESS_MIN_WINDOWS = 32
DEFAULT_OVERLAP = 0.25
DEFAULT_BATCH = 8


def check_tiling(scale, overlap, batch_size):
    """Validated `(scale or None, overlap, batch_size)`; ValueError naming the bad value."""
    if scale is not None and (not np.isfinite(scale) or scale <= 0):
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"tile overlap must be in [0, 1), got {overlap!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"tile batch size must be a positive int, got {batch_size!r}")
    return (None if scale is None else float(scale)), float(overlap), int(batch_size)


def window_starts(length, window, overlap):
    """Start offsets of windows of `window` pixels covering `length` pixels (`length >= window`),
    evenly spread, neighbours overlapping by at least `overlap` of a window."""
    if length <= window:
        return [0]
    stride = max(1.0, window * (1.0 - overlap))
    count = math.ceil((length - window) / stride) + 1
    return sorted({int(round(start)) for start in np.linspace(0, length - window, count)})


def window_weights(height, width):
    """float32 `(height, width)` blending weights: a separable Hann (sin^2) window sampled at
    pixel centres, so every weight is positive and the centre counts most."""
    def along(length):
        return np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 2

    return np.outer(along(height), along(width)).astype(np.float32)


def tiled_size(image_size, window, scale):
    """`(height, width)` the image is resized to before tiling: `scale` times its size, at
    least one window."""
    return tuple(max(side_window, int(round(side * scale))) for side, side_window in zip(image_size, window))


def count_windows(image_size, window, scale, overlap=DEFAULT_OVERLAP):
    """Number of windows `tiled_probabilities` runs for an image of `image_size`."""
    height, width = tiled_size(image_size, window, scale)
    return len(window_starts(height, window[0], overlap)) * len(window_starts(width, window[1], overlap))


def tiled_probabilities(run_windows, image, window, scale=1.0, overlap=DEFAULT_OVERLAP,
                        batch_size=DEFAULT_BATCH, progress=False):
    """float32 `(H, W, C)` blended class probabilities of one `(H, W, 3)` RGB 0..255 image.

    `run_windows` maps float32 `(B, h, w, 3)` windows (`window == (h, w)`) to `(B, h, w, C)`
    probabilities; it is called with at most `batch_size` windows at a time.
    """
    import tensorflow as tf

    from pipelines.progress import progress_bar
    from reseg_tf.inference import to_image_size, to_working_size

    image = tf.convert_to_tensor(image)
    size = tuple(int(side) for side in image.shape[:2])
    scaled_size = tiled_size(size, window, scale)
    scaled = to_working_size(tf.cast(image, tf.float32), scaled_size).numpy()
    positions = [(top, left) for top in window_starts(scaled_size[0], window[0], overlap)
                 for left in window_starts(scaled_size[1], window[1], overlap)]
    weights = window_weights(*window)[..., None]
    blend, total = None, np.zeros((*scaled_size, 1), np.float32)
    bar = progress_bar(len(positions), unit_name="window") if progress and len(positions) >= PROGRESS_MIN_WINDOWS else None
    height, width = window
    for first in range(0, len(positions), batch_size):
        batch = positions[first:first + batch_size]
        windows = np.stack([scaled[top:top + height, left:left + width] for top, left in batch])
        probabilities = np.asarray(run_windows(windows), np.float32)
        if blend is None:
            blend = np.zeros((*scaled_size, probabilities.shape[-1]), np.float32)
        for (top, left), window_probabilities in zip(batch, probabilities):
            blend[top:top + height, left:left + width] += window_probabilities * weights
            total[top:top + height, left:left + width] += weights
        if bar:
            bar.update(first + len(batch))
    blend /= total
    if scaled_size == size:
        return blend
    return to_image_size(blend[None], size)[0].numpy()


def training_scale(model_path):
    """The pixel scale a saved model was trained at, from the `run.json` beside its file (in
    it, for a model folder): the `training_scale` that `reseg train` measured on the training
    labels, or, for runs recorded before it did, the training `image_size` over its dataset's
    own image size (None when neither is known)."""
    from pipelines.sources import SOURCES

    model_path = os.fspath(model_path)
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(model_path)
    record_path = os.path.join(folder, "run.json")
    try:
        with open(record_path, encoding="utf-8") as handle:
            record = json.load(handle)
        settings = record.get("settings", {})
    except (OSError, ValueError, AttributeError):
        return None
    recorded = record.get("training_scale") or settings.get("training_scale")
    if recorded:
        return float(recorded)
    from reseg_tf.models import PRESETS

    # Training resizes every image to `image_size`, the preset's when the run gave none.
    image_size = settings.get("image_size") or PRESETS.get(settings.get("preset"), {}).get("image_size")
    if not image_size:
        return None
    native = getattr(SOURCES.get(settings.get("dataset")), "native_size", None)
    if not native:
        return None
    return float(math.sqrt(image_size[0] / native[0] * image_size[1] / native[1]))
