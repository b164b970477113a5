"""reseg_tf: ReSeg (Visin et al. 2016) semantic segmentation for TensorFlow / Keras 3."""
from reseg_tf.backend_check import require_tensorflow_backend

require_tensorflow_backend()  # before anything imports Keras

from reseg_tf.front_ends import list_front_ends
from reseg_tf.layers import ReNetLayer
from reseg_tf.models import ReSegConfig, ReSegModel, build_model, get_preset, list_presets
# Training, evaluation and prediction import `pipelines` only when they are called.
from reseg_tf.evaluation import evaluate
from reseg_tf.prediction import predict
from reseg_tf.pretrained import list_pretrained, load_pretrained
from reseg_tf.sharing import push
from reseg_tf.training import TrainConfig, train

__version__ = "0.1.0"
__all__ = ["ReNetLayer", "ReSegConfig", "ReSegModel", "TrainConfig", "build_model", "evaluate",
           "get_preset", "list_front_ends", "list_presets", "list_pretrained", "load_pretrained", "predict", "push",
           "train"]
