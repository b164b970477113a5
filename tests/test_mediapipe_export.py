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


def _block_images(count, seed=0, size=(32, 32), block=8):
    """Images of square blocks whose colour (noisy red / green / blue) is the pixels' class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (count, size[0] // block, size[1] // block))
    colours = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.float32)
    images = np.repeat(np.repeat(colours[labels], block, 1), block, 2) + rng.normal(0, 10, (count, *size, 3))
    masks = np.repeat(np.repeat(labels, block, 1), block, 2).astype(np.int32)
    return np.clip(images, 0, 255).astype(np.uint8), masks


@pytest.fixture(scope="module")
def block_model():
    """A tiny 32x32 model trained on `_block_images` until it segments them."""
    pytest.importorskip("mediapipe")
    import keras

    from helpers import tiny_model

    keras.utils.set_random_seed(1)
    model = tiny_model((32, 32, 3), class_names=CLASSES)
    images, masks = _block_images(32)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(images.astype(np.float32), masks, epochs=15, batch_size=8, verbose=0)
    return model


@pytest.mark.slow
def test_mediapipes_segmenter_on_an_exported_model_agrees_with_predictor(block_model, tmp_path):
    from PIL import Image

    from reseg_tf.export import export_model
    from reseg_tf.export.mediapipe_segmenter import MEDIAPIPE_MIN_AGREEMENT, category_masks
    from reseg_tf.inference import Predictor

    block_model.save(tmp_path / "tiny.keras")
    (tmp_path / "images").mkdir()
    for index, image in enumerate(_block_images(6, seed=1, size=(64, 64), block=16)[0]):
        Image.fromarray(image).save(tmp_path / "images" / f"{index}.png")
    result = export_model(tmp_path / "tiny.keras", tmp_path / "out", tflite="fp32,int8",
                          representative_data=tmp_path / "images")

    rows = {row["artifact"]: row for row in result.report["rows"]}
    for variant in ("fp32", "int8"):  # int8: its uint8 input takes the image's bytes as they are
        row = rows[f"mediapipe_{variant}"]
        assert row["passed"], row["problems"]
        assert row["labels"] == list(CLASSES)
        assert row["agreement"] >= 0.98
    # Directly: MediaPipe's category masks against Predictor's classes, at the images' own size.
    # At the model's input size nothing is resized: the same classes everywhere. Larger images
    # are resized by MediaPipe its own way (and the probabilities back), which moves a few
    # pixels at class boundaries: 99.9% here for 2x images, held to MEDIAPIPE_MIN_AGREEMENT.
    predictor = Predictor(block_model)
    for size, block, bound in (((32, 32), 8, 1.0), ((64, 64), 16, MEDIAPIPE_MIN_AGREEMENT)):
        test_images = _block_images(4, seed=2, size=size, block=block)[0]
        found, labels, _ = category_masks(result.tflite_paths["fp32"], list(test_images))
        expected = predictor.classes(test_images).numpy()
        assert labels == list(CLASSES) and np.stack(found).shape == expected.shape
        assert np.mean(np.stack(found) == expected) >= bound, size


@pytest.mark.slow
def test_mediapipe_resizes_nothing_for_frames_of_the_tflite_input_size(block_model, tmp_path):
    """Exported for 48x40 frames, the model runs at 32x32 with the training resize inside: on
    such frames MediaPipe's masks are `reseg predict`'s classes (no resize of its own)."""
    from reseg_tf.export import export_model
    from reseg_tf.export.mediapipe_segmenter import category_masks
    from reseg_tf.inference import Predictor

    result = export_model(block_model, tmp_path / "out", tflite="fp32", tflite_input_size=(48, 40), verify=False)
    frames = list(_block_images(4, seed=3, size=(48, 40), block=8)[0])
    found, labels, _ = category_masks(result.tflite_paths["fp32"], frames)
    expected = Predictor(block_model).classes(np.stack(frames)).numpy()
    assert labels == list(CLASSES) and np.stack(found).shape == expected.shape == (4, 48, 40)
    assert np.mean(np.stack(found) == expected) >= 0.999
