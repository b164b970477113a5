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
