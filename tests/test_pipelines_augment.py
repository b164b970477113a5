"""Augmentation keeps images and masks aligned; LCN; augmentation inside make_dataset."""
import numpy as np
import pytest
import tensorflow as tf

import pipelines
import pipelines_layouts as layouts
from pipelines import AugmentConfig, augment_example, local_contrast_normalization

IGNORE = 5
GEOMETRY_ONLY = dict(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)


def _coordinate_example(height=24, width=32):
    """Image whose red channel is the column and green the row; mask = column // 4 % 5."""
    rows, columns = np.mgrid[0:height, 0:width]
    image = np.stack([columns * 7 + 10, rows * 9 + 10, np.full_like(rows, 50)], -1).astype(np.float32)
    mask = (columns // 4 % 5).astype(np.int32)
    return image, mask


def _mask_from_image(image):
    columns = np.round((image[..., 0] - 10) / 7).astype(np.int32)
    return columns // 4 % 5


def _augment(config, seed, example=None):
    image, mask = example or _coordinate_example()
    out_image, out_mask = augment_example(tf.constant(image), tf.constant(mask),
                                          tf.constant([seed, 17], tf.int64), config, IGNORE)
    return out_image.numpy(), out_mask.numpy()


def test_flip_and_shift_keep_image_and_mask_aligned():
    config = AugmentConfig(hflip=True, scale_range=None, max_shift=0.25, **GEOMETRY_ONLY)
    flipped = shifted = 0
    for seed in range(12):
        image, mask = _augment(config, seed)
        assert image.shape == (24, 32, 3) and mask.shape == (24, 32)
        padding = mask == IGNORE
        np.testing.assert_array_equal(image[padding], 0.0)  # padding is black in the image
        inside = ~padding
        np.testing.assert_array_equal(mask[inside], _mask_from_image(image)[inside])
        red = image[..., 0][inside].reshape(-1)
        row = image[..., 0][np.argmax(inside.all(axis=1))]
        flipped += int(np.any(np.diff(row[row > 0]) < 0))
        shifted += int(padding.any())
        assert red.size > 0
    assert 0 < flipped < 12 and shifted > 0  # the flip and the shift really happen


def test_scale_keeps_alignment_and_pads_with_ignore():
    config = AugmentConfig(hflip=True, scale_range=(0.6, 1.6), max_shift=0.0, **GEOMETRY_ONLY)
    padded = 0
    for seed in range(10):
        image, mask = _augment(config, seed)
        inside = mask != IGNORE
        agreement = np.mean(mask[inside] == _mask_from_image(image)[inside])
        assert agreement > 0.9, agreement  # bilinear vs nearest differ at label edges only
        padded += int((~inside).any())
    assert padded > 0


def test_crop_size_changes_output_size():
    config = AugmentConfig(hflip=False, scale_range=None, max_shift=0.0, crop_size=(16, 40), **GEOMETRY_ONLY)
    image, mask = _augment(config, 0)
    assert image.shape == (16, 40, 3) and mask.shape == (16, 40)
    assert (mask == IGNORE).sum() == 16 * 8  # 40 - 32 padded columns
    inside = mask != IGNORE
    np.testing.assert_array_equal(mask[inside], _mask_from_image(image)[inside])


def test_color_jitter_changes_only_the_image():
    config = AugmentConfig(hflip=False, scale_range=None, max_shift=0.0, brightness=0.3, contrast=0.3,
                           saturation=0.3, hue=0.1)
    original_image, original_mask = _coordinate_example()
    image, mask = _augment(config, 3)
    np.testing.assert_array_equal(mask, original_mask)
    assert not np.allclose(image, original_image)
    assert image.min() >= 0 and image.max() <= 255


def test_same_seed_same_augmentation():
    config = AugmentConfig()
    np.testing.assert_array_equal(_augment(config, 4)[0], _augment(config, 4)[0])
    assert not np.array_equal(_augment(config, 4)[0], _augment(config, 5)[0])


def test_invalid_config():
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))
    with pytest.raises(ValueError, match="max_shift"):
        AugmentConfig(max_shift=1.5)


def test_make_dataset_augments_pairs_together(tmp_path):
    """Masks are image-derived, so any misalignment between them shows."""
    root = tmp_path / "folder"
    image, mask = _coordinate_example(16, 20)
    for index in range(4):
        layouts.save(image.astype(np.uint8), str(root / "images" / f"s{index}.png"))
        layouts.save(mask.astype(np.uint8), str(root / "masks" / f"s{index}.png"))
    config = AugmentConfig(hflip=True, scale_range=None, max_shift=0.2, **GEOMETRY_ONLY)
    dataset = pipelines.make_dataset("folder", "all", data_dir=str(root), num_classes=5, ignore_value=None,
                                     batch_size=4, augment=config, repeat=True, seed=1)
    for images, masks in dataset.take(3):
        images, masks = images.numpy(), masks.numpy()
        inside = masks != 5
        np.testing.assert_array_equal(masks[inside], _mask_from_image(images)[inside])
        assert (masks == 5).any()


def test_epochs_get_different_augmentations(tmp_path):
    root = layouts.write_camvid(tmp_path, splits=(("train", 2),))
    dataset = pipelines.make_dataset("camvid", "train", data_dir=root, batch_size=2, augment=True,
                                     shuffle=False, deterministic=True)
    first, second = (next(iter(dataset))[0].numpy() for _ in range(2))
    assert not np.array_equal(first, second)


def test_lcn_properties():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 20, 24, 3)).astype(np.float32)
    normalized = local_contrast_normalization(tf.constant(images)).numpy()
    assert normalized.shape == images.shape
    scaled = local_contrast_normalization(tf.constant(images * 0.5 + 30)).numpy()
    np.testing.assert_allclose(normalized, scaled, atol=1e-3)  # invariant to gain and offset
    flat = local_contrast_normalization(tf.fill((1, 8, 8, 3), 100.0)).numpy()
    np.testing.assert_allclose(flat, 0.0, atol=1e-4)
    with pytest.raises(ValueError, match="kernel_size"):
        local_contrast_normalization(tf.constant(images), kernel_size=4)


def test_lcn_matches_numpy_reference():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (1, 11, 13, 1)).astype(np.float32)
    kernel_size, sigma = 5, 1.5
    axis = np.arange(kernel_size) - (kernel_size - 1) / 2
    gauss = np.exp(-axis ** 2 / (2 * sigma ** 2))
    weights = np.outer(gauss, gauss) / np.outer(gauss, gauss).sum()
    half = kernel_size // 2

    def local_mean(values):
        out = np.zeros_like(values)
        norm = np.zeros_like(values)
        for y in range(values.shape[0]):
            for x in range(values.shape[1]):
                for dy in range(-half, half + 1):
                    for dx in range(-half, half + 1):
                        if 0 <= y + dy < values.shape[0] and 0 <= x + dx < values.shape[1]:
                            out[y, x] += weights[dy + half, dx + half] * values[y + dy, x + dx]
                            norm[y, x] += weights[dy + half, dx + half]
        return out / norm

    plane = image[0, ..., 0].astype(np.float64)
    centered = plane - local_mean(plane)
    std = np.sqrt(local_mean(centered ** 2))
    expected = centered / np.maximum(std, std.mean())
    actual = local_contrast_normalization(tf.constant(image), kernel_size, sigma).numpy()[0, ..., 0]
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-3)
