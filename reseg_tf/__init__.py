"""reseg_tf: ReSeg (Visin et al. 2016) semantic segmentation for TensorFlow / Keras 3."""
from reseg_tf.backend_check import require_tensorflow_backend

require_tensorflow_backend()  # before anything imports Keras

from reseg_tf.lazy_exports import lazy_exports

__version__ = "0.2.0"  # the one place the version is written (setup.py reads it from here)
# The public names load on first use: `import reseg_tf` (and `reseg --help`) imports no
# TensorFlow until a model, training or inference is asked for. Training, evaluation and
# prediction import `pipelines` only when they are called.
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "reseg_tf.front_ends": ("list_front_ends",),
    "reseg_tf.layers": ("ReNetLayer",),
    "reseg_tf.models": ("ReSegConfig", "ReSegModel", "build_model", "get_preset", "list_presets"),
    "reseg_tf.evaluation": ("evaluate",),
    "reseg_tf.prediction": ("predict",),
    "reseg_tf.pretrained": ("list_pretrained", "load_pretrained"),
    "reseg_tf.sharing": ("push",),
    "reseg_tf.training": ("TrainConfig", "train"),
})

from reseg_tf.keras_registration import register_when_keras_loads

register_when_keras_loads()  # `keras.models.load_model` finds reseg_tf's classes, as before
