"""VGG-shaped front ends: VGG16 itself (the paper's) and the from-scratch stem.

Both name their layers as `keras.applications.VGG16` does (`block1_conv1`, `block1_pool`,
...), so VGG16 weights load by name and fine-tuning matches layers across them. Keras is
imported where layers are built (see `base.py`).
"""
from reseg_tf.front_ends.base import FrontEnd, register_front_end

VGG16_FILTERS = (64, 128, 256, 512)
VGG_CONVS_PER_BLOCK = (2, 2, 3, 3)
VGG16_OUTPUT_LAYERS = ("block3_conv3", "block4_conv3")  # stride 4, stride 8
VGG16_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG16_WEIGHTS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg16/{VGG16_WEIGHTS_FILE}"
VGG16_WEIGHTS_MD5 = "6d6bbae143d832006294945121d1f1fc"


def vgg_layer_names(blocks, batch_norm=False):
    """The conv (and batch norm) layer names of the first `blocks` VGG blocks."""
    kinds = ("conv", "bn") if batch_norm else ("conv",)
    return tuple(f"block{block}_{kind}{conv}" for block in range(1, blocks + 1)
                 for conv in range(1, VGG_CONVS_PER_BLOCK[block - 1] + 1) for kind in kinds)


def build_vgg_blocks(x, filters, batch_norm, trainable, regularizer):
    """VGG blocks of `filters[i]` channels, 2x2 max pooling between them (not after the last)."""
    import keras

    for block, (width, convs) in enumerate(zip(filters, VGG_CONVS_PER_BLOCK), start=1):
        for conv in range(1, convs + 1):
            x = keras.layers.Conv2D(
                width, 3, padding="same", activation=None if batch_norm else "relu",
                kernel_regularizer=regularizer if trainable else None,
                trainable=trainable, name=f"block{block}_conv{conv}",
            )(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(trainable=trainable, name=f"block{block}_bn{conv}")(x)
                x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
        if block < len(filters):
            x = keras.layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    return x


class VGG16(FrontEnd):
    name = "vgg16"
    description = ("VGG16's convolutions (the paper's front end), to block3_conv3 (stride 4) or "
                   "block4_conv3 (stride 8); ImageNet weights, frozen")
    preprocessing = "vgg"
    weight_sources = ("imagenet", "file", "none")
    frozen_by_default = True
    weights_flag = "--vgg-weights"
    option_defaults = {"output_layer": "block3_conv3"}

    def check_options(self, options):
        if options["output_layer"] not in VGG16_OUTPUT_LAYERS:
            raise ValueError(f"vgg16 `output_layer` must be one of {VGG16_OUTPUT_LAYERS}, "
                             f"got {options['output_layer']!r}.")

    def _blocks(self, options):
        return 3 + VGG16_OUTPUT_LAYERS.index(options["output_layer"])

    def output_stride(self, options):
        return 2 ** (self._blocks(options) - 1)

    def output_channels(self, options):
        return VGG16_FILTERS[self._blocks(options) - 1]

    def output_layer(self, options):
        return options["output_layer"]

    def layer_names(self, options):
        return vgg_layer_names(self._blocks(options))

    def build(self, x, options, trainable, regularizer):
        return build_vgg_blocks(x, VGG16_FILTERS[:self._blocks(options)], False, trainable, regularizer)

    def imagenet_weights_file(self, options):
        return VGG16_WEIGHTS_FILE, VGG16_WEIGHTS_URL, VGG16_WEIGHTS_MD5

    def load_weights(self, model, path, options):
        """`path`: the Keras VGG16 "notop" `.h5` download, or any `.weights.h5` saved from
        `keras.applications.VGG16(include_top=False)`."""
        import keras

        try:
            vgg = keras.applications.VGG16(include_top=False, weights=path, input_shape=(None, None, 3))
        except Exception as error:  # Keras raises several types for bad/mismatched files.
            raise ValueError(f"could not load VGG16 weights from {path!r}: {error}") from error
        for name in self.layer_names(options):
            model.get_layer(name).set_weights(vgg.get_layer(name).get_weights())


class ScratchStem(FrontEnd):
    name = "scratch_stem"
    description = ("the VGG16-shaped stem trained from scratch on a CPU: 3 blocks of (32, 64, 128) "
                   "filters with batch norm (stride 4; 4 blocks: stride 8)")
    preprocessing = "vgg"
    option_defaults = {"filters": (32, 64, 128), "batch_norm": True}

    def check_options(self, options):
        filters = options["filters"]
        if (not isinstance(filters, tuple) or len(filters) not in (3, 4)
                or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters)):
            raise ValueError(f"scratch_stem `filters` must be 3 or 4 positive ints, got {filters!r}.")
        if not isinstance(options["batch_norm"], bool):
            raise ValueError(f"scratch_stem `batch_norm` must be a bool, got {options['batch_norm']!r}.")

    def output_stride(self, options):
        return 2 ** (len(options["filters"]) - 1)

    def output_channels(self, options):
        return options["filters"][-1]

    def output_layer(self, options):
        block, convs = len(options["filters"]), VGG_CONVS_PER_BLOCK[len(options["filters"]) - 1]
        return f"block{block}_{'relu' if options['batch_norm'] else 'conv'}{convs}"

    def layer_names(self, options):
        return vgg_layer_names(len(options["filters"]), options["batch_norm"])

    def build(self, x, options, trainable, regularizer):
        return build_vgg_blocks(x, options["filters"], options["batch_norm"], trainable, regularizer)


register_front_end(VGG16())
register_front_end(ScratchStem())
