"""reseg_tf: ReSeg (Visin et al. 2016) semantic segmentation for TensorFlow / Keras 3."""
from reseg_tf.layers import ReNetLayer
from reseg_tf.models import ReSegConfig, ReSegModel, build_model, get_preset, list_presets

__version__ = "0.1.0"
__all__ = ["ReNetLayer", "ReSegConfig", "ReSegModel", "build_model", "get_preset", "list_presets"]
