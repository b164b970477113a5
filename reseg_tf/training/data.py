"""Data assembly for training: the data source, the model config it implies, class weights and
the `tf.data` datasets (images, or cached front-end features). The only part of training that
uses `pipelines`.
"""
import dataclasses
import os

import tensorflow as tf

from reseg_tf.distribute import distribute_options
from reseg_tf.models import get_preset
from reseg_tf.training.config import FLIP_ONLY
from reseg_tf.training.feature_cache import cache_features, random_flip_features, split_frozen_front_end


def load_source(config):
    """The `pipelines` data source of `config.dataset`."""
    import pipelines

    return pipelines.get_source(config.dataset, config.data_dir, **config.dataset_options)


def model_config_for(config, source):
    """`(ReSegConfig, (height, width))`: the preset adapted to the source's classes, and the
    size to train at."""
    model_config, preset_size, _ = get_preset(config.preset)
    if model_config.num_classes != source.num_classes:
        print(f"Preset {config.preset!r} has {model_config.num_classes} classes; dataset "
              f"{config.dataset!r} has {source.num_classes}: using the dataset's classes.", flush=True)
    model_config = model_config.replace(
        num_classes=source.num_classes, class_names=tuple(source.class_names),
        weight_decay=config.weight_decay,
    )
    if config.front_end_weights == "none":
        # A random front end learns; kept fixed only when asked for.
        model_config = model_config.replace(freeze_front_end=bool(config.freeze_front_end))
    image_size = tuple(config.image_size or preset_size)
    crop = config.crop_size
    if crop is not None and (crop[0] > image_size[0] or crop[1] > image_size[1]):
        origin = (f"preset {config.preset!r}'s recipe crops" if "crop_size" in getattr(config, "from_recipe", ())
                  else "`crop_size`")
        raise ValueError(f"{origin} {crop[0]}x{crop[1]}, larger than the training image size "
                         f"{image_size[0]}x{image_size[1]} (`image_size` or the preset's); crops must fit: "
                         "give --crop-size H W within it, or --no-crop.")
    return model_config, image_size


def measure_training_scale(source, image_size, max_files=200):
    """The pixel scale the model trains at: the training size's side over the training labels'
    (the median over up to `max_files` train masks of `sqrt(H * W / (h * w))`, so it does not
    depend on orientation). Tiled inference (`reseg_tf.tiling`) resizes large images by it; None
    when no header can be read."""
    import numpy as np
    from PIL import Image

    pairs = source.pairs("train")
    step = max(1, len(pairs) // max_files)
    ratios = []
    for _, mask_path in pairs[::step][:max_files]:
        try:
            with Image.open(mask_path) as mask:  # reads the header only
                width, height = mask.size
        except OSError:
            continue
        ratios.append(np.sqrt(image_size[0] * image_size[1] / (height * width)))
    return round(float(np.median(ratios)), 6) if ratios else None


def class_weights(config, source):
    """The training split's per-class pixel weights (None without class balancing)."""
    if not config.class_balance:
        return None
    import pipelines

    weights = pipelines.median_frequency_weights(source, "train")
    if config.class_balance_power != 1:
        weights = weights ** config.class_balance_power
        print("Class weights (median frequency ** {:g}): {}".format(
            config.class_balance_power, ", ".join(f"{w:.2f}" for w in weights)), flush=True)
    return weights


def make_datasets(config, source, image_size, global_batch_size):
    """`(train, val)` image datasets, batched to `global_batch_size`, train augmented per `config`."""
    import pipelines

    if "val" not in source.splits:
        raise ValueError(f"dataset {config.dataset!r} in {source.data_dir} has no 'val' split "
                         f"(splits: {', '.join(source.splits)}); model selection needs one.")
    # TPUs need static batch shapes.
    common = dict(batch_size=global_batch_size, image_size=image_size, seed=config.seed,
                  drop_remainder=config.strategy == "tpu")
    class_balance = class_weights(config, source)
    augment = False
    if config.augment:
        augment = pipelines.AugmentConfig(**FLIP_ONLY) if config.augment_mode == "flip" else pipelines.AugmentConfig()
    if config.crop_size:
        # Crops without --augment: no flips, zoom, shifts or colour; just the crop.
        augment = dataclasses.replace(
            augment or pipelines.AugmentConfig(**{**FLIP_ONLY, "hflip": False}),
            crop_size=config.crop_size)
    train_data = pipelines.make_dataset(
        source, "train", augment=augment, class_balance=class_balance,
        shuffle=True, repeat=config.steps_per_epoch is not None, **common,
    )
    val_data = pipelines.make_dataset(source, "val", shuffle=False, **common)
    return distribute_options(train_data), distribute_options(val_data)


def make_feature_datasets(config, source, model, image_size, paths, verbose):
    """`(head, train, val)` for training on cached front-end features (see `TrainConfig`)."""
    import pipelines

    front_end, head = split_frozen_front_end(model, image_size)
    common = dict(batch_size=config.batch_size, image_size=image_size, seed=config.seed, shuffle=False)
    cached = {}
    for split, balance in (("train", class_weights(config, source)), ("val", False)):
        print(f"Caching front-end features of {split} in {paths['feature_cache']}/{split} ...", flush=True)
        plain = pipelines.make_dataset(source, split, augment=False, class_balance=balance, **common)
        cached[split] = cache_features(front_end, plain, os.path.join(paths["feature_cache"], split),
                                       verbose=1 if verbose == 1 else 0)
    train = cached["train"]
    if config.augment:
        train = random_flip_features(train, seed=config.seed)
    train = train.shuffle(512, seed=config.seed).batch(config.batch_size)
    if config.steps_per_epoch is not None:
        train = train.repeat()
    val = cached["val"].batch(config.batch_size)
    # Build the head's variables view before fit (BackupAndRestore loads weights into it).
    features, *_ = next(iter(val))
    head(features[:1])
    return head, train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)
