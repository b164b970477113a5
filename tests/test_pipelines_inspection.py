"""verify_dataset / show_dataset and their `reseg` subcommands."""
import os

import cv2
import numpy as np
from PIL import Image

import pipelines
import pipelines_layouts as layouts
from reseg_tf.cli import main


def _break_files(root):
    """One truncated image, one out-of-range mask, one size mismatch; returns their paths."""
    truncated = os.path.join(root, "train", "train_000.png")
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[: len(data) // 2])
    out_of_range = os.path.join(root, "trainannot", "train_001.png")
    Image.fromarray(np.full((24, 32), 40, np.uint8)).save(out_of_range)
    mismatched = os.path.join(root, "valannot", "val_000.png")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mismatched)
    return truncated, out_of_range, os.path.join(root, "val", "val_000.png")


def test_verify_dataset_statistics(tmp_path):
    root = layouts.write_camvid(tmp_path)
    report = pipelines.verify_dataset("camvid", root, progress=False)
    assert report.ok and report.pair_counts == {"train": 4, "val": 2}
    assert report.image_sizes["train"] == {"24x32": 4}
    expected = np.zeros(12, np.int64)
    for _, mask_path in pipelines.get_source("camvid", root).pairs("train"):
        expected += np.bincount(np.asarray(Image.open(mask_path)).ravel(), minlength=12)
    np.testing.assert_array_equal(report.class_pixels["train"], expected)
    assert report.weights_split == "train" and report.class_weights.shape == (11,)
    assert "no problems found" in report.format()


def test_verify_dataset_lists_every_bad_file(tmp_path):
    root = layouts.write_camvid(tmp_path)
    truncated, out_of_range, mismatched = _break_files(root)
    report = pipelines.verify_dataset("camvid", root, progress=False)
    assert not report.ok and len(report.problems) == 3
    text = "\n".join(report.problems)
    assert f"{truncated}: truncated PNG" in text
    assert f"{out_of_range}: 768 pixels with values [40] outside 0..10 (void 11)" in text
    assert f"{mismatched}: image is 32x24 (WxH) but its mask" in text


def test_verify_reports_conversions(tmp_path):
    root = layouts.write_weizmann_horse(tmp_path, count=6)
    report = pipelines.verify_dataset("weizmann_horse", root, splits=["all"], progress=False)
    assert report.ok and report.conversions["L image converted to RGB"] == 2
    assert report.image_sizes["all"] == {"20x28": 6}


def test_cli_verify_dataset_exit_codes(tmp_path, capsys):
    root = layouts.write_camvid(tmp_path)
    assert main(["verify-dataset", "--dataset", "camvid", "--data-dir", root, "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "val: 2 pairs" in out and "train" not in out.split("class pixel")[0]
    _break_files(root)
    assert main(["verify-dataset", "--dataset", "camvid", "--data-dir", root]) == 1
    assert "3 problem(s):" in capsys.readouterr().out
    assert main(["verify-dataset", "--dataset", "camvid", "--data-dir", root, "--num-classes", "3"]) == 2
    assert "--num-classes applies to --dataset folder only" in capsys.readouterr().err
    assert main(["verify-dataset", "--dataset", "camvid", "--data-dir", str(tmp_path / "missing")]) == 2


def test_cli_verify_folder_options(tmp_path, capsys):
    root = layouts.write_folder(tmp_path, num_classes=3, ignore_value=9)
    assert main(["verify-dataset", "--dataset", "folder", "--data-dir", root, "--num-classes", "3",
                 "--ignore-value", "9", "--split", "all"]) == 0
    assert main(["verify-dataset", "--dataset", "folder", "--data-dir", root, "--num-classes", "3",
                 "--split", "all"]) == 1  # 9 is not the default ignore value 255
    assert "values [9] outside 0..2 (ignore value 255)" in capsys.readouterr().out


def test_show_dataset_grid(tmp_path, capsys):
    root = layouts.write_camvid(tmp_path / "data")
    output = str(tmp_path / "grid.png")
    assert main(["show-dataset", "--dataset", "camvid", "--data-dir", root, "--split", "train",
                 "--output", output, "--count", "3", "--columns", "2"]) == 0
    grid = cv2.imread(output)
    assert grid.shape[1] == 2 * 240 and grid.shape[0] > 2 * 180  # 2x2 tiles of 240x180 + legend
    assert main(["show-dataset", "--data-dir", root, "--output", output]) == 2  # no silent overwrite
    assert "exists" in capsys.readouterr().err
    pipelines.show_dataset("camvid", "val", output, data_dir=root, count=1, columns=1, alpha=1.0,
                           overwrite=True)
    tile = cv2.cvtColor(cv2.imread(output), cv2.COLOR_BGR2RGB)[30:170, 10:230]
    palette_colors = {tuple(c) for c in pipelines.get_source("camvid", root).palette}
    pixels = {tuple(p) for p in tile.reshape(-1, 3)[:: 97]}
    assert len(pixels & palette_colors) / len(pixels) > 0.9  # alpha 1: the mask colors only


def test_size_summary_is_one_line_with_min_median_max():
    from pipelines.inspection import summarize_sizes

    assert summarize_sizes({"24x32": 4}) == "size (HxW): 24x32"
    summary = summarize_sizes({"10x40": 1, "20x30": 2, "30x20": 1, "100x10": 1})
    assert summary == ("4 distinct sizes (HxW): min 10x10, median 20x30, max 100x40 "
                       "(height and width taken separately)")
    assert summarize_sizes({}) == "sizes: none decoded"


def test_progress_is_one_line_when_not_on_a_terminal(tmp_path, capsys):
    root = layouts.write_camvid(tmp_path)
    main(["verify-dataset", "--dataset", "camvid", "--data-dir", root, "--split", "train"])
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "\r" not in out and "\b" not in out
    assert out.count("4/4") == 1
