"""MediaPipe ImageSegmenter metadata in exported `.tflite` files, and MediaPipe's segmenter on them."""
import io
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from reseg_tf.export import load_tflite, tflite_predict_fn
from reseg_tf.export.mediapipe_metadata import (add_segmenter_metadata, read_segmenter_metadata,
                                                strip_appended_archive)

CLASSES = ("road", "car", "sky")


def _plain_tflite():
    """A converted `(1, 8, 8, 3) -> (1, 8, 8, 3)` softmax model, no metadata."""
    keras = tf.keras
    model = keras.Sequential([keras.Input((8, 8, 3), batch_size=1),
                              keras.layers.Conv2D(3, 1, activation="softmax")])
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def test_metadata_round_trips_and_leaves_the_model_as_it_was(tmp_path):
    plain = _plain_tflite()
    with_metadata = add_segmenter_metadata(plain, CLASSES, "tiny", "A tiny segmenter.")
    read = read_segmenter_metadata(with_metadata)
    assert read["labels"] == list(CLASSES) and read["label_file"] == "labels.txt"
    assert (read["mean"], read["std"], read["color_space"]) == ([0.0], [1.0], "RGB")
    assert read["input_stats"] == {"min": [0.0], "max": [255.0]}
    assert (read["activation"], read["output_range"], read["name"]) == ("NONE", (1, 2), "tiny")

    image = np.random.default_rng(0).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    answers = []
    for name, content in (("plain", plain), ("with_metadata", with_metadata)):
        (tmp_path / f"{name}.tflite").write_bytes(content)
        answers.append(tflite_predict_fn(load_tflite(tmp_path / f"{name}.tflite"))(image))
    np.testing.assert_array_equal(answers[0], answers[1])

    relabelled = add_segmenter_metadata(with_metadata, ("lane", "van", "fog"), "tiny", "A tiny segmenter.")
    assert read_segmenter_metadata(relabelled)["labels"] == ["lane", "van", "fog"]
    assert len(relabelled) == len(with_metadata)  # replaced, not added (names of the same lengths)
    assert zipfile.is_zipfile(io.BytesIO(relabelled))
    assert not zipfile.is_zipfile(io.BytesIO(strip_appended_archive(relabelled)))
    with pytest.raises(ValueError, match="TFLITE_METADATA"):
        read_segmenter_metadata(plain)


def test_the_metadata_parses_with_mediapipes_own_schema_modules():
    schema = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated")
    segmenter_schema = pytest.importorskip("mediapipe.tasks.metadata.image_segmenter_metadata_schema_py_generated")
    from ai_edge_litert.tools import flatbuffer_utils

    content = add_segmenter_metadata(_plain_tflite(), CLASSES, "tiny", "A tiny segmenter.")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(strip_appended_archive(content)))
    data = bytes(model.buffers[model.metadata[-1].buffer].data)
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    metadata = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(data, 0))
    subgraph = metadata.subgraphMetadata[0]
    image, mask = subgraph.inputTensorMetadata[0], subgraph.outputTensorMetadata[0]
    assert list(image.processUnits[0].options.mean) == [0.0] and list(image.processUnits[0].options.std) == [1.0]
    assert image.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    assert mask.associatedFiles[0].name == b"labels.txt"
    assert mask.associatedFiles[0].type == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    custom = subgraph.customMetadata[0]
    assert custom.name == b"SEGMENTER_METADATA"
    options = segmenter_schema.ImageSegmenterOptions.GetRootAs(bytes(bytearray(custom.data)), 0)
    assert options.Activation() == segmenter_schema.Activation.NONE

