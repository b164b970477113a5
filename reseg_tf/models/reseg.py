"""The ReSeg model: VGG16 front end -> ReNet layers -> transposed-conv upsampling -> softmax."""
import os
import socket

import keras
import tensorflow as tf

from reseg_tf.layers import ImagePreprocessing, ReNetLayer, ResizeToReference
from reseg_tf.models.config import ReSegConfig
from reseg_tf.models.presets import get_preset

# VGG16's convolutions up to block3_conv3 (stride 4), with Keras' layer names so weights from
# `keras.applications.VGG16` (ImageNet or a local file) load by name.
VGG16_FILTERS = (64, 128, 256)
VGG_CONVS_PER_BLOCK = (2, 2, 3)
VGG_LAYER_NAMES = tuple(
    f"block{block}_conv{conv}"
    for block, convs in enumerate(VGG_CONVS_PER_BLOCK, start=1)
    for conv in range(1, convs + 1)
)
MODEL_NAME_PREFIX = "reseg"
# The file `keras.applications.VGG16(include_top=False, weights="imagenet")` downloads.
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{VGG16_WEIGHTS_FILE}"
VGG16_WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"
DOWNLOAD_TIMEOUT_S = 30


class FrontEndWeightsError(ValueError):
    """The front end's pretrained weights cannot be had (no network, or a bad file)."""


def _resolve_config(preset_or_config):
    if isinstance(preset_or_config, ReSegConfig):
        return preset_or_config, "custom"
    if isinstance(preset_or_config, dict):
        return ReSegConfig.from_dict(preset_or_config), "custom"
    if isinstance(preset_or_config, str):
        return get_preset(preset_or_config)[0], preset_or_config
    raise ValueError(
        "`preset_or_config` must be a preset name, a ReSegConfig or a dict, "
        f"got {type(preset_or_config).__name__}."
    )


def _check_input_shape(input_shape):
    try:
        shape = tuple(None if d is None else int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`input_shape` must be (height, width, 3), got {input_shape!r}.") from None
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"`input_shape` must be (height, width, 3) RGB, got {input_shape!r}.")
    if any(d is not None and d < 1 for d in shape[:2]):
        raise ValueError(f"`input_shape` must have positive height and width, got {input_shape!r}.")
    return shape


def _vgg_front_end(x, config, regularizer):
    trainable = not config.freeze_vgg
    blocks = zip(config.vgg_filters, VGG_CONVS_PER_BLOCK)
    for block, (filters, convs) in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(
                filters, 3, padding="same",
                activation=None if config.vgg_batch_norm else "relu",
                kernel_regularizer=regularizer if trainable else None,
                trainable=trainable, name=f"block{block}_conv{conv}",
            )(x)
            if config.vgg_batch_norm:
                x = keras.layers.BatchNormalization(trainable=trainable, name=f"block{block}_bn{conv}")(x)
                x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
        if block < len(VGG_CONVS_PER_BLOCK):
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    return x


def takes_vgg16_weights(config):
    """Whether `config`'s front end is VGG16 itself (its widths, no batch norm), the front end
    that ImageNet VGG16 weights fit."""
    return config.use_vgg and config.vgg_filters == VGG16_FILTERS and not config.vgg_batch_norm


