"""Joint image/mask augmentation and local contrast normalization, as TensorFlow ops.

Every geometric change is applied to the image and its mask together (images bilinear, masks
nearest neighbour); pixels that come from outside the image are void in the mask (the ignore
label) and 0 in the image. Color jitter touches the image only. Randomness is stateless: each
example gets its own seed, so a pipeline seed reproduces the same augmentations.
"""
import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """What `augment_example` does; every part can be switched off.

    Args:
        hflip: flip left-right with probability 0.5.
        scale_range: `(low, high)` random zoom factor, or None.
        max_shift: random translation, as a fraction of the output height/width.
        crop_size: `(height, width)` of a random crop (padded with void where the image is
            smaller), or None to keep the input size.
        brightness: largest brightness change, as a fraction of 255.
        contrast: contrast factor drawn from `[1 - contrast, 1 + contrast]`.
        saturation: saturation factor drawn from `[1 - saturation, 1 + saturation]`.
        hue: largest hue shift (fraction of the hue circle, at most 0.5).

    Example:
        >>> config = AugmentConfig(scale_range=None, crop_size=(224, 224))
        >>> dataset = make_dataset("camvid", "train", augment=config)
    """

    hflip: bool = True
    scale_range: tuple | None = (0.8, 1.2)
    max_shift: float = 0.1
    crop_size: tuple | None = None
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.0

    def __post_init__(self):
        if self.scale_range is not None:
            low, high = self.scale_range
            if not 0 < low <= high:
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range!r}")
        if not 0 <= self.max_shift < 1:
            raise ValueError(f"max_shift must be in [0, 1), got {self.max_shift!r}")
        if self.crop_size is not None and (len(self.crop_size) != 2 or min(self.crop_size) < 1):
            raise ValueError(f"crop_size must be (height, width) of positive ints, got {self.crop_size!r}")
        for field in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, field) < 1:
                raise ValueError(f"{field} must be in [0, 1), got {getattr(self, field)!r}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")

    @property
    def color_jitter(self):
        return any((self.brightness, self.contrast, self.saturation, self.hue))


def _random_offset(seed, input_size, output_size, max_shift_pixels):
    """Offset of the input's top-left corner on the output canvas (negative: cropped)."""
    low = tf.minimum(0, output_size - input_size) - max_shift_pixels
    high = tf.maximum(0, output_size - input_size) + max_shift_pixels
    return tf.random.stateless_uniform([], seed, minval=low, maxval=high + 1, dtype=tf.int32)


def _place(tensor, offset_y, offset_x, output_size, fill_value):
    """Puts `tensor` (H, W, C) at the offset on a canvas of `output_size` filled with `fill_value`."""
    height, width = tf.shape(tensor)[0], tf.shape(tensor)[1]
    out_height, out_width = output_size[0], output_size[1]
    padded = tf.pad(
        tensor,
        [[tf.maximum(offset_y, 0), tf.maximum(out_height - offset_y - height, 0)],
         [tf.maximum(offset_x, 0), tf.maximum(out_width - offset_x - width, 0)], [0, 0]],
        constant_values=fill_value)
    return tf.slice(padded, [tf.maximum(-offset_y, 0), tf.maximum(-offset_x, 0), 0],
                    [out_height, out_width, -1])


def _jitter_colors(image, config, seeds):
    """Color jitter of a float32 0..255 image."""
    image = image / 255.0
    if config.brightness:
        image = tf.image.stateless_random_brightness(image, config.brightness, seeds[0])
    if config.contrast:
        image = tf.image.stateless_random_contrast(image, 1 - config.contrast, 1 + config.contrast, seeds[1])
    if config.saturation:
        image = tf.image.stateless_random_saturation(image, 1 - config.saturation,
                                                     1 + config.saturation, seeds[2])
    if config.hue:
        image = tf.image.stateless_random_hue(image, config.hue, seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def augment_example(image, mask, seed, config, ignore_label):
    """Augments one example.

    Args:
        image: float32 (H, W, 3), 0..255.
        mask: int32 (H, W).
        seed: int64/int32 tensor of shape (2,), the example's stateless seed.
        config: an `AugmentConfig`.
        ignore_label: mask value for pixels that come from outside the image.

    Returns:
        `(image, mask)`; their size is `config.crop_size` or the input size.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)
    mask = mask[..., tf.newaxis]
    input_size = tf.shape(image)[:2]
    output_size = tf.constant(config.crop_size, tf.int32) if config.crop_size else input_size

    if config.scale_range is not None and config.scale_range != (1, 1):
        scale = tf.random.stateless_uniform([], seeds[0], *config.scale_range)
        scaled_size = tf.cast(tf.round(tf.cast(input_size, tf.float32) * scale), tf.int32)
        image = tf.image.resize(image, scaled_size, method="bilinear")
        mask = tf.image.resize(mask, scaled_size, method="nearest")

    if config.max_shift or config.crop_size or config.scale_range is not None:
        size = tf.shape(image)[:2]
        shift = tf.cast(tf.round(config.max_shift * tf.cast(output_size, tf.float32)), tf.int32)
        offset_y = _random_offset(seeds[1], size[0], output_size[0], shift[0])
        offset_x = _random_offset(seeds[2], size[1], output_size[1], shift[1])
        image = _place(image, offset_y, offset_x, output_size, 0.0)
        mask = _place(mask, offset_y, offset_x, output_size, ignore_label)

    if config.hflip:
        flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
        mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)

    if config.color_jitter:
        image = _jitter_colors(image, config, seeds[4:])
    if config.crop_size:
        image = tf.ensure_shape(image, [*config.crop_size, 3])
        mask = tf.ensure_shape(mask, [*config.crop_size, 1])
    return image, mask[..., 0]


def local_contrast_normalization(images, kernel_size=9, sigma=2.0, epsilon=1.0):
    """Local contrast normalization (Jarrett et al. 2009), per channel, on (B, H, W, C) float.

    Subtracts a Gaussian-weighted local mean, then divides by the local standard deviation,
    floored at its image mean and at `epsilon` (input units: 1 gray level for 0..255 images,
    so flat images map to 0 instead of amplified rounding noise). The output is roughly
    zero-mean and unit-scale, not 0..255. Borders use the weights inside the image only.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    channels = images.shape[-1]
    axis = tf.range(kernel_size, dtype=tf.float32) - (kernel_size - 1) / 2
    gauss = tf.exp(-(axis ** 2) / (2 * sigma ** 2))
    kernel = tf.tensordot(gauss, gauss, axes=0)
    kernel = tf.tile((kernel / tf.reduce_sum(kernel))[:, :, None, None], [1, 1, channels, 1])

    def local_mean(tensor):
        return tf.nn.depthwise_conv2d(tensor, kernel, [1, 1, 1, 1], "SAME")

    coverage = local_mean(tf.ones_like(images[:1]))
    centered = images - local_mean(images) / coverage
    local_std = tf.sqrt(local_mean(tf.square(centered)) / coverage)
    floor = tf.reduce_mean(local_std, axis=[1, 2], keepdims=True)
    return centered / tf.maximum(tf.maximum(local_std, floor), epsilon)
