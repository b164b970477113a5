"""Looking at a dataset: `verify_dataset` (check every pair, statistics) and `show_dataset`
(a PNG grid of images with colored mask overlays)."""
import collections
import dataclasses
import os

import cv2
import numpy as np
import tensorflow as tf

from pipelines.class_weights import median_frequency_from_counts
from pipelines.files import BadFileError
from pipelines.palettes import colorize, legend_strip
from pipelines.progress import progress_bar
from pipelines.sources import get_source


@dataclasses.dataclass
class VerifyReport:
    """Result of `verify_dataset`.

    Attributes:
        dataset, data_dir, class_names: what was checked.
        pair_counts: split -> number of pairs listed.
        image_sizes: split -> {"HxW": count} of the (image-aligned) example sizes.
        class_pixels: split -> int64 array (num_classes + 1,) of label pixels, last = void.
        class_weights: median-frequency weights of `weights_split` (None if nothing decoded).
        weights_split: the split the weights come from (`train` when it was checked).
        conversions: note -> count, e.g. "L image converted to RGB".
        problems: list of "path: what is wrong"; empty when the dataset is usable.
    """

    dataset: str
    data_dir: str
    class_names: tuple
    pair_counts: dict = dataclasses.field(default_factory=dict)
    image_sizes: dict = dataclasses.field(default_factory=dict)
    class_pixels: dict = dataclasses.field(default_factory=dict)
    class_weights: np.ndarray | None = None
    weights_split: str | None = None
    conversions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    problems: list = dataclasses.field(default_factory=list)

    @property
    def ok(self):
        return not self.problems

    def class_shares(self, split):
        pixels = self.class_pixels[split].astype(np.float64)
        return pixels / max(pixels.sum(), 1)

    def format(self):
        """Human-readable multi-line summary."""
        lines = [f"dataset {self.dataset} in {self.data_dir}"]
        for split, count in self.pair_counts.items():
            lines.append(f"  {split}: {count} pairs; {summarize_sizes(self.image_sizes[split])}")
        names = list(self.class_names) + ["void"]
        width = max(len(name) for name in names)
        header = "  class".ljust(width + 3) + "".join(f"{split:>10s}" for split in self.class_pixels)
        weight_header = f"{'weight (' + self.weights_split + ')':>18s}" if self.weights_split else ""
        lines += ["class pixel shares (%) and median-frequency weights:", header + weight_header]
        shares = {split: self.class_shares(split) for split in self.class_pixels}
        for index, name in enumerate(names):
            row = f"  {name.ljust(width)} " + "".join(f"{100 * shares[s][index]:10.2f}" for s in shares)
            if self.class_weights is not None and index < len(self.class_weights):
                row += f"{self.class_weights[index]:18.4f}"
            lines.append(row)
        for note, count in sorted(self.conversions.items()):
            lines.append(f"converted: {note} ({count} files)")
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  {problem}" for problem in self.problems]
        else:
            lines.append("no problems found")
        return "\n".join(lines)

    def to_dict(self):
        return {
            "dataset": self.dataset, "data_dir": self.data_dir, "class_names": list(self.class_names),
            "pair_counts": dict(self.pair_counts), "image_sizes": self.image_sizes,
            "class_pixels": {split: pixels.tolist() for split, pixels in self.class_pixels.items()},
            "class_weights": None if self.class_weights is None else self.class_weights.tolist(),
            "weights_split": self.weights_split, "conversions": dict(self.conversions),
            "problems": list(self.problems), "ok": self.ok,
        }


def summarize_sizes(size_counts):
    """One line about `{"HxW": count}` sizes: the size if all share one, else the number of
    distinct sizes and the min / median / max height and width."""
    if not size_counts:
        return "sizes: none decoded"
    if len(size_counts) == 1:
        return f"size (HxW): {next(iter(size_counts))}"
    sizes = np.array([[int(side) for side in size.split("x")] for size, count in size_counts.items()
                      for _ in range(count)])
    low, middle, high = (np.percentile(sizes, q, axis=0, method="nearest").astype(int) for q in (0, 50, 100))
    return (f"{len(size_counts)} distinct sizes (HxW): min {low[0]}x{low[1]}, median "
            f"{middle[0]}x{middle[1]}, max {high[0]}x{high[1]} (height and width taken separately)")


def _decode_error(path, error):
    first_line = (getattr(error, "message", None) or str(error)).strip().splitlines()[0]
    return f"{path}: cannot decode ({first_line})"


def _verify_pair(source, image_path, mask_path, table, report, split):
    """Checks one pair; appends problems to the report and returns its label counts or None."""
    try:
        image_info, mask_info = source.check_pair_headers(image_path, mask_path)
    except BadFileError as error:
        report.problems.append(str(error))
        return None
    try:
        image = source.read_image(tf.constant(image_path))
    except tf.errors.OpError as error:
        report.problems.append(_decode_error(image_path, error))
        return None
    try:
        raw = source.read_raw_mask(tf.constant(mask_path)).numpy()
    except tf.errors.OpError as error:
        report.problems.append(_decode_error(mask_path, error))
        return None
    except ValueError as error:  # a Python mask reader's own message (e.g. unknown colours) names the file
        report.problems.append(str(error))
        return None
    if image_info.mode != "RGB":
        report.conversions[f"{image_info.mode} image converted to RGB"] += 1
    if not source.resize_image_to_mask and tuple(image.shape[:2]) != raw.shape:
        report.problems.append(f"{image_path}: decoded image is {image.shape[1]}x{image.shape[0]} "
                               f"(WxH) but its mask is {raw.shape[1]}x{raw.shape[0]}")
        return None
    labels = table[np.clip(raw, 0, len(table) - 1)]
    invalid = labels < 0
    if invalid.any():
        bad_values = np.unique(raw[invalid])
        report.problems.append(f"{mask_path}: {invalid.sum()} pixels with values "
                               f"{bad_values[:10].tolist()} outside {source.describe_valid_values()}")
        return None
    size = f"{raw.shape[0]}x{raw.shape[1]}"
    report.image_sizes[split][size] = report.image_sizes[split].get(size, 0) + 1
    return np.bincount(labels.ravel(), minlength=source.num_classes + 1)


