"""Which image/mask pairs form a split: split list files, pairs matched by stem, seeded splits."""
import os

import numpy as np

from pipelines.files import list_images_by_stem

DEFAULT_SPLIT_RATIOS = (0.6, 0.2, 0.2)
SPLIT_NAMES = ("train", "val", "test")
ALL_SPLIT = "all"


def require_dir(path, what):
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{what} directory not found: {path}")
    return path


def seeded_split(stems, split_ratios=DEFAULT_SPLIT_RATIOS, split_seed=0):
    """Deterministic train/val/test split of `stems` (see the module docstring)."""
    if len(split_ratios) != 3 or min(split_ratios) < 0 or not np.isclose(sum(split_ratios), 1.0):
        raise ValueError(f"split_ratios must be three non-negative numbers summing to 1 "
                         f"(train, val, test); got {split_ratios!r}")
    stems = sorted(stems)
    order = np.random.default_rng(split_seed).permutation(len(stems))
    train_end = int(round(split_ratios[0] * len(stems)))
    val_end = train_end + int(round(split_ratios[1] * len(stems)))
    cuts = {"train": order[:train_end], "val": order[train_end:val_end], "test": order[val_end:]}
    split_stems = {split: sorted(stems[i] for i in indices) for split, indices in cuts.items()}
    split_stems[ALL_SPLIT] = stems
    return split_stems


def pairs_by_stem(image_dir, mask_dir, require_every_image=True):
    images = list_images_by_stem(require_dir(image_dir, "image"))
    masks = list_images_by_stem(require_dir(mask_dir, "mask"))
    masks_without_image = sorted(set(masks) - set(images))
    if masks_without_image:
        raise ValueError(f"{len(masks_without_image)} mask(s) in {mask_dir} have no image in "
                         f"{image_dir}: {', '.join(masks_without_image[:5])}")
    images_without_mask = sorted(set(images) - set(masks))
    if require_every_image and images_without_mask:
        raise ValueError(f"{len(images_without_mask)} image(s) in {image_dir} have no mask in "
                         f"{mask_dir}: {', '.join(images_without_mask[:5])}")
    return {stem: (images[stem], masks[stem]) for stem in sorted(masks)}


def listed_splits(data_dir):
    """Split names that have a `<split>.txt` list file in `data_dir`."""
    return tuple(split for split in SPLIT_NAMES
                 if os.path.isfile(os.path.join(data_dir, f"{split}.txt")))


def _resolve_listed_path(data_dir, listed, list_file, line_number):
    # SegNet's lists hold absolute paths of their authors' machine: fall back to the last two
    # components (`train/x.png`) under data_dir.
    candidates = [listed] if os.path.isabs(listed) else [os.path.join(data_dir, listed)]
    candidates.append(os.path.join(data_dir, *listed.replace("\\", "/").split("/")[-2:]))
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    raise FileNotFoundError(f"{list_file}:{line_number}: listed file {listed!r} not found "
                            f"(looked for {', '.join(dict.fromkeys(candidates))})")


def read_split_list(data_dir, split):
    """`(image_path, mask_path)` pairs listed in `data_dir/<split>.txt`, in file order.

    Each non-empty line is `IMAGE_PATH MASK_PATH`, relative to `data_dir` (absolute paths are
    accepted). A malformed line or a listed file that does not exist raises naming the list
    file and the line.
    """
    list_file = os.path.join(data_dir, f"{split}.txt")
    with open(list_file, encoding="utf-8") as handle:
        try:
            lines = handle.readlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"{list_file}: not valid UTF-8 text ({error.reason} at byte "
                             f"{error.start}); list files hold UTF-8 paths") from None
    pairs = []
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{list_file}:{line_number}: expected 'IMAGE_PATH MASK_PATH', "
                             f"got {line.strip()!r}")
        pairs.append(tuple(_resolve_listed_path(data_dir, field, list_file, line_number)
                           for field in fields))
    return pairs
