"""Small image layers of the ReSeg graph: input preprocessing and resizing back to the input."""
import keras
import tensorflow as tf
from keras import ops

# ImageNet channel means in BGR order, as used to train the VGG16 weights.
VGG_BGR_MEAN = (103.939, 116.779, 123.68)
PREPROCESSING_MODES = ("vgg", "unit")


@keras.saving.register_keras_serializable(package="reseg_tf")
class ImagePreprocessing(keras.layers.Layer):
    """Maps raw 0..255 RGB images (uint8 or float) to what the network expects.

    Args:
        mode: `"vgg"`: RGB -> BGR and subtract the ImageNet mean (VGG16's own preprocessing);
            `"unit"`: scale to [-1, 1] (for the model without the VGG front end).
        **kwargs: base layer arguments.

    Example:

    >>> ImagePreprocessing("vgg")(keras.ops.full((1, 2, 2, 3), 128.0)).shape
    (1, 2, 2, 3)
    """

    def __init__(self, mode="vgg", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESSING_MODES:
            raise ValueError(f"`mode` must be one of {PREPROCESSING_MODES}, got {mode!r}.")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "unit":
            return x / 127.5 - 1.0
        # RGB -> BGR by slicing and concatenating: TFLite's int8 REVERSE_V2 kernel returns wrong
        # values here (argmax agreement of full-int8 models fell to ~50%); slices are exact.
        x = ops.concatenate([x[..., 2:3], x[..., 1:2], x[..., 0:1]], axis=-1)
        return x - ops.convert_to_tensor(VGG_BGR_MEAN, dtype=self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="reseg_tf")
class ResizeToReference(keras.layers.Layer):
    """Bilinearly resizes `inputs[0]` to the spatial size of `inputs[1]`.

    ReSeg's upsampling stack multiplies the ReNet grid by the transposed convolutions' strides;
    when the input size is not a multiple of the total stride (pooling floors, patches pad) that
    grid differs from the image by a few pixels. This layer makes the output match the input
    exactly. It is the identity when both sizes are statically known and equal.

    Args:
        **kwargs: base layer arguments.

    Example:

    >>> ResizeToReference()([keras.ops.zeros((1, 4, 4, 2)), keras.ops.zeros((1, 5, 6, 3))]).shape
    (1, 5, 6, 2)
    """

    def call(self, inputs):
        features, reference = inputs
        target = features.shape[1:3]
        if None not in target and tuple(target) == tuple(reference.shape[1:3]):
            return features
        # tf.image.resize accepts a dynamic size tensor (keras.ops.image.resize wants ints).
        resized = tf.image.resize(features, tf.shape(reference)[1:3], method="bilinear")
        return ops.cast(resized, features.dtype)

    def compute_output_shape(self, input_shapes):
        features, reference = input_shapes
        return (features[0], reference[1], reference[2], features[3])
