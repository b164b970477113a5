"""Evaluation of a ReSeg model on a dataset split: `reseg_tf.evaluate(...)` and `reseg evaluate`.

Metrics are computed at the labels' full resolution: each image, decoded by its dataset source,
goes through `reseg_tf.inference.Predictor` (resized to the model's working size exactly as in
training, probabilities resized back to the label size before the argmax).

Images with NaN or infinite values are refused (ValueError) by `Predictor`, and so by evaluate
and predict; a direct `model(images)` call returns NaN probabilities for them.
"""
import os
import re

import keras
import numpy as np
import tensorflow as tf

from reseg_tf.inference import Predictor
from reseg_tf.metrics import summarize_confusion
from reseg_tf.model_io import load_reseg_model
from reseg_tf.models import config_from_model
from reseg_tf.run_files import atomic_write_json


# Lines TensorFlow wraps around the real cause of an op error raised inside `fit`/tf.data.
_OP_ERROR_NOISE = re.compile(r"^(Graph execution error:|Detected at node|<stack traces unavailable>|\s*\[\[)")


def op_error_summary(error):
    """The line of a TensorFlow op error that says what went wrong (for a failed in-graph check:
    its message, which names the file), without TensorFlow's wrapping."""
    message = getattr(error, "message", None) or str(error)
    lines = [re.sub(r"^\{\{[^}]*\}\}\s*", "", line).strip() for line in message.splitlines()]
    lines = [line for line in lines if line and not _OP_ERROR_NOISE.match(line)] or [message.strip()]
    cause = lines[0]
    if "assertion failed:" in cause:
        cause = cause.split("assertion failed:", 1)[1].strip()
    # A Python reader's exception (tf.numpy_function) comes after tf.data's iterator path.
    raised = re.search(r"\b(?:ValueError|BadFileError): (.*)", cause)
    return raised.group(1) if raised else cause


def _check_classes(model, source):
    model_classes = config_from_model(model).num_classes
    if model_classes != source.num_classes:
        raise ValueError(f"the model predicts {model_classes} classes but dataset {source.name!r} "
                         f"has {source.num_classes}.")


def _examples(source, split):
    import pipelines

    # Batch 1 at native size: datasets may mix image sizes; deterministic keeps the file order.
    return pipelines.make_dataset(source, split, batch_size=1, image_size=None, shuffle=False,
                                  cache=False, deterministic=True)


CONFIDENT_FRACTION = 0.9


def evaluate_model(model, source, split, image_size=None, verbose=1, tta="none", mc_samples=0, seed=0,
                   uncertainty=False, tile=False, scale=None, per_image=False):
    """Streams a split through the model and returns `summarize_confusion`'s dict plus
    `baseline_mean_iou` (predicting the split's most frequent class everywhere), `num_images`,
    `confusion_matrix` (rows: ground truth, columns: prediction), `ece` (expected calibration
    error, 15 bins, `reseg_tf.calibration`), `ms_per_image` (model time, decoding excluded) and
    the averaging used (`tta`, `mc_samples`). With `uncertainty`, also `mean_iou_confident_90`
    and `global_acc_confident_90`: the scores of the split's 90% most confident pixels. With
    `tile` (`reseg_tf.tiling`), also `tile_scale`: the factor images were resized by. With
    `per_image`, also `image_confusion_matrices`: one per image, in the split's order (what
    `metrics.paired_bootstrap_mean_iou` compares two models with)."""
    import time

    from pipelines.progress import progress_bar
    from reseg_tf.calibration import CalibrationAccumulator

    _check_classes(model, source)
    predictor = Predictor(model, image_size, tta=tta, mc_samples=mc_samples, seed=seed, tile=tile, scale=scale)
    num_classes = source.num_classes
    confusion = np.zeros((num_classes, num_classes), np.int64)
    calibration = CalibrationAccumulator(num_classes, selective=uncertainty)
    pairs = source.pairs(split)
    count = len(pairs)
    progress = progress_bar(count, unit_name="image", enabled=verbose == 1)
    examples = iter(_examples(source, split))
    model_seconds = []
    image_confusions = []
    for step, (image_path, mask_path) in enumerate(pairs, start=1):
        try:
            images, labels, *_ = next(examples)
        except tf.errors.OpError as error:  # decoding or a label check failed (in order: batch 1)
            raise ValueError(f"{image_path} / {mask_path}: {op_error_summary(error)}") from None
        started = time.perf_counter()
        probabilities = predictor.probabilities(images).numpy()
        model_seconds.append(time.perf_counter() - started)
        classes = probabilities.argmax(axis=-1).astype(np.int64).ravel()
        truth = labels.numpy().astype(np.int64).ravel()
        valid = (truth >= 0) & (truth < num_classes)
        image_confusion = np.bincount(truth[valid] * num_classes + classes[valid],
                                      minlength=num_classes ** 2).reshape(num_classes, num_classes)
        confusion += image_confusion
        if per_image:
            image_confusions.append(image_confusion.tolist())
        calibration.update(truth, classes, probabilities.max(axis=-1))
        progress.update(step)
    summary = summarize_confusion(confusion, source.class_names)
    pixels = confusion.sum()
    summary["baseline_mean_iou"] = float(confusion.sum(axis=1).max() / pixels / num_classes) if pixels else 0.0
    summary["num_images"] = count
    summary["ece"] = calibration.ece()
    if uncertainty:
        confident = summarize_confusion(calibration.confident_confusion(CONFIDENT_FRACTION), source.class_names)
        summary["mean_iou_confident_90"] = confident["mean_iou"]
        summary["global_acc_confident_90"] = confident["global_acc"]
    # The first call traces the graph; the median is the steady per-image cost.
    summary["ms_per_image"] = float(1000 * np.median(model_seconds)) if model_seconds else 0.0
    summary["tta"], summary["mc_samples"] = predictor.tta, predictor.mc_samples
    if tile:
        summary["tile_scale"] = predictor.scale
    summary["reliability"] = calibration.reliability()
    # Rows = ground truth, columns = prediction (void excluded); `reseg report` plots it.
    summary["confusion_matrix"] = confusion.tolist()
    if per_image:
        summary["image_confusion_matrices"] = image_confusions
    return summary


