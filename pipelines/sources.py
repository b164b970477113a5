"""Data sources: where the image/mask pairs of a dataset are and how to decode them.

A `DataSource` lists `(image_path, mask_path)` pairs per split and decodes one pair with
TensorFlow ops into `(uint8 RGB image (H, W, 3), int32 labels (H, W))`, labels in
`0..num_classes-1` for classes and `num_classes` for void. Sources:

- `camvid`: SegNet layout (`train/ trainannot/ val/ valannot/ test/ testannot/`, lists
  `train.txt` ...). Label PNGs 0..10, 11 = void. `data_dir=None` uses the embedded sample.
- `weizmann_horse`: `rgb/ gray/ figure_ground/`; `images="rgb"` (default; each rgb image is
  resized bilinearly to its mask's size) or `"gray"`. JPEG masks, horse where value > 127.
- `oxford_flowers17`: `jpg/ trimaps/` (or the 256x256 copies `images_256/ labels_256/`); only
  images with a trimap are used. Palette index 1 = flower, every other index = background.
- `folder`: `images/ masks/` with matching stems (or `<split>/images/ <split>/masks/`);
  single-channel masks of class indices, `num_classes` and `ignore_value` given by the user.

Conversions (documented, not errors): grayscale, palette and RGBA images are converted to RGB
(alpha dropped); 16-bit images are scaled to 8 bits; images with an EXIF orientation tag are
turned the way viewers show them (`pipelines.files`), and their masks must have that displayed size.

Split lists: when the data directory holds `train.txt` / `val.txt` / `test.txt`
(`IMAGE_PATH MASK_PATH` per line, relative to the directory), every source takes its splits from
them, and a split without a list does not exist. Without list files, datasets that ship no
splits (horse, flowers, a folder without split directories) are split deterministically: the
sorted stems are permuted with `numpy.random.default_rng(split_seed)` and cut by `split_ratios`
(default 0.6 / 0.2 / 0.2 into train / val / test); split `all` has every pair.
"""
import os
from importlib import resources

import numpy as np
import tensorflow as tf
from PIL import Image

from pipelines.files import BadFileError, inspect_image_file, read_orientation
from pipelines.image_ops import decode_image, orient_image, resize_image
from pipelines.mask_formats import MASK_FORMATS, RGB_VOID_RAW, UNKNOWN_COLOR_MODES, read_class_palette, rgb_to_raw
from pipelines.options import (OXFORD_FLOWERS17_FOLDERS, OXFORD_FLOWERS17_VARIANTS, SOURCE_NAMES,
                              WEIZMANN_HORSE_IMAGE_FOLDERS)
from pipelines.palettes import BINARY_PALETTE, CAMVID_PALETTE, default_palette
from pipelines.splits import (ALL_SPLIT, DEFAULT_SPLIT_RATIOS, SPLIT_NAMES, listed_splits, pairs_by_stem,
                              read_split_list, require_dir, seeded_split)

CAMVID_CLASSES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                  "Car", "Pedestrian", "Bicyclist")
# Label PNGs are 8-bit: raw mask values are looked up in a 256-entry table.
_RAW_VALUES = 256
# Flowers 17 trimaps: palette index 1 is red (128, 0, 0); converted to grayscale it reads 38.
_FLOWER_RGB = (128, 0, 0)
_FLOWER_GRAY_VALUES = (1, 38)
_HORSE_THRESHOLD = 127


def sample_data_dir():
    """Path of the embedded CamVid sample (SegNet layout, 12 train + 4 val pairs, 240x180)."""
    return str(resources.files("pipelines") / "data" / "camvid_sample")


def _read_pil_mask(convert):
    """In-graph reader of masks that need PIL (palette indices, which TF cannot decode)."""

    def read(path):
        # Graph mode passes bytes, eager mode a 0-d array of bytes (or of str, for a str path).
        name = np.asarray(path).item()
        with Image.open(name.decode() if isinstance(name, bytes) else name) as image:
            return convert(image).astype(np.int32)

    def read_in_graph(path):
        raw = tf.numpy_function(read, [path], tf.int32, stateful=False, name="read_mask")
        raw.set_shape([None, None])
        return raw

    return read_in_graph


