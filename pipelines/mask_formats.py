"""Mask files as annotation tools save them, for the `folder` source.

- `index`: single-channel masks whose values are class indices (gray `L`, `1`, or palette `P`
  PNGs read by index).
- `palette`: palette (`P` mode) PNGs only, read by palette index: the colours a viewer shows
  do not matter, the index is the class.
- `rgb`: colour-coded masks (CamVid's original 32-class labels, LabelMe / CVAT / Label Studio
  exports): each pixel's RGB colour is looked up in a class palette file.

A class palette file lists `class_name, r, g, b`, one class per line, in class-index order:

- CSV (`.csv` or `.txt`): `name,r,g,b` rows; an optional header row (`name,r,g,b`) and lines
  starting with `#` are skipped.
- JSON (`.json`): `[["Sky", 128, 128, 128], ...]`, `[{"name": "Sky", "color": [128, 128, 128]}, ...]`
  or `{"Sky": [128, 128, 128], ...}` (in file order).

A row named `void` (any case) is not a class: its colour marks pixels to ignore. Colours found
in a mask but not in the file are an error listing the first unknown colours and a file that
has them, or, with `unknown_colors="void"`, ignored like void.
"""
import csv
import json
import os

import numpy as np

from pipelines.options import MASK_FORMATS, UNKNOWN_COLOR_MODES
VOID_NAME = "void"
# Raw value the rgb reader gives void and (with unknown_colors="void") unknown colours.
RGB_VOID_RAW = 255
SHOWN_UNKNOWN_COLORS = 5


class ClassPalette:
    """The classes of a palette file: `names`, `colors` (uint8 `(K, 3)`) and `void_colors`."""

    def __init__(self, names, colors, void_colors, path):
        self.names, self.colors, self.void_colors, self.path = tuple(names), colors, void_colors, path

    @property
    def num_classes(self):
        return len(self.names)

    def display_palette(self):
        """`(K + 1, 3)` colours for pictures: the classes', then void's (black if none)."""
        void = self.void_colors[0] if len(self.void_colors) else np.zeros(3, np.uint8)
        return np.concatenate([self.colors, void[None]]).astype(np.uint8)


def _rows_from_json(path, text):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"palette file {path}: not valid JSON ({error})") from None
    if isinstance(data, dict):
        return [(f"entry {name!r}", [name, *_as_list(color, path, name)]) for name, color in data.items()]
    if not isinstance(data, list):
        raise ValueError(f"palette file {path}: expected a list or an object of class colours, "
                         f"got {type(data).__name__}")
    rows = []
    for index, entry in enumerate(data):
        where = f"entry {index}"
        if isinstance(entry, dict):
            if "name" not in entry or "color" not in entry:
                raise ValueError(f"palette file {path}, {where}: an object needs 'name' and 'color', got {entry!r}")
            rows.append((where, [entry["name"], *_as_list(entry["color"], path, where)]))
        else:
            rows.append((where, _as_list(entry, path, where)))
    return rows


def _as_list(value, path, where):
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"palette file {path}, {where}: expected a list, got {value!r}")
    return list(value)


def _rows_from_csv(path, text):
    rows = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells[1:4]] == ["r", "g", "b"]:
            continue  # header
        rows.append((f"line {number}", cells))
    return rows


def read_class_palette(path):
    """The `ClassPalette` of a palette file; ValueError naming the file and line if malformed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"palette file {path} does not exist; give a CSV or JSON file of "
                                "`class_name, r, g, b` rows")
    with open(path, encoding="utf-8-sig") as handle:
        text = handle.read()
    rows = _rows_from_json(path, text) if path.lower().endswith(".json") else _rows_from_csv(path, text)
    names, colors, void_colors, seen = [], [], [], {}
    for where, cells in rows:
        if len(cells) != 4:
            raise ValueError(f"palette file {path}, {where}: expected `class_name, r, g, b`, got {cells!r}")
        name = str(cells[0]).strip()
        try:
            color = tuple(int(str(value).strip()) for value in cells[1:])
        except ValueError:
            raise ValueError(f"palette file {path}, {where}: r, g, b must be integers 0..255, got {cells[1:]!r}") from None
        if not name or any(not 0 <= value <= 255 for value in color):
            raise ValueError(f"palette file {path}, {where}: needs a class name and r, g, b in 0..255, got {cells!r}")
        if color in seen:
            raise ValueError(f"palette file {path}, {where}: colour {color} is already used by {seen[color]!r}")
        seen[color] = name
        if name.lower() == VOID_NAME:
            void_colors.append(color)
        else:
            names.append(name)
            colors.append(color)
    if not names:
        raise ValueError(f"palette file {path} defines no class (only void rows or nothing)")
    return ClassPalette(names, np.array(colors, np.uint8).reshape(-1, 3),
                        np.array(void_colors, np.uint8).reshape(-1, 3), path)


def _color_keys(rgb):
    rgb = np.asarray(rgb, np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def rgb_to_raw(rgb, palette, unknown_colors, mask_path):
    """uint8 RGB `(H, W, 3)` -> int32 `(H, W)` class indices; void (and, with
    `unknown_colors="void"`, unknown colours) -> `RGB_VOID_RAW`."""
    keys = _color_keys(rgb)
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    lookup = {int(key): index for index, key in enumerate(_color_keys(palette.colors))}
    lookup.update({int(key): RGB_VOID_RAW for key in _color_keys(palette.void_colors)})
    mapped = np.array([lookup.get(int(key), -1) for key in unique], np.int32)
    unknown = unique[mapped < 0]
    if len(unknown):
        if unknown_colors != "void":
            shown = ", ".join(str(((k >> 16) & 255, (k >> 8) & 255, k & 255))
                              for k in map(int, unknown[:SHOWN_UNKNOWN_COLORS]))
            more = f" and {len(unknown) - SHOWN_UNKNOWN_COLORS} more" if len(unknown) > SHOWN_UNKNOWN_COLORS else ""
            raise ValueError(f"{mask_path}: colours not in the palette file {palette.path}: {shown}{more}; add them "
                             "to the file (a `void` row for pixels to ignore) or treat unknown colours as void "
                             "(--unknown-colors void)")
        mapped[mapped < 0] = RGB_VOID_RAW
    return mapped[inverse].reshape(keys.shape)
