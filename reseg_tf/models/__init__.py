"""ReSeg model builder, config and presets."""
from reseg_tf.models.config import BINARY_CLASSES, CAMVID_CLASSES, ReSegConfig
from reseg_tf.models.presets import PRESETS, RECIPES, describe_recipe, get_preset, get_recipe, list_presets
from reseg_tf.models.reseg import (
    FrontEndWeightsError, ReSegModel, build_model, config_from_model, fetch_imagenet_vgg16_weights,
    load_vgg_weights, takes_vgg16_weights, with_input_size,
)

__all__ = [
    "BINARY_CLASSES", "CAMVID_CLASSES", "FrontEndWeightsError", "PRESETS", "ReSegConfig", "ReSegModel", "build_model",
    "RECIPES", "config_from_model", "describe_recipe", "get_preset", "get_recipe", "list_presets", "load_vgg_weights",
    "fetch_imagenet_vgg16_weights", "takes_vgg16_weights", "with_input_size",
]
