"""The real CamVid train/val copy in ../shared/datasets/camvid (read-only)."""
import os

import cv2
import numpy as np
import pytest

import pipelines

CAMVID_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "camvid")
pytestmark = pytest.mark.skipif(not os.path.isdir(CAMVID_DIR), reason=f"no CamVid copy at {CAMVID_DIR}")


def test_real_camvid_pairs_and_labels():
    source = pipelines.get_source("camvid", CAMVID_DIR)
    assert source.splits == ("train", "val")
    counts = {split: len(source.pairs(split)) for split in source.splits}
    assert counts == {"train": 367, "val": 101}
    seen = set()
    for split in source.splits:
        for image_path, mask_path in source.pairs(split):
            assert os.path.basename(image_path) == os.path.basename(mask_path)
            labels = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
            assert labels.shape == (360, 480) and labels.dtype == np.uint8, mask_path
            values = np.unique(labels)
            assert values.max() <= 11, mask_path
            seen.update(values.tolist())
    assert seen == set(range(12))


def test_real_camvid_batches():
    dataset = pipelines.make_dataset("camvid", "val", data_dir=CAMVID_DIR, batch_size=5, cache=False)
    images, masks = next(iter(dataset))
    assert images.shape == (5, 360, 480, 3) and masks.shape == (5, 360, 480)
    assert int(masks.numpy().max()) <= 11
