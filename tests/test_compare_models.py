"""benchmarks/compare_models.py: two models on the same images, the difference bootstrapped."""
import importlib.util
import json
from pathlib import Path

import keras

from helpers import tiny_model

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_models.py"
CAMVID_CLASSES = 11


def _load_script():
    spec = importlib.util.spec_from_file_location("compare_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_model_compared_with_itself_is_not_better_and_the_result_names_both(tmp_path, capsys):
    keras.utils.set_random_seed(0)
    model = tiny_model((32, 32, 3), num_classes=CAMVID_CLASSES,
                       class_names=tuple(f"c{i}" for i in range(CAMVID_CLASSES)))
    path = tmp_path / "tiny.keras"
    model.save(path)
    result_path = tmp_path / "result.json"
    assert _load_script().main(["--a", f"first={path}", "--b", f"again={path}", "--resamples", "50",
                                "--json", str(result_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result == json.loads(result_path.read_text())
    assert result["a"]["label"] == "first" and result["b"]["label"] == "again"
    assert result["a"]["mean_iou"] == result["b"]["mean_iou"]
    assert result["difference"] == 0 and result["b_better"] is False and result["num_images"] == 4
    assert "is not better beyond the split's noise" in lines[-2]


def test_each_side_is_its_own_model_and_labels_must_differ(tmp_path, capsys):
    import pytest

    import reseg_tf

    paths = {}
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        model = tiny_model((32, 32, 3), num_classes=CAMVID_CLASSES,
                           class_names=tuple(f"c{i}" for i in range(CAMVID_CLASSES)))
        paths[seed] = tmp_path / f"tiny{seed}.keras"
        model.save(paths[seed])
    script = _load_script()
    assert script.main(["--a", f"zero={paths[0]}", "--b", f"one={paths[1]}", "--resamples", "50"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = {seed: reseg_tf.evaluate(str(path), verbose=0)["mean_iou"] for seed, path in paths.items()}
    assert expected[0] != expected[1]
    assert result["a"]["mean_iou"] == expected[0] and result["b"]["mean_iou"] == expected[1]
    assert result["difference"] == pytest.approx(expected[1] - expected[0])
    with pytest.raises(SystemExit):
        script.main(["--a", f"same={paths[0]}", "--b", f"same={paths[1]}"])
