"""The image-to-model contract: how an image becomes class probabilities, everywhere.

Every consumer (`reseg evaluate`, `reseg predict`, `reseg report`, the final evaluation of a
training run, the SavedModel signatures, TFLite calibration and verification) goes through
this module, so a served model, a TFLite model and `reseg predict` see the same pixels:

1. `read_image_file`: one reader for image files (header checks, then decoding to uint8 RGB;
   gray, palette and RGBA images become RGB, 16-bit ones are scaled to 8 bits; an EXIF
   orientation tag is applied, so a portrait phone photo is read the way up viewers show it,
   as `PIL.ImageOps.exif_transpose` turns it, and its outputs have that displayed size).
2. `to_working_size`: images resized to the model's working size with exactly the operation
   the training pipeline applies (`pipelines.image_ops.resize_image`: antialiased bilinear,
   rounded to whole pixel values).
3. `to_image_size`: class probabilities resized (bilinear) back to the image's own size, where
   the argmax is taken.

A model saved with a fixed input size (as `reseg_tf.train` saves it) has that working size; a
model with `None` height/width runs at each image's own size and steps 2-3 do nothing.
"""
import os

import numpy as np
import tensorflow as tf

from reseg_tf.models import with_input_size


def model_input_size(model):
    """`(height, width)` the model was built for, or None if it accepts any size."""
    height, width = model.input_shape[1:3]
    return (height, width) if height and width else None


def to_working_size(images, size):
    """float32 images (`(H, W, 3)` or `(B, H, W, 3)`, values 0..255) at `size`, as training
    resizes them."""
    from pipelines.image_ops import resize_image

    return resize_image(images, size)


def to_image_size(probabilities, size):
    """Class probabilities `(B, h, w, C)` resized (bilinear) to `size` `(H, W)`."""
    return tf.image.resize(probabilities, size, method="bilinear")


def decode_image(data):
    """In-graph: uint8 RGB `(H, W, 3)` of an encoded image file's bytes, as stored (an EXIF
    orientation tag is not applied: `read_image_file` applies it from the file's header)."""
    from pipelines.image_ops import decode_image as decode

    return decode(data)


def image_probabilities(model, images, working_size, tta="none", mc_samples=0, seed=0):
    """In-graph: float32 `(B, H, W, C)` probabilities at the images' own size `(H, W)`.

    `images`: `(B, H, W, 3)` RGB 0..255 of any numeric dtype; `working_size`: the size the model
    runs at (None: the images' own size). `tta`, `mc_samples`, `seed`: averaged inference, see
    `reseg_tf.averaging` (the passes are averaged at the working size).
    """
    from reseg_tf.averaging import averaged_probabilities

    inputs = tf.cast(images, tf.float32)
    if working_size is None:
        return averaged_probabilities(model, inputs, tta, mc_samples, seed)
    probabilities = averaged_probabilities(model, to_working_size(inputs, working_size), tta, mc_samples, seed)
    return to_image_size(probabilities, tf.shape(images)[1:3])


def image_uncertainty(model, images, working_size, tta="none", mc_samples=0, seed=0):
    """In-graph: a dict of `(B, H, W)` maps at the images' own size beside the `probabilities`.

    - `probabilities`: as `image_probabilities`;
    - `confidence`: the largest class probability;
    - `entropy`: predictive entropy (nats) of the averaged probabilities, 0..log(C);
    - with `mc_samples`: `mutual_information`, the entropy minus the mean entropy of the
      sub-networks' own answers (the part of the uncertainty due to the model: Monte Carlo
      dropout's epistemic term), 0..log(C).
    """
    from reseg_tf.averaging import averaged_passes, entropy

    inputs = tf.cast(images, tf.float32)
    size = tf.shape(images)[1:3]
    if working_size is not None:
        inputs = to_working_size(inputs, working_size)
    passes = averaged_passes(model, inputs, tta, mc_samples, seed)
    probabilities = tf.reduce_mean(passes, axis=0)
    if working_size is not None:
        probabilities = to_image_size(probabilities, size)
    total = entropy(probabilities)
    maps = {"probabilities": probabilities, "confidence": tf.reduce_max(probabilities, axis=-1),
            "entropy": total}
    if mc_samples:
        expected = tf.reduce_mean(entropy(passes), axis=0)[..., None]
        if working_size is not None:
            expected = to_image_size(expected, size)
        maps["mutual_information"] = tf.maximum(total - expected[..., 0], 0.0)
    return maps


def read_image_file(path):
    """uint8 RGB `(H, W, 3)` array of an image file as displayed (turned by its EXIF orientation);
    ValueError naming the file if unusable."""
    from pipelines.files import BadFileError, inspect_image_file
    from pipelines.image_ops import orient_image

    try:
        info = inspect_image_file(path)  # missing, empty, truncated, oversized, not an image, bad name
    except BadFileError as error:
        raise ValueError(str(error)) from None
    try:
        return orient_image(decode_image(tf.io.read_file(os.fspath(path))), info.orientation).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        raise ValueError(f"{path}: cannot decode the image ({error.message.splitlines()[0]})") from None


