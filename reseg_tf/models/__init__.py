"""ReSeg model builder, config and presets.

The public names load on first use (`reseg_tf.lazy_exports`): the presets and recipes are plain
data that `reseg presets` reads without importing Keras.
"""
from reseg_tf.lazy_exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "reseg_tf.front_ends": ("FrontEndWeightsError",),
    "reseg_tf.models.class_names": ("BINARY_CLASSES", "CAMVID_CLASSES"),
    "reseg_tf.models.config": ("ReSegConfig",),
    "reseg_tf.models.presets": ("PRESETS", "RECIPES", "describe_recipe", "get_preset", "get_recipe", "list_presets"),
    "reseg_tf.models.reseg": ("ReSegModel", "build_model", "config_from_model", "front_end_layers",
                              "with_input_size"),
})
