"""The image contract's resizes against independent computations: `resize_image` (training,
`reseg predict`, every export) against PIL's antialiased bilinear filter, `to_image_size`
(probabilities back to the image's size) against a hand-written bilinear interpolation."""
import numpy as np
import pytest
from PIL import Image

from pipelines.image_ops import resize_image, resize_image_by_matmul
from reseg_tf.inference import to_image_size, to_working_size


def _pil_bilinear(image, size):
    """PIL's float bilinear resize per channel: a triangle filter widened by the downscale
    factor (antialiased), half-pixel sample centres."""
    channels = [Image.fromarray(image[..., c].astype(np.float32), "F").resize((size[1], size[0]), Image.BILINEAR)
                for c in range(image.shape[-1])]
    return np.stack([np.asarray(channel) for channel in channels], axis=-1)


@pytest.mark.parametrize("size", [(12, 20), (9, 9), (20, 80), (50, 70)])
def test_resize_image_is_pils_antialiased_bilinear_rounded(size):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    resized = resize_image(image, size).numpy()
    assert resized.shape == (*size, 3) and resized.dtype == np.float32
    np.testing.assert_array_equal(resized, np.round(resized))  # whole pixel values
    assert resized.min() >= 0 and resized.max() <= 255
    # Rounded to the nearest whole value: within 0.5 of PIL's unrounded result (ties either way).
    np.testing.assert_allclose(resized, _pil_bilinear(image, size), atol=0.5 + 1e-3, rtol=0)
    # The form ONNX exports take computes the same values.
    np.testing.assert_allclose(resize_image_by_matmul(image[None], size).numpy()[0], resized, atol=1.0)


def test_resize_to_the_same_size_returns_the_image_unchanged():
    image = np.random.default_rng(1).integers(0, 256, (2, 7, 11, 3)).astype(np.uint8)
    np.testing.assert_array_equal(resize_image(image, (7, 11)).numpy(), image.astype(np.float32))
    np.testing.assert_array_equal(to_working_size(image.astype(np.float32), (7, 11)).numpy(), image)


def _bilinear_matrix(n_in, n_out):
    """`(n_out, n_in)` weights of a bilinear resize along one axis with half-pixel centres,
    samples beyond the edge clamped to it."""
    matrix = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1)
        low = int(np.floor(x))
        high = min(low + 1, n_in - 1)
        matrix[i, low] += 1 - (x - low)
        matrix[i, high] += x - low
    return matrix


@pytest.mark.parametrize("size", [(4, 4), (5, 7), (1, 2)])
def test_to_image_size_is_a_plain_bilinear_interpolation(size):
    probabilities = np.random.default_rng(2).dirichlet(np.ones(3), (1, 2, 3)).astype(np.float32)
    rows, columns = _bilinear_matrix(2, size[0]), _bilinear_matrix(3, size[1])
    expected = np.einsum("hi,bijc,wj->bhwc", rows, probabilities, columns)
    got = to_image_size(probabilities, size).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-6)  # still distributions


def test_to_image_size_by_hand_on_a_two_by_two_map():
    probabilities = np.array([[[[1.0], [0.0]], [[0.0], [0.0]]]], np.float32)  # 1 in the top-left corner
    # Output centres of a 2 -> 4 resize fall at input coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (-> 1).
    along = np.array([1.0, 0.75, 0.25, 0.0])
    np.testing.assert_allclose(to_image_size(probabilities, (4, 4)).numpy()[0, ..., 0], np.outer(along, along),
                               atol=1e-7)
