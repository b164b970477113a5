"""Data sources on tiny synthetic copies of their real layouts, and bad-input errors."""
import os

import numpy as np
import pytest
from PIL import Image

import pipelines
import pipelines_layouts as layouts
from pipelines.sources import seeded_split


def _batches(dataset):
    return [tuple(t.numpy() for t in batch) for batch in dataset]


def _read(path):
    with Image.open(path) as image:
        return np.asarray(image)


def test_camvid_lists_with_segnet_absolute_paths(tmp_path):
    root = layouts.write_camvid(tmp_path)
    source = pipelines.get_source("camvid", root)
    assert source.splits == ("train", "val")
    assert source.num_classes == 11 and source.ignore_label == 11
    assert source.palette.shape == (12, 3) and source.palette.dtype == np.uint8
    pairs = source.pairs("train")
    assert len(pairs) == 4
    assert pairs[0] == (os.path.join(root, "train", "train_000.png"),
                        os.path.join(root, "trainannot", "train_000.png"))


def test_camvid_without_lists_matches_folders(tmp_path):
    root = layouts.write_camvid(tmp_path, list_files=False)
    assert len(pipelines.get_source("camvid", root).pairs("val")) == 2


def test_camvid_batches_match_files(tmp_path):
    root = layouts.write_camvid(tmp_path)
    dataset = pipelines.make_dataset("camvid", "val", data_dir=root, batch_size=2, deterministic=True)
    images, masks = _batches(dataset)[0]
    assert images.dtype == np.float32 and images.shape == (2, 24, 32, 3)
    assert masks.dtype == np.int32 and masks.shape == (2, 24, 32)
    image_path, mask_path = pipelines.get_source("camvid", root).pairs("val")[0]
    np.testing.assert_array_equal(images[0], _read(image_path))
    np.testing.assert_array_equal(masks[0], _read(mask_path))


def test_embedded_sample():
    source = pipelines.get_source("camvid")
    assert source.data_dir == os.path.abspath(pipelines.sample_data_dir())
    assert (len(source.pairs("train")), len(source.pairs("val"))) == (12, 4)
    images, masks = next(iter(pipelines.make_dataset("camvid", "val", batch_size=4)))
    assert images.shape == (4, 180, 240, 3)
    assert set(np.unique(masks)) <= set(range(12))


def test_resize_uses_nearest_for_masks(tmp_path):
    root = layouts.write_camvid(tmp_path, splits=(("train", 2),), size=(24, 32))
    # Stripes of classes 0 and 10 side by side: any interpolation creates values in between
    # (e.g. 5), which nearest-neighbour resizing never does.
    stripes = np.where((np.arange(32) // 3) % 2 == 0, 0, 10).astype(np.uint8)
    mask = np.broadcast_to(stripes, (24, 32))
    for _, mask_path in pipelines.get_source("camvid", root).pairs("train"):
        Image.fromarray(np.ascontiguousarray(mask)).save(mask_path)
    dataset = pipelines.make_dataset("camvid", "train", data_dir=root, batch_size=2, image_size=(12, 20),
                                     shuffle=False)
    images, masks = _batches(dataset)[0]
    assert images.shape == (2, 12, 20, 3) and masks.shape == (2, 12, 20)
    assert set(np.unique(masks)) == {0, 10}
    # Nearest neighbour with half-pixel centres: output pixel i samples input pixel (i + 0.5) * scale.
    rows = ((np.arange(12) + 0.5) * 24 / 12).astype(int)
    columns = ((np.arange(20) + 0.5) * 32 / 20).astype(int)
    np.testing.assert_array_equal(masks[0], mask[np.ix_(rows, columns)])


def test_weizmann_horse_rgb_resized_to_mask_and_gray(tmp_path):
    root = layouts.write_weizmann_horse(tmp_path)
    source = pipelines.get_source("weizmann_horse", root)
    assert source.class_names == ("background", "horse") and source.palette.shape == (3, 3)
    for images in ("rgb", "gray"):
        dataset = pipelines.make_dataset("weizmann_horse", "all", data_dir=root, images=images,
                                         batch_size=10, deterministic=True)
        image_batch, masks = _batches(dataset)[0]
        assert image_batch.shape == (10, 20, 28, 3)
        expected = np.zeros((20, 28), np.int32)
        expected[5:15, 7:21] = 1
        np.testing.assert_array_equal(masks, np.broadcast_to(expected, masks.shape))
    # Grayscale images come out as RGB with equal channels.
    gray, _ = next(iter(pipelines.make_dataset("weizmann_horse", "all", data_dir=root, images="gray",
                                               batch_size=1, shuffle=False)))
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])


