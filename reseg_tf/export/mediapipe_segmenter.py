"""Export verification in MediaPipe Tasks' `ImageSegmenter`, the runtime phone and web apps use.

With the `mediapipe` extra installed (`pip install -e ".[mediapipe]"`), every exported `.tflite`
is loaded by MediaPipe's Python `vision.ImageSegmenter` from its metadata alone (normalization,
labels, activation: `reseg_tf.export.mediapipe_metadata`), run on the verification images at
their own size, and its category mask compared pixel by pixel with `reseg predict`'s classes.

MediaPipe resizes an image to the model's input size with its own (not antialiased) resize and
resizes the model's output back itself, so near class boundaries some pixels differ from
`reseg predict`, which resizes as training does (on small or oddly sized images, and with a
model whose classes are close, up to several percent). So the agreement is reported, and held
only to `MEDIAPIPE_MIN_AGREEMENT`: low enough for resize differences, high enough to catch a
file MediaPipe reads wrongly (an input normalization that does not match the model's gives
agreements near chance). Loading, labels and mask sizes are checked exactly.
"""
import importlib.util
import time
from pathlib import Path

import numpy as np

MEDIAPIPE_MIN_AGREEMENT = 0.8


def mediapipe_installed():
    """Whether MediaPipe's Python package (the `mediapipe` extra) is importable."""
    return importlib.util.find_spec("mediapipe") is not None


def category_masks(path, images):
    """`(uint8 (H, W) category masks, labels, seconds per image)` of MediaPipe's ImageSegmenter
    running the `.tflite` at `path` on uint8 RGB `(H, W, 3)` images."""
    import mediapipe
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import ImageSegmenter, ImageSegmenterOptions

    options = ImageSegmenterOptions(base_options=BaseOptions(model_asset_path=str(path)),
                                    output_category_mask=True, output_confidence_masks=False)
    segmenter = ImageSegmenter.create_from_options(options)
    try:
        labels = list(segmenter.labels)
        to_image = lambda image: mediapipe.Image(image_format=mediapipe.ImageFormat.SRGB,  # noqa: E731
                                                  data=np.ascontiguousarray(image, np.uint8))
        segmenter.segment(to_image(images[0]))  # warm-up
        start = time.perf_counter()
        # A GRAY8 image: (H, W, 1) in MediaPipe 1.2.
        masks = [segmenter.segment(to_image(image)).category_mask.numpy_view().reshape(np.shape(image)[:2]).copy()
                 for image in images]
        seconds = (time.perf_counter() - start) / len(images)
    finally:
        segmenter.close()
    return masks, labels, seconds


def verify_mediapipe(path, variant, images, reference, class_names):
    """A report row for one `.tflite` run by MediaPipe: `agreement` of its category masks with
    the argmax of `reference` (`reseg predict`'s probabilities per image), labels read from the
    file's metadata checked against `class_names`."""
    problems = []
    try:
        masks, labels, seconds = category_masks(path, images)
    except (RuntimeError, ValueError) as error:
        masks, labels, seconds = None, [], float("nan")
        problems.append(f"MediaPipe ImageSegmenter failed: {str(error).splitlines()[0]}")
    row = {"artifact": f"mediapipe_{variant}", "path": str(path), "size_bytes": Path(path).stat().st_size,
           "latency_ms": seconds * 1000, "max_prob_diff": None, "agreement": None, "labels": labels}
    if masks is not None:
        if labels != list(class_names):
            problems.append(f"labels from the metadata {labels} != the model's class names {list(class_names)}")
        shapes_match = all(mask.shape == r.shape[1:3] for mask, r in zip(masks, reference))
        if not shapes_match:
            problems.append(f"category mask shapes {[m.shape for m in masks]} differ from the images' sizes")
        else:
            same = sum(int(np.sum(mask == np.argmax(r[0], -1))) for mask, r in zip(masks, reference))
            row["agreement"] = same / sum(mask.size for mask in masks)
            if row["agreement"] < MEDIAPIPE_MIN_AGREEMENT:
                problems.append(f"category-mask agreement {row['agreement']:.2%} < {MEDIAPIPE_MIN_AGREEMENT:.0%}")
    row.update(passed=not problems, problems=problems)
    return row