def list_image_files(inputs):
    """Image files of `inputs`: files as given, directories' images sorted (not recursive).

    Returns `(files, problems)`, problems being `(path, reason)` pairs for inputs that are
    missing or directories without images.
    """
    from pipelines.files import IMAGE_SUFFIXES, list_image_files as images_in, shown_path

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files, problems = [], []
    for entry in map(os.fspath, inputs):
        if os.path.isdir(entry):
            found = images_in(entry)
            if not found:
                problems.append((entry, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this directory"))
            files.extend(found)
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            problems.append((shown_path(entry), "no such file or directory"))
    return files, problems


class Predictor:
    """Class probabilities of a model for images of any size (see the module docstring).

    Args:
        model: a ReSeg Keras model.
        image_size: `(height, width)` to run the model at; default its fixed input size, if any
            (a fixed-size model given another size runs as a copy built for that size).
        tta: `"none"` or `"flip"`: also run the mirrored image and average (`reseg_tf.averaging`).
        mc_samples: average this many dropout sub-networks (0: the plain model; needs dropout).
        seed: seed of the sub-networks' dropout masks.
        tile: segment each image in overlapping windows of the working size at the pixel scale
            the model was trained at, blended (`reseg_tf.tiling`), instead of resizing the
            whole image to the working size.
        scale: with `tile`, the factor images are resized by before tiling (default the model's
            `training_scale`, recorded beside its file; 1.0 when unknown).
        tile_overlap: with `tile`, the fraction of a window neighbouring windows share.
        tile_batch: with `tile`, the most windows run at once (bounds the model's memory).
        progress: with `tile`, show a progress bar for images with many windows.
    """

    def __init__(self, model, image_size=None, tta="none", mc_samples=0, seed=0, tile=False, scale=None,
                 tile_overlap=None, tile_batch=None, progress=False):
        from reseg_tf.averaging import check_averaging
        from reseg_tf.tiling import DEFAULT_BATCH, DEFAULT_OVERLAP, check_tiling

        self.tta, self.mc_samples = check_averaging(model, tta, mc_samples)
        self.seed = int(seed)
        fixed_size = model_input_size(model)
        self.image_size = tuple(image_size) if image_size else fixed_size
        self.tile = bool(tile)
        scale, self.tile_overlap, self.tile_batch = check_tiling(
            scale, DEFAULT_OVERLAP if tile_overlap is None else tile_overlap,
            DEFAULT_BATCH if tile_batch is None else tile_batch)
        if self.tile and self.image_size is None:
            raise ValueError("tiled inference cuts windows of the model's working size, and this model "
                             "accepts any size: give image_size (--image-size H W)")
        self.scale = scale or getattr(model, "training_scale", None) or 1.0
        self.progress = bool(progress)
        if fixed_size is not None and self.image_size != fixed_size:
            model = with_input_size(model, self.image_size)
        self.model = model
        options = dict(tta=self.tta, mc_samples=self.mc_samples, seed=self.seed)
        self._run = tf.function(lambda images: image_probabilities(self.model, images, self.image_size, **options),
                                reduce_retracing=True)
        self._run_uncertainty = tf.function(
            lambda images: image_uncertainty(self.model, images, self.image_size, **options),
            reduce_retracing=True)

    @staticmethod
    def _checked(images):
        images = tf.convert_to_tensor(images)
        if images.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(images))):
            raise ValueError("images contain NaN or infinite values; give RGB pixel values 0..255.")
        return images

    def probabilities(self, images):
        """float32 `(B, H, W, num_classes)` for `(B, H, W, 3)` RGB 0..255 images.

        Raises ValueError for NaN or infinite pixel values (the argmax of NaN probabilities
        would silently be class 0).
        """
        images = self._checked(images)
        if not self.tile:
            return self._run(images)
        from reseg_tf.tiling import tiled_probabilities

        return tf.stack([tiled_probabilities(self._run, image, self.image_size, self.scale, self.tile_overlap,
                                             self.tile_batch, self.progress) for image in images])

    def uncertainty(self, images):
        """`image_uncertainty`'s dict (probabilities, confidence, entropy[, mutual_information]).
        Tiled: the maps of the blended probabilities (no mutual information)."""
        images = self._checked(images)
        if not self.tile:
            return self._run_uncertainty(images)
        if self.mc_samples:
            raise ValueError("the mutual information of Monte Carlo dropout is not blended across tiles: "
                             "drop --uncertainty or --tile")
        from reseg_tf.averaging import entropy

        probabilities = self.probabilities(images)
        return {"probabilities": probabilities, "confidence": tf.reduce_max(probabilities, axis=-1),
                "entropy": entropy(probabilities)}

    def classes(self, images):
        """uint8 `(B, H, W)` argmax class indices."""
        return tf.cast(tf.argmax(self.probabilities(images), axis=-1), tf.uint8)

    def classes_of_file(self, path):
        """`(uint8 RGB image, uint8 class map)` of one image file, both at the file's size."""
        image = read_image_file(path)
        return image, self.classes(image[None])[0].numpy()
