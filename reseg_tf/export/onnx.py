"""ONNX export: `reseg export --onnx` writes `DIR/onnx/<version>/<name>.onnx`.

The ONNX model has the SavedModel's contract: float32 images `(B, H, W, 3)`, RGB 0..255, of
any size in, class probabilities `(B, H, W, C)` at that size out. In the graph: the training
resize to the model's working size (antialiased bilinear, rounded), the model, the bilinear
resize back (and the flip average with `tta="flip"`). ONNX has no antialiased-resize op, so
the first resize is written as two matrix products (`pipelines.image_ops.resize_image_by_matmul`,
the same values up to float rounding). The ReNet layers run on their stock Keras RNN layers
(the fast CPU path's custom-gradient loop is for training).

Written through Keras' `model.export(format="onnx")`, which needs the `onnx` extra
(`pip install -e ".[onnx]"`: tf2onnx and onnxruntime).
"""
import os
from pathlib import Path

import numpy as np

ONNX_INPUT = "images"


def onnx_available():
    """Whether tf2onnx and onnxruntime can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tf2onnx", "onnxruntime"))


def require_onnx():
    """Raises ValueError with the install command when tf2onnx or onnxruntime is missing."""
    if not onnx_available():
        raise ValueError("ONNX export needs tf2onnx and onnxruntime: pip install -e \".[onnx]\" "
                         "(or pip install tf2onnx onnxruntime)")


def _serving_model(model, tta):
    """A Keras model around `model`'s portable twin whose call is the image-to-probabilities
    contract with ONNX-convertible ops."""
    import keras
    import tensorflow as tf

    from pipelines.image_ops import resize_image_by_matmul
    from reseg_tf.averaging import averaged_probabilities
    from reseg_tf.export.saved_model import export_twin
    from reseg_tf.inference import model_input_size, to_image_size
    from reseg_tf.layers import ReNetLayer

    twin, _ = export_twin(model)
    for layer in twin._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, ReNetLayer):
            layer.implementation = "keras"
    working_size = model_input_size(twin)

    class OnnxServing(keras.Model):
        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.inner = inner

        def call(self, images):
            images = tf.cast(images, tf.float32)
            if working_size is None:
                return averaged_probabilities(self.inner, images, tta)
            working = resize_image_by_matmul(images, working_size)
            return to_image_size(averaged_probabilities(self.inner, working, tta), tf.shape(images)[1:3])

    serving = OnnxServing(twin, name=model.name)
    example = np.zeros((1, *(working_size or (32, 32)), 3), np.float32)
    serving(example)  # builds it
    return serving


def write_onnx(model, path, tta="none"):
    """Writes `model` (with the contract and `tta` built in) as an ONNX file at `path`,
    through a temporary file and a rename. Returns `path`."""
    import tensorflow as tf

    require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp{os.getpid()}"
    try:
        serving = _serving_model(model, tta)
        serving.export(str(temporary), format="onnx", verbose=False,
                       input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name=ONNX_INPUT)])
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def onnx_session(path):
    """An onnxruntime CPU session of an exported file."""
    require_onnx()
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_probabilities(session, image):
    """float32 `(1, H, W, C)` probabilities of one uint8 RGB `(H, W, 3)` image."""
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(image, np.float32)[None]})[0]