def verify_dataset(name, data_dir=None, splits=None, *, progress=True, **source_options):
    """Decodes and checks every image/mask pair of a dataset; collects statistics.

    Args:
        name: dataset name or `DataSource`.
        data_dir: dataset root.
        splits: split names to check (default: every split on disk except the derived `all`).
        progress: show a progress bar per split (redrawn on a terminal, one line otherwise).
        **source_options: passed to `get_source`.

    Returns:
        A `VerifyReport`; `report.ok` is False when any file is bad, and `report.problems`
        names each bad file and what is wrong. Listing errors (missing dirs, empty splits)
        raise FileNotFoundError / ValueError.
    """
    source = get_source(name, data_dir, **source_options)
    splits = list(splits or [split for split in source.splits if split != "all"])
    report = VerifyReport(source.name, source.data_dir, source.class_names)
    table = source.label_table()
    weight_counts = None
    for split in splits:
        pairs = source.pairs(split)
        report.pair_counts[split] = len(pairs)
        report.image_sizes[split] = {}
        pixels = np.zeros(source.num_classes + 1, np.int64)
        containing = np.zeros(source.num_classes, np.int64)
        bar = progress_bar(len(pairs), unit_name="pair") if progress else None
        if bar:
            print(f"checking {source.name} {split} ({len(pairs)} pairs)")
        for index, (image_path, mask_path) in enumerate(pairs):
            counts = _verify_pair(source, image_path, mask_path, table, report, split)
            if counts is not None:
                pixels += counts
                containing += (counts[:-1] > 0) * counts.sum()
            if bar:
                bar.update(index + 1)
        report.class_pixels[split] = pixels
        if pixels[:-1].any() and (weight_counts is None or split == "train"):
            weight_counts, report.weights_split = (pixels[:-1], containing), split
    if weight_counts is not None:
        report.class_weights = median_frequency_from_counts(*weight_counts)
    return report


def _overlay_tile(image, labels, palette, alpha, caption, tile_size):
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colorize(labels, palette)
    # Enlarged tiles keep label edges sharp (nearest); reduced ones average (area).
    interpolation = cv2.INTER_NEAREST if tile_size[1] > image.shape[1] else cv2.INTER_AREA
    tile = cv2.resize(blended.astype(np.uint8), tile_size[::-1], interpolation=interpolation)
    tile = cv2.cvtColor(tile, cv2.COLOR_RGB2BGR)
    cv2.putText(tile, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, caption, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def show_dataset(name, split, output, *, data_dir=None, count=8, columns=4, alpha=0.5,
                 tile_width=240, overwrite=False, legend=True, **source_options):
    """Writes a PNG grid of the first `count` examples of `split` with colored mask overlays.

    Tiles are the images blended with `source.palette` colors (void: the last color), captioned
    with the file name, with a color legend (class names) below unless `legend=False`. The file is written atomically; an existing
    `output` is refused unless `overwrite=True`. Returns the output path.
    """
    if count < 1 or columns < 1:
        raise ValueError(f"count and columns must be >= 1, got {count} and {columns}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not str(output).lower().endswith(".png"):
        raise ValueError(f"output must be a .png file, got {output}")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    source = get_source(name, data_dir, **source_options)
    pairs = source.pairs(split)[:count]
    tiles, tile_size = [], None
    for image_path, mask_path in pairs:
        try:
            image, labels = source.load_example(tf.constant(image_path), tf.constant(mask_path))
        except tf.errors.OpError as error:
            raise ValueError(f"{_decode_error(image_path + ' / ' + mask_path, error)}; "
                             "run `reseg verify-dataset` for details") from error
        image, labels = image.numpy(), labels.numpy()
        if tile_size is None:
            tile_size = (max(1, round(tile_width * image.shape[0] / image.shape[1])), tile_width)
        tiles.append(_overlay_tile(image, labels, source.palette, alpha,
                                   os.path.basename(image_path), tile_size))
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    grid = np.concatenate([np.concatenate(tiles[row:row + columns], axis=1)
                           for row in range(0, len(tiles), columns)], axis=0)
    if legend:  # the grid is BGR (OpenCV order), the legend strip RGB
        strip = legend_strip(list(source.class_names) + ["void"], source.palette, grid.shape[1])
        grid = np.concatenate([grid, strip[..., ::-1]], axis=0)
    encoded_ok, encoded = cv2.imencode(".png", grid)
    if not encoded_ok:
        raise ValueError(f"could not encode the PNG for {output}")
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(output)}.tmp{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(encoded.tobytes())
    os.replace(temporary, output)
    return output
