"""Median-frequency class balancing (Eigen & Fergus 2015), computed once and cached as JSON.

`freq_c = pixels of class c / total pixels of the images that contain c` (void pixels count in
the image totals), `w_c = median(freq) / freq_c`; a class absent from the split gets weight 0
and is left out of the median.
"""
import hashlib
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

from pipelines.sources import get_source

CACHE_ENV_VAR = "RESEG_TF_CACHE_DIR"
_CACHE_FORMAT_VERSION = 1


def default_cache_dir():
    """`$RESEG_TF_CACHE_DIR`, else `$XDG_CACHE_HOME/reseg_tf`, else `~/.cache/reseg_tf`."""
    if os.environ.get(CACHE_ENV_VAR):
        return os.environ[CACHE_ENV_VAR]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "reseg_tf")


def pairs_fingerprint(source, split, pairs):
    """Hash of the dataset path, the source options and every listed file's path and size."""
    digest = hashlib.sha256()
    header = {"source": source.name, "data_dir": source.data_dir, "split": split,
              "options": source.options(), "version": _CACHE_FORMAT_VERSION}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for image_path, mask_path in pairs:
        for path in (image_path, mask_path):
            digest.update(f"{os.path.relpath(path, source.data_dir)}:{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()


def median_frequency_from_counts(class_pixels, containing_image_pixels):
    """Weights from per-class pixel counts and the pixel totals of images containing each class."""
    class_pixels = np.asarray(class_pixels, np.float64)
    containing_image_pixels = np.asarray(containing_image_pixels, np.float64)
    present = class_pixels > 0
    if not present.any():
        raise ValueError("no labelled pixels: cannot compute class weights")
    frequency = np.zeros_like(class_pixels)
    frequency[present] = class_pixels[present] / containing_image_pixels[present]
    weights = np.zeros_like(class_pixels)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights.astype(np.float32)


def count_class_pixels(source, pairs, progress=None):
    """`(class_pixels, containing_image_pixels)` over the masks of `pairs`, both (num_classes,)."""
    num_classes = source.num_classes

    def mask_counts(mask_path):
        raw = source.read_raw_mask(mask_path)
        labels = source.raw_to_labels(raw)
        check = source.assert_valid_labels(labels, raw, mask_path)
        with tf.control_dependencies([check]):
            counts = tf.math.bincount(tf.reshape(labels, [-1]), minlength=num_classes + 1,
                                      maxlength=num_classes + 1, dtype=tf.int64)
        return counts, tf.size(labels, out_type=tf.int64)

    masks = tf.data.Dataset.from_tensor_slices([mask for _, mask in pairs])
    masks = masks.map(mask_counts, num_parallel_calls=tf.data.AUTOTUNE)
    class_pixels = np.zeros(num_classes, np.int64)
    containing_image_pixels = np.zeros(num_classes, np.int64)
    for index, (counts, total) in enumerate(masks.as_numpy_iterator()):
        class_pixels += counts[:num_classes]
        containing_image_pixels += (counts[:num_classes] > 0) * total
        if progress is not None:
            progress.update(index + 1)
    return class_pixels, containing_image_pixels


def median_frequency_weights(source, split="train", *, data_dir=None, cache_dir=None, verbose=True,
                             **source_options):
    """Median-frequency class weights of `split`, float32 (num_classes,).

    Read from `<cache_dir>/class_weights/<name>-<fingerprint>.json` when present, where the
    fingerprint covers the dataset path, source options and the listed files (names and sizes),
    so changed data gets a new entry. Otherwise computed (a message on stderr says so) and
    written there atomically.

    Args:
        source: a dataset name or a `DataSource`.
        split: the split to count (the training split, normally).
        data_dir: dataset root (with a name).
        cache_dir: cache root; default `default_cache_dir()`.
        verbose: print a line to stderr when the weights are computed.
    """
    source = get_source(source, data_dir, **source_options)
    pairs = source.pairs(split)
    fingerprint = pairs_fingerprint(source, split, pairs)
    cache_path = os.path.join(cache_dir or default_cache_dir(), "class_weights",
                              f"{source.name}-{split}-{fingerprint[:20]}.json")
    if os.path.isfile(cache_path):
        with open(cache_path, encoding="utf-8") as handle:
            cached = json.load(handle)
        if cached.get("fingerprint") == fingerprint and len(cached["weights"]) == source.num_classes:
            return np.asarray(cached["weights"], np.float32)
    if verbose:
        print(f"pipelines: computing median-frequency class weights of {source.name} {split!r} "
              f"from {len(pairs)} masks in {source.data_dir}; caching them in {cache_path}",
              file=sys.stderr)
    class_pixels, containing_image_pixels = count_class_pixels(source, pairs)
    weights = median_frequency_from_counts(class_pixels, containing_image_pixels)
    record = {"fingerprint": fingerprint, "source": source.name, "data_dir": source.data_dir,
              "split": split, "options": source.options(), "num_pairs": len(pairs),
              "class_names": list(source.class_names), "weights": weights.tolist(),
              "class_pixels": class_pixels.tolist(),
              "containing_image_pixels": containing_image_pixels.tolist(),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json_atomically(cache_path, record)
    return weights


def write_json_atomically(path, record):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1, default=str)
    os.replace(temporary, path)