def fetch_imagenet_vgg16_weights():
    """The local path of Keras' ImageNet VGG16 weights, downloaded on first use (cached in
    `~/.keras/models/`); `FrontEndWeightsError` naming both ways on when that fails."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a network that drops packets fails, not hangs
    try:
        return keras.utils.get_file(VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, cache_subdir="models",
                                    file_hash=VGG16_WEIGHTS_MD5)
    except Exception as error:  # Keras wraps every network and file failure in a bare Exception.
        reason = " ".join(str(error).split(" -- ")[-1].split())  # Keras' text repeats the URL first
        raise FrontEndWeightsError(
            f"the ImageNet VGG16 weights could not be downloaded ({reason}). Either give a local "
            f"copy of the Keras VGG16 weights file ({VGG16_WEIGHTS_FILE}, from {VGG16_WEIGHTS_URL}) "
            "with --vgg-weights FILE, or train the front end from random weights with "
            "--vgg-weights none (in Python: vgg_weights=FILE or vgg_weights=\"none\")."
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def load_vgg_weights(model, weights):
    """Copies VGG16 conv weights (`"imagenet"` or a weights file path) into `model`'s front end.

    A file may be the Keras VGG16 "notop" `.h5` download, or any `.weights.h5` saved from
    `keras.applications.VGG16(include_top=False)`.
    """
    if weights == "imagenet":
        weights = fetch_imagenet_vgg16_weights()
    else:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(
                f"VGG weights file {path!r} does not exist (or is not a file); pass "
                "weights='imagenet', None, or the path of a VGG16 (include_top=False) weights file."
            )
        weights = path
    try:
        vgg = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(None, None, 3))
    except Exception as error:  # Keras raises several types for bad/mismatched files.
        raise ValueError(f"could not load VGG16 weights from {weights!r}: {error}") from error
    for name in VGG_LAYER_NAMES:
        model.get_layer(name).set_weights(vgg.get_layer(name).get_weights())


@keras.saving.register_keras_serializable(package="reseg_tf")
class ReSegModel(keras.Model):
    """The ReSeg network as a functional Keras model that remembers its `ReSegConfig`.

    Saving to `.keras` stores the config, so `keras.models.load_model` rebuilds the same graph.
    Prefer `build_model`, which also accepts preset names and loads VGG weights.

    Args:
        config: a `ReSegConfig` or its dict.
        input_shape: `(height, width, 3)`; `None` dims accept any size.
        **kwargs: `keras.Model` arguments (`name`, `trainable`, `dtype`).

    Example:

    >>> model = ReSegModel(get_preset("demo")[0], input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 64, 64, 11)
    """

    def __init__(self, config, input_shape=(None, None, 3), **kwargs):
        if isinstance(config, dict):
            config = ReSegConfig.from_dict(config)
        if not isinstance(config, ReSegConfig):
            raise ValueError(f"`config` must be a ReSegConfig or a dict, got {type(config).__name__}.")
        shape = _check_input_shape(input_shape)
        regularizer = keras.regularizers.L2(config.weight_decay) if config.weight_decay else None

        images = keras.Input(shape=shape, name="image")
        x = ImagePreprocessing("vgg" if config.use_vgg else "unit", name="preprocess")(images)
        if config.use_vgg:
            x = _vgg_front_end(x, config, regularizer)
        for index, ((units, patch_size), rate) in enumerate(
                zip(config.renet, config.dropout_rates), start=1):
            if config.context == "conv":
                x = keras.layers.Conv2D(
                    2 * units, 3, strides=patch_size, padding="same", activation="relu",
                    kernel_regularizer=regularizer, name=f"conv_context_{index}",
                )(x)
                if rate:
                    x = keras.layers.Dropout(rate, name=f"dropout_{index}")(x)
                continue
            x = ReNetLayer(
                units, patch_size=patch_size, rnn=config.rnn, sweep_order=config.sweep_order,
                direction_mode=config.direction_mode, stack_sublayers=config.stack_sublayers,
                kernel_regularizer=regularizer, recurrent_regularizer=regularizer,
                name=f"renet_{index}",
            )(x)
            if rate:
                x = keras.layers.Dropout(rate, name=f"dropout_{index}")(x)
        for index, (filters, kernel_size) in enumerate(config.upsampling, start=1):
            x = keras.layers.Conv2DTranspose(
                filters, kernel_size, strides=kernel_size, activation="relu",
                kernel_initializer="glorot_uniform", kernel_regularizer=regularizer,
                name=f"upsample_{index}",
            )(x)
        x = ResizeToReference(name="resize_to_input")([x, images])
        if config.classifier_dropout:
            x = keras.layers.Dropout(config.classifier_dropout, name="classifier_dropout")(x)
        x = keras.layers.Conv2D(
            config.num_classes, 1, kernel_regularizer=regularizer, name="classifier"
        )(x)
        probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
        super().__init__(inputs=images, outputs=probabilities, **kwargs)
        self.reseg_config = config
        self.image_shape = shape

    # Keras 3.15's `fit` under MultiWorkerMirroredStrategy fails twice (keras-team/keras#20585,
    # tensorflow/tensorflow#72388): the symbolic build MEAN-reduces a PerReplica batch across
    # workers, and the step's scalar logs are reduced with `axis=0`. Building from the local
    # replica's batch and returning logs of shape (1,) in that case avoids both; every other
    # strategy takes Keras' own path unchanged.
    def _runs_multi_worker(self):
        return isinstance(self._distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is None or not self._runs_multi_worker():
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        strategy = self._distribute_strategy
        for _, _, batches in iterator:
            data_batch = next(batches)
            break
        local_batch = tf.nest.map_structure(
            lambda v: strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v,
            data_batch,
        )
        with strategy.scope():
            self._symbolic_build(data_batch=local_batch)

    def _logs_for_strategy(self, logs):
        if not self._runs_multi_worker():
            return logs
        return {key: tf.reshape(value, [1]) if value.shape.rank == 0 else value
                for key, value in logs.items()}

    def train_step(self, data):
        return self._logs_for_strategy(super().train_step(data))

    def test_step(self, data):
        return self._logs_for_strategy(super().test_step(data))

    def get_config(self):
        return {
            "config": self.reseg_config.to_dict(),
            "input_shape": list(self.image_shape),
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_model(preset_or_config="camvid", input_shape=(None, None, 3), weights=None, name=None):
    """Builds a ReSeg Keras model.

    Args:
        preset_or_config: a preset name (see `list_presets()`), a `ReSegConfig` or its dict.
        input_shape: `(height, width, 3)`; `None` dims accept any size. The model reads raw
            0..255 RGB (uint8 or float) and its output always has the input's height and width.
        weights: VGG16 front-end weights: `None` (random init, kept as the config says: a
            frozen VGG16 stays random; `reseg_tf.train` refuses that unless asked), `"imagenet"`
            (downloaded by Keras; `FrontEndWeightsError` when it cannot be) or the path of a
            VGG16 `include_top=False` weights file.
        name: model name (default `reseg_<preset>`).

    Returns:
        A `ReSegModel` mapping `(B, H, W, 3)` images to `(B, H, W, num_classes)` float32
        class probabilities; its config is `model.reseg_config`.
    """
    config, label = _resolve_config(preset_or_config)
    if weights is not None and not config.use_vgg:
        raise ValueError("`weights` were given but this config has use_vgg=False (no VGG front end).")
    if weights is not None and config.vgg_filters != VGG16_FILTERS:
        raise ValueError(
            f"VGG16 weights fit vgg_filters={VGG16_FILTERS}, but this config has "
            f"vgg_filters={config.vgg_filters}; pass weights=None to train the front end from scratch."
        )
    model = ReSegModel(config, input_shape=input_shape, name=name or f"{MODEL_NAME_PREFIX}_{label}")
    if weights is not None:
        load_vgg_weights(model, weights)
    return model


def config_from_model(model):
    """Returns the `ReSegConfig` of a ReSeg model, or raises ValueError for any other model."""
    if isinstance(model, ReSegModel):
        return model.reseg_config
    raise ValueError(f"model {getattr(model, 'name', model)!r} is not a ReSeg model.")


def with_input_size(model, image_size):
    """A copy of a ReSeg model (same config, a copy of its weights) built for `(height, width)`
    inputs; `None` dims accept any size. The copy is built under the current dtype policy."""
    copy = ReSegModel(config_from_model(model), input_shape=(*image_size, 3), name=model.name)
    copy.set_weights(model.get_weights())
    return copy
