"""The `folder` source's mask formats: index, palette PNGs, and colour-coded RGB masks."""
import json

import numpy as np
import pytest
from PIL import Image

import pipelines
from pipelines.mask_formats import read_class_palette
from reseg_tf import cli
from pipelines_layouts import random_image, save

SIZE = (12, 16)
# A few of CamVid's original 32-class colour codes, and its void colour.
CLASSES = [("Sky", (128, 128, 128)), ("Building", (128, 0, 0)), ("Road", (128, 64, 128)), ("Car", (64, 0, 128))]
VOID = (0, 0, 0)


def _write_palette_csv(path, header=True):
    lines = ["name,r,g,b"] if header else []
    lines += [f"{name},{r},{g},{b}" for name, (r, g, b) in CLASSES] + ["void,0,0,0"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _write_rgb_dataset(root, count=5, extra_color=None, seed=0):
    """Images + colour-coded masks; returns the label maps (void = 4)."""
    rng = np.random.default_rng(seed)
    colors = np.array([color for _, color in CLASSES] + [VOID], np.uint8)
    labels_all = []
    for index in range(count):
        labels = rng.integers(0, len(colors), SIZE)
        mask = colors[labels]
        if extra_color is not None and index == count - 1:
            mask[0, 0] = extra_color
        save(random_image(rng, *SIZE), str(root / "images" / f"s{index}.png"))
        save(mask, str(root / "masks" / f"s{index}.png"))
        labels_all.append(labels)
    return labels_all


def _labels(source, stem):
    _, labels = source.load_example(str(source.data_dir) + f"/images/{stem}.png",
                                    str(source.data_dir) + f"/masks/{stem}.png")
    return labels.numpy()


def test_rgb_masks_are_read_through_the_palette_file(tmp_path):
    labels = _write_rgb_dataset(tmp_path / "data")
    palette = _write_palette_csv(tmp_path / "classes.csv")
    source = pipelines.get_source("folder", tmp_path / "data", mask_format="rgb", palette_file=str(palette))
    assert source.num_classes == 4 and source.class_names == ("Sky", "Building", "Road", "Car")
    assert source.palette.tolist()[:4] == [list(color) for _, color in CLASSES]
    for index, expected in enumerate(labels):
        np.testing.assert_array_equal(_labels(source, f"s{index}"), expected)  # void row -> label 4 = void
    batch = next(iter(pipelines.make_dataset(source, "all", batch_size=2, shuffle=False)))
    assert batch[1].shape[1:3] == SIZE


@pytest.mark.parametrize("layout", ["rows", "objects", "mapping"])
def test_json_palette_files_match_the_csv(tmp_path, layout):
    entries = CLASSES + [("void", VOID)]
    data = {"rows": [[name, *color] for name, color in entries],
            "objects": [{"name": name, "color": list(color)} for name, color in entries],
            "mapping": {name: list(color) for name, color in entries}}[layout]
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(data))
    from_json = read_class_palette(path)
    from_csv = read_class_palette(_write_palette_csv(tmp_path / "classes.csv", header=False))
    assert from_json.names == from_csv.names
    np.testing.assert_array_equal(from_json.colors, from_csv.colors)
    np.testing.assert_array_equal(from_json.void_colors, [VOID])


