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
