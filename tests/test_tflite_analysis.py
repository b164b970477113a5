"""Operator counts and the GPU delegate check of TFLite files (reseg_tf.export.tflite_analysis)."""
from pathlib import Path

import pytest
import tensorflow as tf

from reseg_tf import models
from reseg_tf.evaluation import load_reseg_model
from reseg_tf.export.saved_model import write_static_saved_model
from reseg_tf.export.tflite import convert_tflite
from reseg_tf.export.tflite_analysis import analyze_tflite
from reseg_tf.pretrained import PRETRAINED

REPO = Path(__file__).resolve().parents[1]
DATASET_DEFAULTS = tuple(PRETRAINED)  # the dataset defaults and the phone model


def _tflite_of(function, signature, path):
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tf.function(function).get_concrete_function(signature)])
    path.write_bytes(converter.convert())
    return path


def test_operators_the_gpu_delegate_lacks_are_named(tmp_path):
    path = _tflite_of(lambda x: tf.cast(tf.argmax(x, -1), tf.float32) + tf.unstack(x, axis=1)[0][..., 0],
                      tf.TensorSpec([1, 4, 4, 3]), tmp_path / "m.tflite")
    analysis = analyze_tflite(path)
    assert not analysis["gpu_compatible"]
    assert {"ARG_MAX: not a GPU delegate operator", "UNPACK: not a GPU delegate operator"} <= set(
        analysis["unsupported_ops"])
    assert analysis["operators"] == sum(analysis["top_ops"].values())
    # TensorFlow's Analyzer output was captured (its verdict line), whatever it says.
    assert analysis["analyzer_verdict"] and "GPU delegate" in analysis["analyzer_verdict"]


def test_tensors_beyond_four_dimensions_are_named(tmp_path):
    path = _tflite_of(lambda x: tf.reshape(x, [1, 2, 2, 4, 3]) * 2.0, tf.TensorSpec([1, 4, 4, 3]),
                      tmp_path / "m.tflite")
    assert any("5-D tensor" in op for op in analyze_tflite(path)["unsupported_ops"])


@pytest.mark.slow
@pytest.mark.parametrize("dataset", DATASET_DEFAULTS)
def test_dataset_default_fp32_tflite_runs_on_the_gpu_delegate(dataset, tmp_path):
    # The operators do not depend on the size (only how many steps the recurrences take).
    model = load_reseg_model(str(REPO / "saved_models" / dataset / "model.keras"))
    stride_h, stride_w = model.reseg_config.input_stride
    size = (stride_h * 4, stride_w * 6)
    model = models.with_input_size(model, size)
    write_static_saved_model(model, tmp_path / "sm", size)
    convert_tflite(tmp_path / "sm", "fp32", tmp_path / "m.tflite")
    analysis = analyze_tflite(tmp_path / "m.tflite")
    assert analysis["gpu_compatible"], analysis["unsupported_ops"]
    assert analysis["top_ops"]["FULLY_CONNECTED"] > 0