def _image_orientation(path):
    """In-graph: int32 EXIF orientation of the image file at `path` (read from its header)."""

    def read(name):
        name = np.asarray(name).item()
        return np.int32(read_orientation(name.decode() if isinstance(name, bytes) else name))

    orientation = tf.numpy_function(read, [path], tf.int32, stateful=False, name="read_orientation")
    orientation.set_shape([])
    return orientation


class DataSource:
    """Base class: split listing, validation and decoding of one dataset on disk.

    Subclasses set `name`, `class_names`, `palette`, and implement `_splits_without_lists()`,
    `_list_pairs(split)`, `read_raw_mask(path)` and `label_table()`.

    Attributes:
        name: registry name, e.g. `"camvid"`.
        data_dir: the dataset root.
        num_classes: number of real classes; `ignore_label == num_classes` marks void.
        class_names: tuple of `num_classes` names.
        palette: uint8 array `(num_classes + 1, 3)`, last row the void color.
        splits: tuple of the split names available on disk.
    """

    name = None
    # (height, width) shared by every image of the dataset, None where sizes vary.
    native_size = None
    # Whether images may differ in size from their masks (they are then resized to the mask).
    resize_image_to_mask = False
    # PIL modes a mask file may have.
    mask_modes = ("L", "P", "1")

    def __init__(self, data_dir, class_names, palette):
        self.data_dir = os.path.abspath(require_dir(os.fspath(data_dir), f"{self.name} dataset"))
        self.class_names = tuple(class_names)
        self.palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
        if len(self.palette) != self.num_classes + 1:
            raise ValueError(f"palette needs {self.num_classes + 1} colors (classes + void), "
                             f"got {len(self.palette)}")

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def ignore_label(self):
        return self.num_classes

    @property
    def split_lists(self):
        """Splits defined by list files in `data_dir` (empty when the source's own rule applies)."""
        return listed_splits(self.data_dir)

    @property
    def splits(self):
        return self.split_lists or self._splits_without_lists()

    def _splits_without_lists(self):
        raise NotImplementedError

    def options(self):
        """Options that change which pairs are listed or how they decode (for cache keys)."""
        return {}

    def __repr__(self):
        return (f"{type(self).__name__}(data_dir={self.data_dir!r}, num_classes={self.num_classes}, "
                f"splits={self.splits}, options={self.options()})")

    def pairs(self, split):
        """Sorted `(image_path, mask_path)` pairs of `split`; raises naming the dir or file."""
        if split not in self.splits:
            if self.split_lists:
                raise ValueError(f"{self.name}: split {split!r} has no list file "
                                 f"{os.path.join(self.data_dir, split + '.txt')}; this folder "
                                 f"defines its splits by list files: "
                                 f"{', '.join(s + '.txt' for s in self.split_lists)}")
            raise ValueError(f"{self.name}: unknown split {split!r} in {self.data_dir}; "
                             f"available: {', '.join(self.splits) or 'none'}")
        pairs = (read_split_list(self.data_dir, split) if self.split_lists
                 else self._list_pairs(split))
        if not pairs:
            raise ValueError(f"{self.name}: split {split!r} in {self.data_dir} has no image/mask pairs")
        return pairs

    def _list_pairs(self, split):
        """Pairs of `split` when the folder has no list files."""
        raise NotImplementedError

    def label_table(self):
        """int32 array (256,): raw mask value -> label (`num_classes` = void, -1 = invalid)."""
        raise NotImplementedError

    def describe_valid_values(self):
        return f"0..{self.num_classes - 1} (void {self.ignore_label})"

    def check_pair_headers(self, image_path, mask_path):
        """Header checks of one pair; returns `(image_info, mask_info)`, raises `BadFileError`."""
        image_info = inspect_image_file(image_path)
        mask_info = inspect_image_file(mask_path)
        if mask_info.mode not in self.mask_modes:
            raise BadFileError(f"{mask_path}: mask has PIL mode {mask_info.mode}; {self.name} masks "
                               f"must be {self.mask_mode_hint()}")
        if not self.resize_image_to_mask and image_info.displayed_size != mask_info.size:
            if image_info.size == mask_info.size:
                raise BadFileError(f"{image_path}: its EXIF orientation tag ({image_info.orientation}) turns "
                                   f"the image to {_hw(image_info.displayed_size)} as viewers show it, but its "
                                   f"mask {mask_path} is {_hw(mask_info.size)} (made from the stored pixels?); "
                                   "turn the mask to match, or save the image without the tag")
            raise BadFileError(f"{image_path}: image is {_hw(image_info.size)} but its mask "
                               f"{mask_path} is {_hw(mask_info.size)}")
        return image_info, mask_info

    def mask_mode_hint(self):
        """What a mask file must be, for the error about a wrong PIL mode."""
        return f"single-channel ({'/'.join(self.mask_modes)}) class indices"

    def read_image(self, path):
        """In-graph: uint8 RGB (H, W, 3) from an image path (gray/palette/RGBA converted), turned
        by its EXIF orientation."""
        return orient_image(decode_image(tf.io.read_file(path)), _image_orientation(path))

    def read_raw_mask(self, path):
        """In-graph: int32 (H, W) raw values of a mask file, before the label table."""
        raise NotImplementedError

    def raw_to_labels(self, raw):
        return tf.gather(tf.constant(self.label_table()), tf.clip_by_value(raw, 0, _RAW_VALUES - 1))

    def assert_valid_labels(self, labels, raw, mask_path):
        """In-graph check that every raw mask value maps to a label; names the file."""
        return assert_that(tf.reduce_all(labels >= 0),
                           f"{self.name}: mask value outside {self.describe_valid_values()} "
                           "(mask path, largest raw value):", [mask_path, tf.reduce_max(raw)])

    def load_example(self, image_path, mask_path):
        """In-graph: `(uint8 image (H, W, 3), int32 labels (H, W))` with checks naming the files."""
        image = self.read_image(image_path)
        raw = self.read_raw_mask(mask_path)
        labels = self.raw_to_labels(raw)
        mask_size = tf.shape(labels)
        if self.resize_image_to_mask:
            image = tf.cast(resize_image(image, mask_size), tf.uint8)
        checks = [
            assert_that(tf.reduce_all(tf.equal(tf.shape(image)[:2], mask_size)),
                        f"{self.name}: image and mask sizes differ (image, mask, image HxW, mask HxW):",
                        [image_path, mask_path, tf.shape(image)[:2], mask_size]),
            self.assert_valid_labels(labels, raw, mask_path),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(image), tf.identity(labels)


def assert_that(condition, message, data):
    """In-graph check whose error message starts with `message` followed by `data`."""
    return tf.debugging.Assert(condition, [message, *data], summarize=8)


def _hw(size):
    return f"{size[1]}x{size[0]} (WxH)"


class CamVidSource(DataSource):
    """CamVid in the SegNet layout (see the module docstring).

    Pairs come from `<split>.txt` when present (`image_path label_path` per line; absolute
    paths from the SegNet lists are resolved by their last two components), else from the
    `<split>/` and `<split>annot/` folders matched by stem. With list files, only the splits
    that have one exist.
    """

    name = "camvid"
    mask_modes = ("L",)
    # (height, width) of every image of the SegNet copy: a model trained at another size was
    # trained at that pixel scale (tiled inference resizes images to it).
    native_size = (360, 480)

    def __init__(self, data_dir=None):
        super().__init__(data_dir or sample_data_dir(), CAMVID_CLASSES, CAMVID_PALETTE)

    def _splits_without_lists(self):
        return tuple(split for split in SPLIT_NAMES if os.path.isdir(os.path.join(self.data_dir, split)))

    def _list_pairs(self, split):
        return list(pairs_by_stem(os.path.join(self.data_dir, split),
                                   os.path.join(self.data_dir, f"{split}annot")).values())

    def label_table(self):
        table = np.full(_RAW_VALUES, -1, np.int32)
        table[:self.num_classes + 1] = np.arange(self.num_classes + 1)
        return table

    def read_raw_mask(self, path):
        raw = tf.io.decode_png(tf.io.read_file(path), channels=1)
        return tf.cast(tf.squeeze(raw, -1), tf.int32)


class _UnsplitSource(DataSource):
    """A dataset that ships no splits: pairs are split by `seeded_split`."""

    def __init__(self, data_dir, class_names, palette, split_ratios, split_seed):
        super().__init__(data_dir, class_names, palette)
        self.split_ratios = tuple(float(ratio) for ratio in split_ratios)
        self.split_seed = int(split_seed)
        seeded_split([], self.split_ratios)  # validates the ratios now, not at first use
        self._split_pairs = None

    def _splits_without_lists(self):
        return SPLIT_NAMES + (ALL_SPLIT,)

    def options(self):
        return {"split_ratios": self.split_ratios, "split_seed": self.split_seed,
                "split_lists": self.split_lists}

    def _allpairs_by_stem(self):
        raise NotImplementedError

    def _list_pairs(self, split):
        if self._split_pairs is None:
            by_stem = self._allpairs_by_stem()
            stems = seeded_split(by_stem, self.split_ratios, self.split_seed)
            self._split_pairs = {name: [by_stem[stem] for stem in names]
                                 for name, names in stems.items()}
        return self._split_pairs[split]

    def label_table(self):
        table = np.full(_RAW_VALUES, -1, np.int32)
        table[:2] = (0, 1)
        return table


class WeizmannHorseSource(_UnsplitSource):
    """Weizmann Horse: `rgb/` or `gray/` images, `figure_ground/` JPEG masks (horse > 127)."""

    name = "weizmann_horse"
    # JPEG masks are sometimes stored as RGB JPEGs; they are read as grayscale.
    mask_modes = ("L", "RGB", "P", "1")

    IMAGE_FOLDERS = WEIZMANN_HORSE_IMAGE_FOLDERS

    def __init__(self, data_dir, images="rgb", split_ratios=DEFAULT_SPLIT_RATIOS, split_seed=0):
        if images not in self.IMAGE_FOLDERS:
            raise ValueError(f"images must be one of {self.IMAGE_FOLDERS}, got {images!r}")
        self.images = images
        super().__init__(data_dir, ("background", "horse"), BINARY_PALETTE, split_ratios, split_seed)

    @property
    def resize_image_to_mask(self):
        return self.images == "rgb"

    def options(self):
        return {"images": self.images, **super().options()}

    def _allpairs_by_stem(self):
        return pairs_by_stem(os.path.join(self.data_dir, self.images),
                              os.path.join(self.data_dir, "figure_ground"))

    def read_raw_mask(self, path):
        gray = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
        return tf.cast(tf.squeeze(gray, -1) > _HORSE_THRESHOLD, tf.int32)


def _flower_mask(image):
    """0/1 flower mask of a trimap: palette index 1, or its color in RGB / gray copies."""
    if image.mode == "P":
        return np.asarray(image) == 1
    if image.mode in ("L", "1"):
        return np.isin(np.asarray(image.convert("L")), _FLOWER_GRAY_VALUES)
    return np.all(np.asarray(image.convert("RGB")) == _FLOWER_RGB, axis=-1)


class OxfordFlowers17Source(_UnsplitSource):
    """Oxford Flowers 17 segmentation: `jpg/` + `trimaps/`, or `images_256/` + `labels_256/`.

    Args:
        variant: `"auto"` (the original layout if `trimaps/` exists, else the 256 copies),
            `"original"` or `"256"`.
    """

    name = "oxford_flowers17"
    mask_modes = ("P", "L", "1", "RGB", "RGBA")
    _VARIANT_DIRS = OXFORD_FLOWERS17_FOLDERS
    VARIANTS = OXFORD_FLOWERS17_VARIANTS

    def __init__(self, data_dir, variant="auto", split_ratios=DEFAULT_SPLIT_RATIOS, split_seed=0):
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {self.VARIANTS}, got {variant!r}")
        super().__init__(data_dir, ("background", "flower"), BINARY_PALETTE, split_ratios, split_seed)
        if variant == "auto":
            variant = "original" if os.path.isdir(os.path.join(self.data_dir, "trimaps")) else "256"
        self.variant = variant

    def options(self):
        return {"variant": self.variant, **super().options()}

    def _allpairs_by_stem(self):
        image_dir, mask_dir = (os.path.join(self.data_dir, d) for d in self._VARIANT_DIRS[self.variant])
        # Only 848 of the 1360 images have a trimap.
        return pairs_by_stem(image_dir, mask_dir, require_every_image=False)

    read_raw_mask = staticmethod(_read_pil_mask(_flower_mask))


class FolderSource(DataSource):
    """Any folder of images and masks with matching stems.

    Layout: `data_dir/images/` + `data_dir/masks/` (split by `seeded_split`), or
    `data_dir/<split>/images/` + `data_dir/<split>/masks/` for each of train/val/test present,
    or split lists `data_dir/<split>.txt` (see the module docstring).

    Args:
        num_classes: number of classes; mask values `0..num_classes-1`. With
            `mask_format="rgb"`, default (and must equal) the palette file's class count.
        ignore_value: mask value meaning void (mapped to `num_classes`), or None if none
            (`index` and `palette` masks).
        class_names: optional names (default `class_0`, ...; the palette file's with `rgb`).
        palette: optional `(num_classes + 1, 3)` colors, last = void (default: generated).
        images_dir, masks_dir: subfolder names.
        mask_format: `"index"` (single-channel class indices), `"palette"` (palette PNGs read
            by index) or `"rgb"` (colour-coded masks, looked up in `palette_file`); see
            `pipelines.mask_formats`.
        palette_file: with `rgb`: CSV or JSON of `class_name, r, g, b` (a `void` row for
            pixels to ignore).
        unknown_colors: with `rgb`: `"error"` (default: the error lists the first colours not
            in the palette file and a mask that has them) or `"void"` (ignore those pixels).
    """

    name = "folder"

    def __init__(self, data_dir, num_classes=None, ignore_value=255, class_names=None, palette=None,
                 images_dir="images", masks_dir="masks", split_ratios=DEFAULT_SPLIT_RATIOS,
                 split_seed=0, mask_format="index", palette_file=None, unknown_colors="error"):
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"--mask-format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
        if unknown_colors not in UNKNOWN_COLOR_MODES:
            raise ValueError(f"--unknown-colors must be one of {', '.join(UNKNOWN_COLOR_MODES)}, got {unknown_colors!r}")
        if (palette_file is not None) != (mask_format == "rgb"):
            raise ValueError("--palette FILE goes with --mask-format rgb (colour-coded masks), and rgb masks need it")
        self.mask_format, self.unknown_colors = mask_format, unknown_colors
        self.class_palette = None
        if mask_format == "rgb":
            self.class_palette = read_class_palette(palette_file)
            if num_classes is not None and int(num_classes) != self.class_palette.num_classes:
                raise ValueError(f"--num-classes {num_classes} but the palette file {palette_file} lists "
                                 f"{self.class_palette.num_classes} classes")
            num_classes, ignore_value = self.class_palette.num_classes, RGB_VOID_RAW
            class_names = class_names or self.class_palette.names
            palette = palette if palette is not None else self.class_palette.display_palette()
            self.mask_modes = ("RGB", "RGBA", "P")
            self.read_raw_mask = _read_pil_mask(self._rgb_mask)
        elif mask_format == "palette":
            self.mask_modes = ("P",)
        if num_classes is None or int(num_classes) < 1 or int(num_classes) >= _RAW_VALUES - 1:
            raise ValueError(f"folder source needs num_classes between 1 and {_RAW_VALUES - 2}, "
                             f"got {num_classes!r}")
        num_classes = int(num_classes)
        if ignore_value is not None and not (0 <= int(ignore_value) < _RAW_VALUES):
            raise ValueError(f"ignore_value must be in 0..255 or None, got {ignore_value!r}")
        if ignore_value is not None and int(ignore_value) < num_classes:
            raise ValueError(f"ignore_value {ignore_value} collides with class {ignore_value} "
                             f"(num_classes={num_classes})")
        class_names = tuple(class_names or (f"class_{i}" for i in range(num_classes)))
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names given for num_classes={num_classes}")
        self.ignore_value = None if ignore_value is None else int(ignore_value)
        self.images_dir, self.masks_dir = images_dir, masks_dir
        self.split_ratios, self.split_seed = tuple(split_ratios), int(split_seed)
        seeded_split([], self.split_ratios)
        super().__init__(data_dir, class_names, palette if palette is not None else default_palette(num_classes))

    def _split_dir(self, split):
        return os.path.join(self.data_dir, split)

    @property
    def has_split_dirs(self):
        return any(os.path.isdir(os.path.join(self._split_dir(s), self.images_dir)) for s in SPLIT_NAMES)

    def _splits_without_lists(self):
        if self.has_split_dirs:
            return tuple(s for s in SPLIT_NAMES
                         if os.path.isdir(os.path.join(self._split_dir(s), self.images_dir)))
        return SPLIT_NAMES + (ALL_SPLIT,)

    def options(self):
        options = {"num_classes": self.num_classes, "ignore_value": self.ignore_value,
                   "images_dir": self.images_dir, "masks_dir": self.masks_dir,
                   "split_ratios": self.split_ratios, "split_seed": self.split_seed,
                   "split_lists": self.split_lists, "mask_format": self.mask_format}
        if self.class_palette is not None:
            options.update(palette_colors=self.class_palette.colors.tolist(),
                           void_colors=self.class_palette.void_colors.tolist(), unknown_colors=self.unknown_colors)
        return options

    def mask_mode_hint(self):
        if self.mask_format == "rgb":
            return f"colour-coded RGB images ({'/'.join(self.mask_modes)}) with the colours of {self.class_palette.path}"
        if self.mask_format == "palette":
            return "palette (P mode) PNGs, read by palette index (--mask-format palette)"
        return (f"single-channel ({'/'.join(self.mask_modes)}) class indices; for colour-coded masks use "
                "--mask-format rgb --palette FILE")

    def _rgb_mask(self, image):
        return rgb_to_raw(np.asarray(image.convert("RGB")), self.class_palette, self.unknown_colors,
                          image.filename)

    def _list_pairs(self, split):
        if self.has_split_dirs:
            root = self._split_dir(split)
            return list(pairs_by_stem(os.path.join(root, self.images_dir),
                                       os.path.join(root, self.masks_dir)).values())
        by_stem = pairs_by_stem(os.path.join(self.data_dir, self.images_dir),
                                 os.path.join(self.data_dir, self.masks_dir))
        stems = seeded_split(by_stem, self.split_ratios, self.split_seed)[split]
        return [by_stem[stem] for stem in stems]

    def label_table(self):
        table = np.full(_RAW_VALUES, -1, np.int32)
        table[:self.num_classes] = np.arange(self.num_classes)
        if self.ignore_value is not None:
            table[self.ignore_value] = self.num_classes
        return table

    def describe_valid_values(self):
        if self.mask_format == "rgb":
            return f"the colours of {self.class_palette.path}"
        void = "none" if self.ignore_value is None else self.ignore_value
        return f"0..{self.num_classes - 1} (ignore value {void})"

    read_raw_mask = staticmethod(_read_pil_mask(np.asarray))


SOURCES = dict(zip(SOURCE_NAMES, (CamVidSource, WeizmannHorseSource, OxfordFlowers17Source, FolderSource),
                   strict=True))


def get_source(name, data_dir=None, **options):
    """Returns the `DataSource` called `name` (see `SOURCES`) reading `data_dir`.

    `options` go to the source's constructor (e.g. `images="gray"` for weizmann_horse,
    `num_classes=` / `ignore_value=` for folder). Only `camvid` has a default `data_dir`
    (the embedded sample).
    """
    if isinstance(name, DataSource):
        if data_dir is not None or options:
            raise ValueError("data_dir/options were given together with a DataSource instance")
        return name
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(SOURCES)}")
    if data_dir is None and name != "camvid":
        raise ValueError(f"dataset {name!r} needs data_dir (the folder holding its files)")
    return SOURCES[name](data_dir, **options)