def evaluate(model, dataset="camvid", data_dir=None, split="val", image_size=None, json_path=None,
             verbose=1, tta="none", mc_samples=0, seed=0, uncertainty=False, tile=False, scale=None,
             per_image=False, **dataset_options):
    """Evaluates a ReSeg model (a Keras model or a `.keras` path) on a dataset split.

    Args:
        model: a ReSeg model or the path of its `.keras` file.
        dataset: a `pipelines` source name (or a `DataSource`).
        data_dir: dataset root (camvid: default the embedded sample).
        split: `train`, `val`, `test`, ... (`source.splits`).
        image_size: `(height, width)` to run the model at (default: its input size).
        json_path: if given, the result is also written there (atomically).
        verbose: 1 shows a progress bar.
        tta: `"flip"` averages each image's probabilities with its mirror's (`reseg_tf.averaging`).
        mc_samples: average this many dropout sub-networks (a model trained with dropout).
        seed: seed of the sub-networks' dropout masks.
        uncertainty: also score the 90% most confident pixels (`mean_iou_confident_90`).
        tile: segment each image in overlapping windows at the model's training pixel scale,
            blended (`reseg_tf.tiling`), instead of resizing it to the working size.
        scale: with `tile`, resize images by this factor first (default: the recorded training scale).
        per_image: also return `image_confusion_matrices`, one per image (for comparing two
            models image by image: `reseg_tf.metrics.paired_bootstrap_mean_iou`).
        **dataset_options: passed to `pipelines.get_source` (e.g. `num_classes` for `folder`).

    Returns:
        The `metrics.json`-style dict (`global_acc`, `avg_class_acc`, `mean_iou`, `class_acc`,
        `class_iou`, `ece`, `ms_per_image`, ...), fractions in [0, 1].
    """
    import pipelines

    if json_path and os.path.isdir(json_path):
        raise IsADirectoryError(f"--json {os.fspath(json_path)} is a directory; give a file name")
    if not isinstance(model, keras.Model):
        model_path = os.fspath(model)
        model = load_reseg_model(model_path)
    else:
        model_path = None
    source = pipelines.get_source(dataset, data_dir, **dataset_options)
    summary = evaluate_model(model, source, split, image_size=image_size, verbose=verbose, tta=tta,
                             mc_samples=mc_samples, seed=seed, uncertainty=uncertainty, tile=tile, scale=scale,
                             per_image=per_image)
    # Paths as the caller gave them (relative stay relative): metrics files travel with a repository.
    summary.update(dataset=source.name, split=split,
                   data_dir=None if data_dir is None else os.fspath(data_dir), model=model_path)
    if json_path:
        atomic_write_json(json_path, summary)
    return summary


def format_table(summary, class_names=None):
    """The paper's Table 3 layout: per-class accuracy and IoU, global acc, avg class acc, mean
    IoU, in percent."""
    names = list(class_names or summary["class_acc"])
    width = max(9, *(len(name) for name in names))
    extra = [("ECE", "ece"), ("Mean IoU 90%", "mean_iou_confident_90")]
    extra = [(title, key) for title, key in extra if key in summary]
    header = ["", *names, "Global acc", "Avg class acc", "Mean IoU", *(title for title, _ in extra)]
    rows = [
        ["Class acc", *(summary["class_acc"][n] for n in names), summary["global_acc"],
         summary["avg_class_acc"], summary["mean_iou"], *(summary[key] for _, key in extra)],
        ["Class IoU", *(summary["class_iou"][n] for n in names), "", "", "", *("" for _ in extra)],
    ]
    widths = [max(9, len(h)) for h in header]
    widths[0] = max(width, 9)
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [(f"{100 * v:.1f}" if v != "" else "").rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    absent = summary.get("classes_without_ground_truth") or []
    if absent:
        lines.append(f"(no ground truth for {', '.join(absent)}: counted as 0 in the averages)")
    return "\n".join(lines)
