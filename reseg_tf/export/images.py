"""The real images an export calibrates `int8` on and verifies with, read through the contract.

Files are found with `reseg_tf.inference.list_image_files` and read with
`reseg_tf.inference.read_image_file`, so an export accepts, converts and refuses exactly the
images `reseg predict` does.
"""
import sys
from pathlib import Path

import numpy as np

from reseg_tf.inference import list_image_files, read_image_file, to_working_size

# Sub-folders searched for images when a representative-data folder has none at its top level
# (CamVid's SegNet layout keeps images in train/ val/ test/ and labels in *annot/).
IMAGE_SUBDIRS = ("train", "val", "test", "images", "rgb", "jpg")


def find_images(directory):
    """Image files in `directory`, or in its train/ val/ ... sub-folders if it has none itself."""
    from pipelines.files import IMAGE_SUFFIXES

    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"representative-data folder {str(directory)!r} does not exist.")
    if not directory.is_dir():
        raise NotADirectoryError(f"representative data {str(directory)!r} is not a folder of images.")
    files = _images_in(directory)
    if not files:
        for name in IMAGE_SUBDIRS:
            if (directory / name).is_dir():
                files.extend(_images_in(directory / name))
    if not files:
        raise ValueError(
            f"representative-data folder {str(directory)!r} has no images "
            f"({', '.join(IMAGE_SUFFIXES)}) in it or in its {'/, '.join(IMAGE_SUBDIRS)}/ sub-folders."
        )
    return files


def _images_in(folder):
    try:
        files, _ = list_image_files(folder)  # a folder without images is the caller's to judge
    except PermissionError:
        raise PermissionError(f"cannot read representative-data folder {str(folder)!r}.") from None
    return [Path(path) for path in files]


def read_images(files):
    """uint8 RGB `(H, W, 3)` arrays of image files, each at its own size."""
    return [read_image_file(path) for path in files]


def load_images(files, image_size):
    """uint8 `(N, H, W, 3)`: image files read as `reseg predict` reads them, resized to
    `image_size` as training resizes them (the images a static TFLite model takes)."""
    return np.stack([to_working_size(image, image_size).numpy().astype(np.uint8)
                     for image in read_images(files)])


def spread_files(files, count):
    """Up to `count` files spread evenly over the (sorted) list, so several scenes are covered."""
    if len(files) <= count:
        return list(files)
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in picks]


def sample_data_dir():
    """The embedded CamVid sample of the `pipelines` package, or None if it is not installed."""
    from pipelines import sample_data_dir as embedded

    path = Path(embedded())
    return path if path.is_dir() else None


def representative_files(representative_data, need_real_images):
    """Image files of `representative_data`; default the embedded sample, with a warning.

    Returns None (synthetic images are then used for verification) when neither exists, or
    raises ValueError if real images are needed (int8 calibration).
    """
    if representative_data is not None:
        return find_images(representative_data)
    sample = sample_data_dir()
    if sample is None:
        if need_real_images:
            raise ValueError(
                "int8 TFLite needs real images to calibrate on: pass representative_data "
                "(--representative-data DIR); the embedded sample images are not available."
            )
        print("warning: no representative data and no embedded sample images; verifying on "
              "synthetic images, which says little about a trained model.", file=sys.stderr)
        return None
    print(f"warning: no --representative-data given; calibrating/verifying on the embedded sample "
          f"images in {sample}, which may not look like your data.", file=sys.stderr)
    return find_images(sample)


def synthetic_images(count, image_size, seed=0):
    """uint8 `(count, H, W, 3)` smooth random color fields: closer to photos than white noise."""
    import tensorflow as tf

    coarse = np.random.default_rng(seed).uniform(0, 255, (count, 4, 4, 3)).astype(np.float32)
    images = tf.image.resize(coarse, image_size, method="bilinear").numpy()
    return np.clip(np.round(images), 0, 255).astype(np.uint8)
