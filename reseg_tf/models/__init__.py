"""ReSeg model builder, config and presets."""
from reseg_tf.front_ends import FrontEndWeightsError
from reseg_tf.models.config import BINARY_CLASSES, CAMVID_CLASSES, ReSegConfig
from reseg_tf.models.presets import PRESETS, RECIPES, describe_recipe, get_preset, get_recipe, list_presets
from reseg_tf.models.reseg import ReSegModel, build_model, config_from_model, front_end_layers, with_input_size

__all__ = [
    "BINARY_CLASSES", "CAMVID_CLASSES", "FrontEndWeightsError", "PRESETS", "RECIPES", "ReSegConfig", "ReSegModel",
    "build_model", "config_from_model", "describe_recipe", "front_end_layers", "get_preset", "get_recipe",
    "list_presets", "with_input_size",
]