def test_seeded_split_is_deterministic_and_disjoint(tmp_path):
    root = layouts.write_weizmann_horse(tmp_path, count=10)
    first = pipelines.get_source("weizmann_horse", root)
    second = pipelines.get_source("weizmann_horse", root)
    sizes = {split: len(first.pairs(split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 6, "val": 2, "test": 2}
    assert all(first.pairs(s) == second.pairs(s) for s in ("train", "val", "test"))
    union = set(first.pairs("train")) | set(first.pairs("val")) | set(first.pairs("test"))
    assert union == set(first.pairs("all"))
    other = pipelines.get_source("weizmann_horse", root, split_seed=1)
    assert other.pairs("train") != first.pairs("train")
    assert seeded_split([f"s{i}" for i in range(5)], (1.0, 0.0, 0.0))["train"] == [f"s{i}" for i in range(5)]
    with pytest.raises(ValueError, match="split_ratios"):
        seeded_split(["a"], (0.5, 0.2, 0.2))


@pytest.mark.parametrize("variant", ["original", "256"])
def test_oxford_flowers17_palette_trimaps(tmp_path, variant):
    root = layouts.write_oxford_flowers17(tmp_path, variant=variant)
    source = pipelines.get_source("oxford_flowers17", root)
    assert source.variant == variant
    assert len(source.pairs("all")) == 10  # the 3 images without a trimap are left out
    image_path, mask_path = source.pairs("all")[0]
    dataset = pipelines.make_dataset(source, "all", batch_size=1, shuffle=False, deterministic=True)
    _, masks = _batches(dataset)[0]
    trimap = _read(mask_path)  # palette indices
    np.testing.assert_array_equal(masks[0], (trimap == 1).astype(np.int32))


def test_oxford_flowers17_gray_copies(tmp_path):
    """256 copies saved as grayscale: the flower index reads 38 (red converted to gray)."""
    root = layouts.write_oxford_flowers17(tmp_path, variant="256", count=2, unlabelled=0)
    source = pipelines.get_source("oxford_flowers17", root)
    _, mask_path = source.pairs("all")[0]
    trimap = _read(mask_path)
    with Image.open(mask_path) as image:
        image.convert("L").save(mask_path)
    assert set(np.unique(_read(mask_path))) <= {0, 38, 75, 255}
    _, masks = _batches(pipelines.make_dataset(source, "all", batch_size=1, shuffle=False,
                                               deterministic=True))[0]
    np.testing.assert_array_equal(masks[0], (trimap == 1).astype(np.int32))


def test_folder_maps_ignore_value_to_num_classes(tmp_path):
    root = layouts.write_folder(tmp_path, num_classes=3, ignore_value=255)
    source = pipelines.get_source("folder", root, num_classes=3, ignore_value=255)
    assert source.ignore_label == 3 and source.palette.shape == (4, 3)
    dataset = pipelines.make_dataset(source, "all", batch_size=6, shuffle=False, deterministic=True)
    _, masks = _batches(dataset)[0]
    np.testing.assert_array_equal(masks[:, 0, :], 3)
    assert set(np.unique(masks[:, 1:, :])) == {0, 1, 2}


def test_folder_with_split_dirs(tmp_path):
    root = layouts.write_folder(tmp_path, split_dirs={"train": 3, "val": 2})
    source = pipelines.get_source("folder", root, num_classes=3)
    assert source.splits == ("train", "val")
    assert len(source.pairs("val")) == 2


def test_folder_argument_errors(tmp_path):
    root = layouts.write_folder(tmp_path)
    with pytest.raises(ValueError, match="num_classes"):
        pipelines.get_source("folder", root)
    with pytest.raises(ValueError, match="collides"):
        pipelines.get_source("folder", root, num_classes=3, ignore_value=1)


def test_missing_dir_and_unknown_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pipelines.get_source("camvid", tmp_path / "nowhere")
    root = layouts.write_camvid(tmp_path / "camvid")
    with pytest.raises(ValueError, match=r"'test' has no list file .*test\.txt.*train\.txt, val\.txt"):
        pipelines.get_source("camvid", root).pairs("test")
    with pytest.raises(FileNotFoundError, match="figure_ground"):
        os.makedirs(tmp_path / "horse" / "rgb")
        pipelines.get_source("weizmann_horse", tmp_path / "horse").pairs("train")


def test_empty_split_and_unmatched_mask(tmp_path):
    root = layouts.write_camvid(tmp_path)
    open(os.path.join(root, "val.txt"), "w").close()
    with pytest.raises(ValueError, match="'val'.*no image/mask pairs"):
        pipelines.get_source("camvid", root).pairs("val")
    folder = layouts.write_folder(tmp_path / "folder")
    os.remove(os.path.join(folder, "images", "sample_00.png"))
    with pytest.raises(ValueError, match="sample_00"):
        pipelines.get_source("folder", folder, num_classes=3).pairs("all")


def test_list_file_naming_a_missing_file(tmp_path):
    root = layouts.write_camvid(tmp_path)
    os.remove(os.path.join(root, "trainannot", "train_001.png"))
    with pytest.raises(FileNotFoundError, match=r"train.txt:2.*train_001"):
        pipelines.get_source("camvid", root).pairs("train")


def test_bad_files_are_listed_before_the_pipeline_runs(tmp_path):
    root = layouts.write_camvid(tmp_path)
    truncated = os.path.join(root, "train", "train_000.png")
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    not_an_image = os.path.join(root, "trainannot", "train_001.png")
    open(not_an_image, "w").write("hello")
    small = os.path.join(root, "train", "train_002.png")
    Image.new("RGB", (8, 8)).save(small)
    with pytest.raises(ValueError) as error:
        pipelines.make_dataset("camvid", "train", data_dir=root)
    message = str(error.value)
    assert "3 bad file(s)" in message
    assert f"{truncated}: truncated PNG" in message
    assert f"{not_an_image}: not a readable image" in message
    assert f"{small}: image is 8x8 (WxH) but its mask" in message


def test_out_of_range_mask_fails_in_graph_naming_the_file(tmp_path):
    import tensorflow as tf

    root = layouts.write_camvid(tmp_path, splits=(("train", 2),))
    mask_path = os.path.join(root, "trainannot", "train_001.png")
    labels = _read(mask_path).copy()
    labels[0, 0] = 200
    Image.fromarray(labels).save(mask_path)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)mask value outside 0\.\.10.*train_001"):
        list(pipelines.make_dataset("camvid", "train", data_dir=root, batch_size=2))


def test_rgba_and_gray_images_are_converted(tmp_path):
    root = layouts.write_camvid(tmp_path, splits=(("train", 2),))
    source = pipelines.get_source("camvid", root)
    (rgb_path, _), (gray_path, _) = source.pairs("train")
    rgb = _read(rgb_path)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])).save(rgb_path)
    Image.fromarray(rgb[..., 1]).save(gray_path)
    images, _ = next(iter(pipelines.make_dataset(source, "train", batch_size=2, shuffle=False,
                                                 deterministic=True)))
    np.testing.assert_array_equal(images[0], rgb)
    np.testing.assert_array_equal(images[1], np.repeat(rgb[..., 1:2], 3, axis=-1))