def test_unknown_colours_are_an_error_naming_them_and_a_file_or_void(tmp_path, capsys):
    labels = _write_rgb_dataset(tmp_path / "data", extra_color=(1, 2, 3))
    palette = _write_palette_csv(tmp_path / "classes.csv")
    source = pipelines.get_source("folder", tmp_path / "data", mask_format="rgb", palette_file=str(palette))
    with pytest.raises(Exception, match=r"s4\.png: colours not in the palette file .*\(1, 2, 3\)"):
        _labels(source, "s4")
    code = cli.main(["verify-dataset", "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                     "--mask-format", "rgb", "--palette", str(palette)])
    printed = capsys.readouterr()
    assert code == 1
    assert "(1, 2, 3)" in printed.out + printed.err and "s4.png" in printed.out + printed.err
    as_void = pipelines.get_source("folder", tmp_path / "data", mask_format="rgb", palette_file=str(palette),
                                   unknown_colors="void")
    expected = labels[4].copy()
    expected[0, 0] = 4
    np.testing.assert_array_equal(_labels(as_void, "s4"), expected)


def test_palette_pngs_are_read_by_index_and_other_modes_refused(tmp_path, capsys):
    rng = np.random.default_rng(1)
    (tmp_path / "data" / "masks").mkdir(parents=True)
    for index in range(4):
        labels = rng.integers(0, 3, SIZE).astype(np.uint8)
        mask = Image.fromarray(labels, mode="P")
        mask.putpalette([250, 0, 0, 0, 250, 0, 0, 0, 250] + [0] * 759)  # the colours do not matter
        save(random_image(rng, *SIZE), str(tmp_path / "data" / "images" / f"p{index}.png"))
        mask.save(tmp_path / "data" / "masks" / f"p{index}.png")
    source = pipelines.get_source("folder", tmp_path / "data", num_classes=3, mask_format="palette")
    np.testing.assert_array_equal(_labels(source, "p3"), labels)
    assert cli.main(["verify-dataset", "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                     "--num-classes", "3", "--mask-format", "palette"]) == 0
    capsys.readouterr()
    Image.fromarray(labels).save(tmp_path / "data" / "masks" / "p0.png")  # a gray mask among them
    assert cli.main(["verify-dataset", "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                     "--num-classes", "3", "--mask-format", "palette"]) == 1
    assert "p0.png: mask has PIL mode L" in capsys.readouterr().out


def test_index_masks_point_colour_masks_to_rgb(tmp_path, capsys):
    _write_rgb_dataset(tmp_path / "data")
    assert cli.main(["verify-dataset", "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                     "--num-classes", "4"]) == 1
    assert "--mask-format rgb --palette FILE" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ("Sky,128,128\n", r"line 1: expected `class_name, r, g, b`"),
    ("Sky,128,128,x\n", r"line 1: r, g, b must be integers"),
    ("Sky,1,2,3\nRoad,1,2,300\n", r"line 2: needs a class name and r, g, b in 0..255"),
    ("Sky,1,2,3\nRoad,1,2,3\n", r"line 2: colour \(1, 2, 3\) is already used by 'Sky'"),
    ("void,0,0,0\n", r"defines no class"),
])
def test_malformed_palette_files_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_class_palette(path)
    assert str(path) in str(error.value)


def test_option_errors(tmp_path):
    _write_rgb_dataset(tmp_path / "data")
    with pytest.raises(ValueError, match="--palette FILE goes with --mask-format rgb"):
        pipelines.get_source("folder", tmp_path / "data", mask_format="rgb")
    with pytest.raises(FileNotFoundError, match="palette file .* does not exist"):
        pipelines.get_source("folder", tmp_path / "data", mask_format="rgb", palette_file=str(tmp_path / "no.csv"))
    palette = _write_palette_csv(tmp_path / "classes.csv")
    with pytest.raises(ValueError, match="--num-classes 3 but the palette file"):
        pipelines.get_source("folder", tmp_path / "data", num_classes=3, mask_format="rgb", palette_file=str(palette))
    with pytest.raises(ValueError, match="--mask-format must be one of"):
        pipelines.get_source("folder", tmp_path / "data", num_classes=3, mask_format="colour")


def test_unknown_colours_stop_a_tf_data_pipeline_with_the_readers_message(tmp_path):
    import tensorflow as tf

    from reseg_tf.evaluation import op_error_summary

    _write_rgb_dataset(tmp_path / "data", extra_color=(1, 2, 3))
    palette = _write_palette_csv(tmp_path / "classes.csv")
    source = pipelines.get_source("folder", tmp_path / "data", mask_format="rgb", palette_file=str(palette))
    with pytest.raises(tf.errors.OpError) as error:
        for _ in pipelines.make_dataset(source, "all", batch_size=2, shuffle=False):
            pass
    assert op_error_summary(error.value).startswith(str(tmp_path / "data" / "masks" / "s4.png") + ": colours not in")
