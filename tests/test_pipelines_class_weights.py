"""Median-frequency weights against a hand computation; the on-disk cache; sample weights."""
import json
import os

import numpy as np
import pytest

import pipelines
import pipelines_layouts as layouts

# Two 2x3 training masks, 3 classes, 255 = void.
MASK_A = np.array([[0, 0, 0], [0, 1, 1]], np.uint8)
MASK_B = np.array([[0, 2, 2], [255, 2, 2]], np.uint8)
# By hand: class 0 has 4 + 1 pixels in images of 6 + 6 pixels -> 5/12; class 1: 2/6;
# class 2: 4/6. median(5/12, 1/3, 2/3) = 5/12 -> weights 1, 5/4, 5/8.
EXPECTED = np.array([1.0, 1.25, 0.625], np.float32)


@pytest.fixture
def weights_dataset(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for stem, mask in (("a", MASK_A), ("b", MASK_B)):
        layouts.save(layouts.random_image(rng, 2, 3), str(root / "train" / "images" / f"{stem}.png"))
        layouts.save(mask, str(root / "train" / "masks" / f"{stem}.png"))
    layouts.save(layouts.random_image(rng, 2, 3), str(root / "val" / "images" / "c.png"))
    layouts.save(MASK_A, str(root / "val" / "masks" / "c.png"))
    return pipelines.get_source("folder", str(root), num_classes=3, ignore_value=255)


def test_from_counts_matches_hand_computation():
    weights = pipelines.median_frequency_from_counts([5, 2, 4, 0], [12, 6, 6, 0])
    np.testing.assert_allclose(weights, np.append(EXPECTED, 0.0), rtol=1e-6)  # absent class: 0


def test_weights_are_computed_once_and_cached(weights_dataset, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    weights = pipelines.median_frequency_weights(weights_dataset, cache_dir=cache)
    np.testing.assert_allclose(weights, EXPECTED, rtol=1e-6)
    assert "computing median-frequency class weights" in capsys.readouterr().err
    (cache_file,) = os.listdir(os.path.join(cache, "class_weights"))
    path = os.path.join(cache, "class_weights", cache_file)
    record = json.load(open(path))
    assert record["class_pixels"] == [5, 2, 4] and record["num_pairs"] == 2
    # A second call reads the file (proved by editing it) and says nothing.
    record["weights"] = [7.0, 8.0, 9.0]
    json.dump(record, open(path, "w"))
    np.testing.assert_array_equal(pipelines.median_frequency_weights(weights_dataset, cache_dir=cache),
                                  [7.0, 8.0, 9.0])
    assert capsys.readouterr().err == ""


def test_changed_data_gets_a_new_cache_entry(weights_dataset, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    pipelines.median_frequency_weights(weights_dataset, cache_dir=cache)
    mask_path = weights_dataset.pairs("train")[1][1]
    layouts.save(np.zeros((2, 3), np.uint8), mask_path)  # every pixel class 0 now
    capsys.readouterr()
    weights = pipelines.median_frequency_weights(weights_dataset, cache_dir=cache)
    assert "computing" in capsys.readouterr().err
    # freq 10/12 and 2/6, class 2 absent -> median 7/12 -> weights 0.7, 1.75, 0.
    np.testing.assert_allclose(weights, [0.7, 1.75, 0.0], rtol=1e-6)
    assert len(os.listdir(os.path.join(cache, "class_weights"))) == 2


def test_sample_weight_per_pixel(weights_dataset, tmp_path):
    dataset = pipelines.make_dataset(weights_dataset, "train", batch_size=2, shuffle=False,
                                     deterministic=True, class_balance=True, cache_dir=str(tmp_path / "c"))
    images, masks, sample_weight = (t.numpy() for t in next(iter(dataset)))
    assert sample_weight.dtype == np.float32 and sample_weight.shape == masks.shape == (2, 2, 3)
    np.testing.assert_allclose(sample_weight, np.append(EXPECTED, 0.0)[masks], rtol=1e-6)
    assert sample_weight[1, 1, 0] == 0.0  # the void pixel
    explicit = pipelines.make_dataset(weights_dataset, "val", batch_size=1, class_balance=[2.0, 3.0, 4.0])
    _, masks, sample_weight = (t.numpy() for t in next(iter(explicit)))
    np.testing.assert_array_equal(sample_weight, np.array([2.0, 3.0, 4.0, 0.0])[masks])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        pipelines.make_dataset(weights_dataset, "val", class_balance=[1.0, 2.0])
