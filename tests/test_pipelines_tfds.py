"""The tfds builders read a tiny synthetic manual dir offline."""
import numpy as np
import pytest

import pipelines
import pipelines_layouts as layouts

tfds = pytest.importorskip("tensorflow_datasets")
import pipelines.tfds_builders  # noqa: E402,F401  (registers the builders)


def _load(name, manual_dir, data_dir, split):
    return tfds.load(name, split=split, data_dir=str(data_dir), download_and_prepare_kwargs={
        "download_config": tfds.download.DownloadConfig(manual_dir=str(manual_dir))})


def test_camvid_builder_matches_file_source(tmp_path):
    manual = layouts.write_camvid(tmp_path / "manual")
    train = _load("camvid", manual, tmp_path / "tfds", "train")
    examples = sorted(tfds.as_numpy(train), key=lambda example: example["file_name"])
    assert len(examples) == 4
    images, masks = next(iter(pipelines.make_dataset("camvid", "train", data_dir=manual, batch_size=4,
                                                     shuffle=False, deterministic=True)))
    for index, example in enumerate(examples):
        np.testing.assert_array_equal(example["image"], images[index].numpy().astype(np.uint8))
        np.testing.assert_array_equal(example["segmentation_mask"][..., 0], masks[index].numpy())
    builder = tfds.builder("camvid", data_dir=str(tmp_path / "tfds"))
    assert set(builder.info.splits) == {"train", "val"}


def test_horse_and_flowers_builders(tmp_path):
    horse = _load("weizmann_horse", layouts.write_weizmann_horse(tmp_path / "horse"), tmp_path / "tfds", "all")
    example = next(iter(tfds.as_numpy(horse)))
    assert example["image"].shape == (20, 28, 3) and set(np.unique(example["segmentation_mask"])) == {0, 1}
    flowers = _load("oxford_flowers17", layouts.write_oxford_flowers17(tmp_path / "flowers"),
                    tmp_path / "tfds", "train")
    assert len(list(flowers)) == 6  # 60% of the 10 images with a trimap
