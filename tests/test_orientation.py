"""EXIF orientation: images are read the way up viewers show them, everywhere."""
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

import pipelines
import reseg_tf
from pipelines.files import ORIENTATION_TAG, inspect_image_file
from pipelines.image_ops import orient_image
from reseg_tf.inference import read_image_file

STORED = (32, 48)  # (height, width) of the stored pixels; orientation 6 displays them 48x32


def _save_with_orientation(pixels, path, orientation, **options):
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **options)
    return str(path)


def _marked_image():
    """Distinct pixels everywhere, and a red block in the stored image's top-left corner."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 200, (*STORED, 3), dtype=np.uint8)
    pixels[:8, :12] = (255, 0, 0)
    return pixels


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_image_turns_like_exif_transpose(tmp_path, orientation):
    pixels = _marked_image()
    path = _save_with_orientation(pixels, tmp_path / "image.png", orientation)
    with Image.open(path) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert inspect_image_file(path).orientation == orientation
    assert inspect_image_file(path).displayed_size == expected.shape[:2]
    np.testing.assert_array_equal(orient_image(tf.constant(pixels), orientation).numpy(), expected)
    np.testing.assert_array_equal(read_image_file(path), expected)


def test_unknown_orientations_leave_the_image_as_stored():
    pixels = _marked_image()
    for orientation in (0, 9, 300):
        np.testing.assert_array_equal(orient_image(tf.constant(pixels), orientation).numpy(), pixels)


def test_a_portrait_phone_jpeg_is_read_upright(tmp_path):
    path = _save_with_orientation(_marked_image(), tmp_path / "photo.jpg", 6, quality=95)
    image = read_image_file(path)
    assert image.shape[:2] == STORED[::-1]
    # Turned 90 degrees clockwise, the stored top-left corner is displayed top-right.
    assert image[:12, -8:, 0].mean() > 240 and image[:12, -8:, 1:].mean() < 15
    assert image[:12, :8, 0].mean() < 220


def _tiny_model():
    config = reseg_tf.ReSegConfig(num_classes=3, class_names=("a", "b", "c"), front_end="none",
                                  renet=((4, (2, 2)),), upsampling=((4, (2, 2)),))
    return reseg_tf.build_model(config, input_shape=(None, None, 3))


def test_predict_writes_a_mask_of_the_displayed_size_that_lines_up(tmp_path):
    os.makedirs(tmp_path / "in")
    photo = _save_with_orientation(_marked_image(), tmp_path / "in" / "photo.jpg", 6, quality=95)
    # The same pixels turned by hand, saved without a tag: what every viewer shows.
    stored = tf.io.decode_jpeg(tf.io.read_file(photo)).numpy()
    upright = np.ascontiguousarray(np.rot90(stored, k=-1))
    Image.fromarray(upright).save(tmp_path / "in" / "upright.png")
    model = _tiny_model()
    reseg_tf.predict(model, tmp_path / "in", tmp_path / "out", verbose=0)
    mask = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    reference = np.asarray(Image.open(tmp_path / "out" / "upright.png"))
    assert mask.shape == STORED[::-1]
    assert len(np.unique(reference)) > 1  # the comparison below can tell placements apart
    np.testing.assert_array_equal(mask, reference)


def _write_folder_pair(root, orientation, mask_size):
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    _save_with_orientation(_marked_image(), root / "images" / "photo.png", orientation)
    Image.fromarray(np.zeros(mask_size, np.uint8)).save(root / "masks" / "photo.png")


def test_the_folder_source_reads_oriented_images_at_their_displayed_size(tmp_path):
    _write_folder_pair(tmp_path, 8, STORED[::-1])
    source = pipelines.get_source("folder", tmp_path, num_classes=3)
    (image_path, mask_path), = source.pairs("all")
    image, labels = source.load_example(tf.constant(image_path), tf.constant(mask_path))
    np.testing.assert_array_equal(image.numpy(), np.rot90(_marked_image(), k=1))
    assert labels.shape == STORED[::-1]
    assert pipelines.verify_dataset("folder", tmp_path, ["all"], num_classes=3, progress=False).ok


def test_verify_dataset_names_images_whose_orientation_tag_mismatches_their_mask(tmp_path):
    _write_folder_pair(tmp_path, 6, STORED)  # the mask was drawn on the stored pixels
    report = pipelines.verify_dataset("folder", tmp_path, ["all"], num_classes=3, progress=False)
    assert not report.ok
    problem, = report.problems
    assert "photo.png" in problem and "orientation tag (6)" in problem and "32x48 (WxH)" in problem


def test_serving_bytes_decodes_as_stored_and_serving_md_says_so(tmp_path):
    from reseg_tf.export.serving_doc import write_serving_doc
    from reseg_tf.inference import decode_image  # what the `serving_bytes` signature decodes with

    path = _save_with_orientation(_marked_image(), tmp_path / "photo.png", 6)
    assert decode_image(tf.io.read_file(path)).shape == (*STORED, 3)
    write_serving_doc(tmp_path / "serving.md", "tiny", tmp_path, _tiny_model().reseg_config, STORED, None, 1)
    text = " ".join((tmp_path / "serving.md").read_text().split())
    assert "`serving_bytes` decodes the pixels as they are stored and ignores an EXIF orientation tag" in text
