"""`make_dataset`: the single entry point from files on disk to `model.fit`-ready batches.

decode (+ resize) -> cache -> shuffle -> repeat -> augment -> class weights -> batch -> LCN
-> prefetch, every map with `num_parallel_calls=AUTOTUNE`.
"""
import hashlib
import os

import numpy as np
import tensorflow as tf

from pipelines.augment import AugmentConfig, augment_example, local_contrast_normalization
from pipelines.class_weights import median_frequency_weights, pairs_fingerprint
from pipelines.files import BadFileError
from pipelines.image_ops import resize_image, resize_labels
from pipelines.sources import get_source

_MAX_LISTED_PROBLEMS = 20


def check_pairs(source, pairs):
    """Header checks of every pair; returns the set of (height, width) example sizes.

    Raises ValueError listing every bad file (missing, empty, truncated, not an image, wrong
    mask mode, image/mask size mismatch).
    """
    problems, sizes = [], set()
    for image_path, mask_path in pairs:
        try:
            _, mask_info = source.check_pair_headers(image_path, mask_path)
        except BadFileError as error:
            problems.append(str(error))
        else:
            sizes.add(mask_info.size)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
        more = len(problems) - _MAX_LISTED_PROBLEMS
        more = f"\n  ... and {more} more" if more > 0 else ""
        raise ValueError(f"{source.name}: {len(problems)} bad file(s) in {source.data_dir} "
                         f"(`reseg verify-dataset` lists all checks):\n  {listed}{more}")
    return sizes


def _resolve_augment(augment):
    if augment is True:
        return AugmentConfig()
    if augment is False or augment is None:
        return None
    if isinstance(augment, AugmentConfig):
        return augment
    raise ValueError(f"augment must be True, False or an AugmentConfig, got {augment!r}")


def _resolve_class_weights(class_balance, source, cache_dir):
    if class_balance is True:
        return median_frequency_weights(source, "train", cache_dir=cache_dir)
    if class_balance is False or class_balance is None:
        return None
    weights = np.asarray(class_balance, np.float32)
    if weights.shape != (source.num_classes,):
        raise ValueError(f"class_balance weights must have shape ({source.num_classes},), "
                         f"got {weights.shape}")
    return weights


def _check_image_size(image_size):
    if image_size is None:
        return None
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width) of positive ints, got {image_size!r}")
    return tuple(int(side) for side in image_size)


def make_dataset(source, split, *, data_dir=None, batch_size=5, image_size=None, augment=False,
                 class_balance=False, shuffle=None, seed=0, cache=True, deterministic=False,
                 repeat=False, drop_remainder=False, lcn=False, cache_dir=None, **source_options):
    """Batches of `(image, mask)` or `(image, mask, sample_weight)` from a dataset on disk.

    Args:
        source: a dataset name (`camvid`, `weizmann_horse`, `oxford_flowers17`, `folder`) or a
            `DataSource`.
        split: split name, e.g. `"train"` (see `source.splits`).
        data_dir: dataset root (with a name; `camvid` defaults to the embedded sample).
        batch_size: examples per batch.
        image_size: `(height, width)` to resize to before caching (`pipelines.image_ops`:
            antialiased bilinear images, nearest-neighbour masks); None keeps the native size (then all examples must share one size unless
            `batch_size == 1` or `augment.crop_size` is set).
        augment: False, True (`AugmentConfig()` defaults) or an `AugmentConfig`. Applied to
            whatever split is asked for: training code passes it for the training split only.
        class_balance: False, True (median-frequency weights of the `train` split, see
            `median_frequency_weights`) or an array of `num_classes` weights; adds a per-pixel
            `sample_weight` (the pixel's class weight, 0 on void).
        shuffle: shuffle examples each epoch; default: only for `split == "train"`.
        seed: seed of shuffling and augmentation (same seed, same batches when deterministic).
        cache: keep decoded (and resized) examples in memory, or in files under `cache_dir`.
        deterministic: keep the element order of parallel maps (slower; needed for exact
            reproducibility).
        repeat: repeat forever (shuffling and augmentation differ every epoch).
        drop_remainder: drop the last incomplete batch.
        lcn: local contrast normalization of the images (True, or a dict of
            `local_contrast_normalization` arguments); the images are then no longer 0..255.
        cache_dir: folder for the example cache files and the class-weight cache.
        **source_options: passed to `get_source` (e.g. `num_classes=` for `folder`).

    Returns:
        A `tf.data.Dataset` of `(float32 (B, H, W, 3) RGB 0..255, int32 (B, H, W))` batches,
        void pixels equal to `source.num_classes`, plus `float32 (B, H, W)` sample weights with
        `class_balance`.
    """
    source = get_source(source, data_dir, **source_options)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    image_size = _check_image_size(image_size)
    augment = _resolve_augment(augment)
    pairs = source.pairs(split)
    sizes = check_pairs(source, pairs)
    if image_size is None and len(sizes) > 1 and batch_size > 1 and not (augment and augment.crop_size):
        examples = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise ValueError(f"{source.name} {split!r} has examples of {len(sizes)} sizes (HxW: {examples}, "
                         "...); pass image_size=(H, W), batch_size=1 or an AugmentConfig with crop_size")
    class_weights = _resolve_class_weights(class_balance, source, cache_dir)
    shuffle = (split == "train") if shuffle is None else shuffle
    ignore_label = source.ignore_label

    def decode(image_path, mask_path):
        image, labels = source.load_example(image_path, mask_path)
        if image_size is not None:
            image = tf.cast(resize_image(image, image_size), tf.uint8)
            labels = resize_labels(labels, image_size)
        # uint8 halves the cache of int32 masks; labels are at most 255.
        return image, tf.cast(labels, tf.uint8)

    dataset = tf.data.Dataset.from_tensor_slices(tuple(map(list, zip(*pairs))))
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        if cache_dir:
            key = hashlib.sha256(f"{pairs_fingerprint(source, split, pairs)}{image_size}".encode())
            os.makedirs(os.path.join(cache_dir, "examples"), exist_ok=True)
            dataset = dataset.cache(os.path.join(cache_dir, "examples",
                                                 f"{source.name}-{split}-{key.hexdigest()[:20]}"))
        else:
            dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()

    def to_model_types(image, labels):
        return tf.cast(image, tf.float32), tf.cast(labels, tf.int32)

    dataset = dataset.map(to_model_types, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        example_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, example_seeds)
        dataset = dataset.map(
            lambda example, example_seed: augment_example(*example, example_seed, augment, ignore_label),
            num_parallel_calls=tf.data.AUTOTUNE)
    if class_weights is not None:
        pixel_weights = tf.constant(np.append(class_weights, 0.0).astype(np.float32))
        dataset = dataset.map(lambda image, labels: (image, labels, tf.gather(pixel_weights, labels)),
                              num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder,
                            num_parallel_calls=tf.data.AUTOTUNE)
    if lcn:
        lcn_arguments = lcn if isinstance(lcn, dict) else {}
        dataset = dataset.map(
            lambda image, *rest: (local_contrast_normalization(image, **lcn_arguments), *rest),
            num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
