"""The ReSeg model: front end (VGG16, ...) -> ReNet layers -> transposed-conv upsampling -> softmax."""
import keras
import tensorflow as tf

from reseg_tf.layers import ImagePreprocessing, ReNetLayer, ResizeToReference
from reseg_tf.models.config import ReSegConfig
from reseg_tf.models.presets import get_preset

MODEL_NAME_PREFIX = "reseg"


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


@keras.saving.register_keras_serializable(package="reseg_tf")
class ReSegModel(keras.Model):
    """The ReSeg network as a functional Keras model that remembers its `ReSegConfig`.

    Saving to `.keras` stores the config, so `keras.models.load_model` rebuilds the same graph.
    Prefer `build_model`, which also accepts preset names and loads front-end weights.

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
        front_end = config.front_end_spec
        x = ImagePreprocessing(front_end.preprocessing, name="preprocess")(images)
        trainable = not config.freeze_front_end
        x = front_end.build(x, config.front_end_settings, trainable, regularizer if trainable else None)
        features = x
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
        # The front end's output in this graph (a nested backbone's own `.output` is in its graph).
        self.front_end_features = features

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
        weights: the front end's starting weights: `None` or `"none"` (random init, kept as the
            config says: a frozen front end stays random; `reseg_tf.train` refuses that unless
            asked), `"imagenet"` (downloaded by Keras; `FrontEndWeightsError` when it cannot be)
            or the path of a local copy of the front end's Keras weights file (for vgg16, a
            VGG16 `include_top=False` weights file).
        name: model name (default `reseg_<preset>`).

    Returns:
        A `ReSegModel` mapping `(B, H, W, 3)` images to `(B, H, W, num_classes)` float32
        class probabilities; its config is `model.reseg_config`.
    """
    config, label = _resolve_config(preset_or_config)
    front_end = config.front_end_spec
    # Fetched first: a download that fails should not wait for the model to be built.
    path = front_end.fetch_weights(weights, config.front_end_settings)
    model = ReSegModel(config, input_shape=input_shape, name=name or f"{MODEL_NAME_PREFIX}_{label}")
    if path is not None:
        front_end.load_weights(model, path, config.front_end_settings)
    return model


def front_end_layers(model):
    """Names of the layers of `model` that belong to its front end (those with weights)."""
    config = config_from_model(model)
    present = {layer.name for layer in model.layers}
    return [name for name in config.front_end_spec.layer_names(config.front_end_settings) if name in present]


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
