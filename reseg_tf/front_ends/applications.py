"""`keras.applications` backbones cut at stride 4 or 8: MobileNetV3-Small (phones), ResNet50
(servers).

The cut backbone is one nested model in the ReSeg graph, named after the front end. ImageNet
weights come from Keras' own weights files (the full backbone is built with them and the
layers of the cut copied by name). Keras is imported where layers are built (see `base.py`).
"""
from reseg_tf.front_ends.base import FrontEnd, register_front_end

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# Layers that regularized kernels live in, and the argument naming each one's kernel regularizer.
REGULARIZED_ARGUMENTS = {"Conv2D": "kernel_regularizer", "DepthwiseConv2D": "depthwise_regularizer",
                         "Dense": "kernel_regularizer"}


class KerasApplication(FrontEnd):
    """A `keras.applications` model without its top, cut after a named layer.

    Args (class attributes): `constructor`, its extra arguments `constructor_arguments`, and
    `cuts`: `{output_stride: (layer name, channels)}`.
    """

    weight_sources = ("imagenet", "file", "none")
    frozen_by_default = True
    constructor = None
    constructor_arguments = {}
    cuts = {}
    weights_file = None  # (file name under KERAS_WEIGHTS_URL, md5)
    option_defaults = {"output_stride": 8}

    def check_options(self, options):
        if options["output_stride"] not in self.cuts:
            raise ValueError(f"{self.name} `output_stride` must be one of {sorted(self.cuts)}, "
                             f"got {options['output_stride']!r}.")

    def output_stride(self, options):
        return options["output_stride"]

    def output_channels(self, options):
        return self.cuts[options["output_stride"]][1]

    def output_layer(self, options):
        return self.name

    def layer_names(self, options):
        return (self.name,)

    def _full(self, weights=None):
        import keras

        return getattr(keras.applications, self.constructor)(
            include_top=False, weights=weights, input_shape=(None, None, 3), **self.constructor_arguments)

    def build(self, x, options, trainable, regularizer):
        import keras

        full = self._full()
        backbone = keras.Model(full.input, full.get_layer(self.cuts[options["output_stride"]][0]).output,
                               name=self.name)
        if trainable and regularizer is not None:
            backbone = keras.models.clone_model(backbone, clone_function=_regularized(regularizer))
        backbone.trainable = trainable
        return backbone(x)

    def imagenet_weights_file(self, options):
        file_name, md5 = self.weights_file
        return file_name.rsplit("/", 1)[-1], KERAS_WEIGHTS_URL + file_name, md5

    def load_weights(self, model, path, options):
        try:
            full = self._full(weights=path)
        except Exception as error:  # Keras raises several types for bad/mismatched files.
            raise ValueError(f"could not load {self.constructor} weights from {path!r}: {error}") from error
        for layer in model.get_layer(self.name).layers:
            if layer.weights:
                layer.set_weights(full.get_layer(layer.name).get_weights())


def _regularized(regularizer):
    def clone(layer):
        argument = REGULARIZED_ARGUMENTS.get(type(layer).__name__)
        if argument is None:
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config({**layer.get_config(), argument: regularizer})

    return clone


class MobileNetV3Small(KerasApplication):
    name = "mobilenet_v3_small"
    description = ("MobileNetV3-Small (for phones) to its stride-4 block (16 channels) or stride-8 "
                   "block (24 channels); ImageNet weights, frozen")
    preprocessing = "unit"  # what MobileNetV3's own preprocessing layer computes
    constructor = "MobileNetV3Small"
    constructor_arguments = {"include_preprocessing": False}
    cuts = {4: ("expanded_conv_project_bn", 16), 8: ("expanded_conv_2_add", 24)}
    weights_file = ("mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                    "d3e8ec802a04aa4fc771ee12a9a9b836")


class ResNet50(KerasApplication):
    name = "resnet50"
    description = ("ResNet50 (for servers) to conv2 (stride 4, 256 channels) or conv3 (stride 8, "
                   "512 channels); ImageNet weights, frozen")
    preprocessing = "vgg"  # ResNet50's "caffe" preprocessing: BGR minus the ImageNet mean
    constructor = "ResNet50"
    cuts = {4: ("conv2_block3_out", 256), 8: ("conv3_block4_out", 512)}
    weights_file = ("resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "4d473c1dd8becc155b73f8504c6f6626")


register_front_end(MobileNetV3Small())
register_front_end(ResNet50())