def test_mixed_sizes_need_image_size(tmp_path):
    root = layouts.write_folder(tmp_path, count=2)
    layouts.write_folder(tmp_path, count=1, size=(10, 10), seed=1)  # overwrites sample_00
    with pytest.raises(ValueError, match="2 sizes.*image_size"):
        pipelines.make_dataset("folder", "all", data_dir=root, num_classes=3, batch_size=2)
    dataset = pipelines.make_dataset("folder", "all", data_dir=root, num_classes=3, batch_size=2,
                                     image_size=(8, 8))
    assert _batches(dataset)[0][0].shape == (2, 8, 8, 3)


def test_shuffle_is_seeded(tmp_path):
    root = layouts.write_camvid(tmp_path, splits=(("train", 8),))

    def first_epoch(seed):
        dataset = pipelines.make_dataset("camvid", "train", data_dir=root, batch_size=8, seed=seed,
                                         deterministic=True)
        return _batches(dataset)[0][0]

    np.testing.assert_array_equal(first_epoch(3), first_epoch(3))
    assert not np.array_equal(first_epoch(3), first_epoch(4))


def _write_split_lists(root, splits):
    """Writes `<split>.txt` for each `split -> [(image, mask), ...]` (paths relative to root)."""
    for split, pairs in splits.items():
        with open(os.path.join(root, f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{image} {mask}\n" for image, mask in pairs))


@pytest.mark.parametrize("dataset", ["weizmann_horse", "oxford_flowers17", "folder"])
def test_split_lists_replace_the_seeded_split(tmp_path, dataset):
    writers = {"weizmann_horse": (layouts.write_weizmann_horse, {}),
               "oxford_flowers17": (layouts.write_oxford_flowers17, {}),
               "folder": (layouts.write_folder, {"num_classes": 3})}
    writer, options = writers[dataset]
    root = writer(tmp_path / dataset)
    seeded = pipelines.get_source(dataset, root, **options)
    listed = {"train": seeded.pairs("test") + seeded.pairs("val")[:1], "val": seeded.pairs("train")[:3]}
    _write_split_lists(root, {split: [(os.path.relpath(i, root), os.path.relpath(m, root)) for i, m in pairs]
                              for split, pairs in listed.items()})
    source = pipelines.get_source(dataset, root, **options)
    assert source.splits == ("train", "val")
    assert source.pairs("train") == listed["train"]  # file order, not the seeded permutation
    assert source.pairs("val") == listed["val"]
    assert source.options()["split_lists"] == ("train", "val")
    with pytest.raises(ValueError, match=r"'test' has no list file .*test\.txt"):
        source.pairs("test")
    with pytest.raises(ValueError, match=r"'all' has no list file"):
        source.pairs("all")
    dataset_batches = _batches(pipelines.make_dataset(source, "val", batch_size=1, shuffle=False))
    assert len(dataset_batches) == 3


def test_split_list_errors_name_the_file_and_line(tmp_path):
    root = layouts.write_weizmann_horse(tmp_path / "horse", count=4)
    good = "rgb/horse001.jpg figure_ground/horse001.jpg\n"
    _write_split_lists(root, {"train": []})
    list_file = os.path.join(root, "train.txt")
    source = pipelines.get_source("weizmann_horse", root)

    with open(list_file, "w") as handle:
        handle.write(good + "\n" + "rgb/horse002.jpg\n")  # blank lines are skipped
    with pytest.raises(ValueError, match=r"train\.txt:3: expected 'IMAGE_PATH MASK_PATH', got 'rgb/horse002.jpg'"):
        source.pairs("train")
    with open(list_file, "w") as handle:
        handle.write(good + "rgb/horse002.jpg figure_ground/horse999.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"train\.txt:2: listed file 'figure_ground/horse999.jpg' not found"):
        source.pairs("train")
    with open(list_file, "w") as handle:
        handle.write("\n")
    with pytest.raises(ValueError, match="split 'train' .* has no image/mask pairs"):
        source.pairs("train")
    with open(list_file, "w") as handle:
        handle.write(good)
    assert source.pairs("train") == [(os.path.join(root, "rgb", "horse001.jpg"),
                                      os.path.join(root, "figure_ground", "horse001.jpg"))]


def test_without_list_files_the_seeded_split_is_unchanged(tmp_path):
    root = layouts.write_weizmann_horse(tmp_path, count=10)
    source = pipelines.get_source("weizmann_horse", root)
    assert source.split_lists == ()
    stems = seeded_split([f"horse{i + 1:03d}" for i in range(10)])
    for split in ("train", "val", "test"):
        assert [os.path.basename(image)[:-4] for image, _ in source.pairs(split)] == stems[split]
