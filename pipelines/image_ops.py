"""The pixel operations shared by training and inference: decoding and resizing.

`reseg_tf.inference` applies these same functions to images at prediction, evaluation,
serving and export time, so a model sees an image exactly as it saw its training images.
"""
import tensorflow as tf


def decode_image(data):
    """In-graph: uint8 RGB `(H, W, 3)` of an encoded PNG/JPEG/BMP/GIF/WebP file's bytes.

    Gray, gray+alpha, palette and RGBA images become RGB (alpha dropped); 16-bit images are
    scaled to 8 bits.
    """
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def orient_image(image, orientation):
    """In-graph: `(H, W, C)` stored pixels turned the way an EXIF `orientation` (1..8) says they
    are displayed, as `PIL.ImageOps.exif_transpose` turns them (5..8 swap height and width).
    Other values leave the image as it is."""
    transposed = lambda: tf.transpose(image, (1, 0, 2))
    turns = [
        lambda: image,  # 1 (and any unknown value): as stored
        lambda: tf.reverse(image, [1]),  # 2: mirrored left-right
        lambda: tf.reverse(image, [0, 1]),  # 3: turned 180 degrees
        lambda: tf.reverse(image, [0]),  # 4: mirrored top-bottom
        transposed,  # 5: mirrored about the main diagonal
        lambda: tf.reverse(transposed(), [1]),  # 6: turned 90 degrees clockwise
        lambda: tf.reverse(transposed(), [0, 1]),  # 7: mirrored about the other diagonal
        lambda: tf.reverse(transposed(), [0]),  # 8: turned 90 degrees counter-clockwise
    ]
    orientation = tf.cast(orientation, tf.int32)
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    oriented = tf.switch_case(index, turns)
    oriented.set_shape([None, None, image.shape[-1]])
    return oriented


def resize_image(images, size):
    """Images (`(H, W, 3)` or `(B, H, W, 3)`, any dtype, values 0..255) resized to `size`.

    Bilinear with antialiasing (a downscale averages every covered pixel instead of sampling a
    few), rounded to whole pixel values as an 8-bit image holds them. Returns float32 in
    0..255; a resize to the same size returns the image unchanged.
    """
    resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear", antialias=True)
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)


def resize_labels(labels, size):
    """Label maps (`(H, W)` or `(B, H, W)`) resized to `size` by nearest neighbour: every
    output value is one of the input's labels."""
    return tf.image.resize(labels[..., None], size, method="nearest")[..., 0]


def _antialias_weights(input_size, output_size):
    """`(output_size, input_size)` float32 weights of the antialiased bilinear (triangle
    kernel) resize along one axis, as `tf.image.resize(..., antialias=True)` computes them:
    half-pixel sample centres, a kernel widened by the downscale factor, rows normalised over
    the taps inside the image."""
    input_size = tf.cast(input_size, tf.float32)
    inverse_scale = input_size / tf.cast(output_size, tf.float32)
    kernel_scale = tf.maximum(inverse_scale, 1.0)
    samples = (tf.range(tf.cast(output_size, tf.float32)) + 0.5) * inverse_scale
    sources = tf.range(input_size) + 0.5
    weights = tf.maximum(1.0 - tf.abs(sources[None, :] - samples[:, None]) / kernel_scale, 0.0)
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def resize_image_by_matmul(images, size):
    """`resize_image` as two matrix products (`(B, H, W, 3)` in, float32 out, same values up to
    float rounding): the form ONNX converters accept, which have no antialiased-resize op."""
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    rows = _antialias_weights(shape[1], size[0])  # (h, H)
    columns = _antialias_weights(shape[2], size[1])  # (w, W)
    resized = tf.tensordot(rows, images, axes=[[1], [1]])  # (h, B, W, C)
    resized = tf.tensordot(resized, columns, axes=[[2], [1]])  # (h, B, C, w)
    resized = tf.transpose(resized, (1, 0, 3, 2))
    return tf.clip_by_value(tf.round(resized), 0.0, 255.0)
