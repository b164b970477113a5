"""Training on cached front-end features: run the frozen front end once per dataset, train the rest.

A frozen front end (`freeze_front_end=True`: VGG16 with ImageNet weights, by default) is a
fixed function of the image, so with
augmentation off every epoch recomputes the same features; it is also most of a training
step's time. Here the front end runs once over the dataset, its features are kept (in memory or
in a `tf.data` snapshot on disk, float16 by default), and a head model that shares the full
model's ReNet/upsampling/classifier layers trains on them. Training the head trains the full
model's weights: save or export the full model afterwards.

Augmentation: the cache holds the features of the images as the dataset gave them, so build it
from the *evaluation* (un-augmented) pipeline; image-space augmentation (crops, scaling, colour)
cannot be applied afterwards. `random_flip_features` offers the one augmentation that maps to
feature space: a left-right flip of features, mask and weights together. It is an
approximation: features of a flipped image are not exactly the flipped features (the
kernels are not mirror-symmetric), and when the width is not a multiple of the front end's
stride the flipped grid is off by the floored pixels.

Typical use:

    front_end, head = split_frozen_front_end(model)
    features = cache_features(front_end, eval_style_train_dataset, "cache/train_features")
    head.compile(optimizer=..., loss=...)
    head.fit(random_flip_features(features).shuffle(500).batch(5), epochs=...)
    model.save("model.keras")  # the full model, trained weights included
"""
import os
import shutil

import keras
import tensorflow as tf

from reseg_tf.models import config_from_model


class FeatureHead(keras.Model):
    """The part of a ReSeg model after its front end, reading cached features.

    It calls the full model's own layer objects, so both models share weights. The output is
    resized to `image_size`, the size of the images the features came from.

    Args:
        model: the full `ReSegModel`.
        image_size: `(height, width)` of the original images.
    """

    def __init__(self, model, image_size, **kwargs):
        super().__init__(**kwargs)
        config = config_from_model(model)
        self.image_size = tuple(int(d) for d in image_size)
        self.renets = [model.get_layer(f"renet_{i}") for i in range(1, len(config.renet) + 1)]
        self.upsamplers = [
            model.get_layer(f"upsample_{i}") for i in range(1, len(config.upsampling) + 1)
        ]
        self.resize = model.get_layer("resize_to_input")
        self.classifier = model.get_layer("classifier")
        self.probabilities = model.get_layer("probabilities")

    def call(self, features):
        x = features
        for layer in self.renets + self.upsamplers:
            x = layer(x)
        # ResizeToReference reads only the reference's height and width: a zero-channel
        # tensor of the image size costs no memory.
        reference = tf.zeros(tf.stack([tf.shape(x)[0], *self.image_size, 0]), x.dtype)
        reference.set_shape((None, *self.image_size, 0))
        x = self.resize([x, reference])
        return self.probabilities(self.classifier(x))


def front_end_output_layer(model):
    """Name of the last layer of `model`'s front end (the features that get cached), as its
    front end declares it."""
    config = config_from_model(model)
    front_end, options = config.front_end_spec, config.front_end_settings
    if front_end.layer_names(options) and not config.freeze_front_end:
        raise ValueError(
            f"model {model.name!r} trains its {front_end.name} front end (freeze_front_end=False): "
            "its features change during training and cannot be cached."
        )
    return front_end.output_layer(options)


def split_frozen_front_end(model, image_size=None):
    """Splits a ReSeg model into its frozen front end and a head that trains on its features.

    Args:
        model: a `ReSegModel` with `freeze_front_end=True` (or with the `none` front end).
        image_size: `(height, width)` of the training images; default: the model's input size,
            which must then be static.

    Returns:
        `(front_end_model, head_model)`: `front_end_model` maps images to features;
        `head_model` maps features to class probabilities of shape
        `(B, height, width, num_classes)`, sharing the full model's layers and weights.
    """
    if image_size is None:
        image_size = model.input_shape[1:3]
        if None in image_size:
            raise ValueError(
                f"model {model.name!r} has input shape {model.input_shape}: pass `image_size` "
                "(the training images' (height, width))."
            )
    front_end_output_layer(model)  # refuses a front end that trains
    front_end = keras.Model(model.input, model.front_end_features, name=f"{model.name}_front_end")
    front_end.trainable = False
    head = FeatureHead(model, image_size, name=f"{model.name}_head")
    return front_end, head


def cache_features(front_end_model, dataset, path=None, dtype="float16", verbose=1):
    """Runs the front end once over `dataset` and returns its features as a dataset.

    Args:
        front_end_model: the first model returned by `split_frozen_front_end`.
        dataset: a batched `tf.data.Dataset` of `(images, masks)` or
            `(images, masks, sample_weights)`, without random augmentation (see module doc).
        path: `None` keeps the features in memory; a directory path stores them there as a
            `tf.data` snapshot (written to a temporary directory, then renamed). An existing
            cache at `path` is reused as is: delete it after changing the model or the data.
        dtype: storage dtype of the features, `"float16"` (half the memory) or `"float32"`.
        verbose: 1 shows a progress bar while computing.

    Returns:
        An unbatched `tf.data.Dataset` of `(features, mask[, sample_weight])`, features as
        float32 (features of one image: `(h, w, channels)`); shuffle and batch it for training.
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"`dtype` must be 'float16' or 'float32', got {dtype!r}.")

    def to_float32(features, *labels):
        return (tf.cast(features, tf.float32), *labels)

    if path is not None:
        path = os.fspath(path)
        if os.path.exists(path):
            return tf.data.Dataset.load(path).map(to_float32)

    @tf.function(autograph=False)
    def features_of(images):
        return tf.cast(front_end_model(images, training=False), dtype)

    def compute(images, *labels):
        return (features_of(images), *labels)

    cardinality = int(dataset.cardinality())
    progress = keras.utils.Progbar(cardinality if cardinality > 0 else None, verbose=verbose,
                                   unit_name="batch")
    if path is None:
        # One pass fills the in-memory cache; every later epoch reads it.
        features = dataset.map(compute).cache()
        for _ in features:
            progress.add(1)
        return features.unbatch().map(to_float32)

    temporary = f"{path}.partial-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    counted = dataset.map(compute).map(_counting(progress))
    counted.unbatch().save(temporary)
    os.replace(temporary, path)
    return tf.data.Dataset.load(path).map(to_float32)


def _counting(progress):
    def count(*batch):
        tf.py_function(lambda: progress.add(1), [], [])
        return batch

    return count


def random_flip_features(dataset, seed=None):
    """Flips each example's features, mask (and weights) left-right with probability 1/2.

    The feature-space stand-in for the image pipeline's random flip (an approximation, see the
    module doc). `dataset` is unbatched `(features, mask[, sample_weight])`.
    """

    def flip(features, *labels):
        do_flip = tf.random.uniform((), seed=seed) < 0.5
        flipped = [tf.cond(do_flip, lambda t=t: tf.reverse(t, axis=[1]), lambda t=t: t)
                   for t in (features, *labels)]
        return tuple(flipped)

    return dataset.map(flip, num_parallel_calls=tf.data.AUTOTUNE)
