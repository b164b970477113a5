"""Writers of tiny synthetic copies of the dataset layouts the `pipelines` sources read.

Every image has a known content: pixel values encode position (so flips and shifts can be
checked) and masks are drawn from a seeded generator.
"""
import os

import numpy as np
from PIL import Image

FLOWER_TRIMAP_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [255, 255, 255] * 252


def random_image(rng, height, width):
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def random_labels(rng, height, width, num_values):
    return rng.integers(0, num_values, (height, width), dtype=np.uint8)


def save(array, path, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def write_camvid(root, splits=(("train", 4), ("val", 2)), size=(24, 32), seed=0, list_files=True):
    """SegNet layout: `<split>/`, `<split>annot/` PNGs (labels 0..11) and `<split>.txt` lists."""
    rng = np.random.default_rng(seed)
    for split, count in splits:
        lines = []
        for index in range(count):
            name = f"{split}_{index:03d}.png"
            save(random_image(rng, *size), os.path.join(root, split, name))
            save(random_labels(rng, *size, 12), os.path.join(root, f"{split}annot", name))
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if list_files:
            with open(os.path.join(root, f"{split}.txt"), "w") as handle:
                handle.write("\n".join(lines) + "\n")
    return str(root)


def write_weizmann_horse(root, count=10, mask_size=(20, 28), seed=0):
    """`rgb/` (larger than the masks, some grayscale), `gray/` and JPEG `figure_ground/`."""
    rng = np.random.default_rng(seed)
    height, width = mask_size
    for index in range(count):
        name = f"horse{index + 1:03d}.jpg"
        horse = np.zeros(mask_size, bool)
        horse[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = True
        mask = np.where(horse, 255, 0).astype(np.uint8)
        save(mask, os.path.join(root, "figure_ground", name), quality=95)
        rgb = random_image(rng, height * 2, width * 2)
        if index % 3 == 0:
            rgb = rgb[..., 0]  # some Weizmann rgb images are grayscale
        save(rgb, os.path.join(root, "rgb", name), quality=95)
        save(random_image(rng, height, width)[..., 0], os.path.join(root, "gray", name), quality=95)
    return str(root)


def write_oxford_flowers17(root, count=10, size=(20, 24), seed=0, variant="original", unlabelled=3):
    """Palette-PNG trimaps (index 1 flower, 0 and 2 background, 255 border) and JPEG images;
    `unlabelled` extra images have no trimap, as in the real dataset."""
    rng = np.random.default_rng(seed)
    image_dir, mask_dir = ("jpg", "trimaps") if variant == "original" else ("images_256", "labels_256")
    for index in range(count + unlabelled):
        name = f"image_{index + 1:04d}"
        save(random_image(rng, *size), os.path.join(root, image_dir, f"{name}.jpg"), quality=95)
        if index >= count:
            continue
        trimap = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=size)
        trimap_image = Image.fromarray(trimap)
        trimap_image.putpalette(FLOWER_TRIMAP_PALETTE)  # makes it a palette ("P") image
        os.makedirs(os.path.join(root, mask_dir), exist_ok=True)
        trimap_image.save(os.path.join(root, mask_dir, f"{name}.png"))
    return str(root)


def write_folder(root, count=6, size=(16, 20), num_classes=3, ignore_value=255, seed=0, split_dirs=None):
    """`images/` (PNG and JPEG) + `masks/` (L PNG), or `<split>/images` + `<split>/masks`."""
    rng = np.random.default_rng(seed)
    for prefix, number in ((split_dirs or {"": count}).items()):
        for index in range(number):
            stem = f"sample_{index:02d}"
            labels = random_labels(rng, *size, num_classes)
            labels[0, :] = ignore_value
            suffix = ".jpg" if index % 2 else ".png"
            save(random_image(rng, *size), os.path.join(root, prefix, "images", stem + suffix))
            save(labels, os.path.join(root, prefix, "masks", stem + ".png"))
    return str(root)
