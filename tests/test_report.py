import json

import numpy as np
import pytest
from PIL import Image

from reseg_tf.cli import main
from reseg_tf.metrics import summarize_confusion

CLASSES = ["Sky", "Road", "Car"]


def _write_run(run_dir, with_confusion=True):
    run_dir.mkdir()
    confusion = np.array([[50, 5, 0], [3, 80, 2], [0, 10, 20]])
    metrics = summarize_confusion(confusion, CLASSES)
    metrics.update(dataset="camvid", split="val", num_images=2, baseline_mean_iou=0.2)
    if with_confusion:
        metrics["confusion_matrix"] = confusion.tolist()
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "history.csv").write_text(
        "epoch,loss,mean_iou,val_loss,val_mean_iou\n1,1.5,0.2,1.6,0.25\n2,1.0,0.4,1.2,0.45\n3,0.8,0.5,1.1,0.43\n")
    (run_dir / "predictions").mkdir()
    Image.fromarray(np.zeros((20, 60, 3), np.uint8)).save(run_dir / "predictions" / "00_a.png")
    return metrics


def test_report_writes_markdown_and_figures(tmp_path, capsys):
    run_dir = tmp_path / "run"
    metrics = _write_run(run_dir)
    assert main(["report", str(run_dir)]) == 0
    report = run_dir / "report" / "report.md"
    assert str(report) in capsys.readouterr().out
    text = report.read_text()
    assert f"mean IoU {metrics['mean_iou']:.4f}" in text
    assert "best epoch 2" in text and "ReSeg (paper" in text
    assert text.startswith(f"# ReSeg run report: `{run_dir}`")
    for figure in ("learning_curves.png", "confusion_matrix.png", "class_iou.png", "predictions.png"):
        path = run_dir / "report" / figure
        assert path.stat().st_size > 1000 and f"({figure})" in text
        assert Image.open(path).size[0] > 100


def test_report_lists_the_recorded_settings(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir)
    settings = dict(preset="camvid_scratch", dataset="camvid", image_size=[264, 352], crop_size=[180, 240],
                    optimizer="adam", class_balance=True, augment=True, lr_schedule="cosine")
    (run_dir / "run.json").write_text(json.dumps({"state": "finished", "settings": settings}))
    assert main(["report", str(run_dir)]) == 0
    text = (run_dir / "report" / "report.md").read_text()
    assert "preset `camvid_scratch`" in text and "image size 264x352" in text
    assert "random crops 180x240" in text and "learning-rate schedule cosine" in text


def test_report_includes_the_averaging_table(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir)
    assert main(["report", str(run_dir)]) == 0
    assert "Averaged inference" not in (run_dir / "report" / "report.md").read_text()
    (run_dir / "averaging").mkdir()
    (run_dir / "averaging" / "table.md").write_text("| model | inference | mean IoU |\n|---|---|---|\n| m | flip | 0.5 |\n")
    assert main(["report", str(run_dir)]) == 0
    text = (run_dir / "report" / "report.md").read_text()
    assert "## Averaged inference" in text and "| m | flip | 0.5 |" in text


def test_report_refuses_old_or_unfinished_runs(tmp_path, capsys):
    old = tmp_path / "old"
    _write_run(old, with_confusion=False)
    assert main(["report", str(old)]) == 2
    assert "confusion_matrix" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert main(["report", str(unfinished)]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_report_compares_runs(tmp_path, capsys):
    run_dir = tmp_path / "run"
    metrics = _write_run(run_dir)
    baseline = tmp_path / "baseline"
    baseline_metrics = _write_run(baseline)
    baseline_metrics["mean_iou"] = metrics["mean_iou"] - 0.1
    (baseline / "metrics.json").write_text(json.dumps(baseline_metrics))
    assert main(["report", str(run_dir), "--compare", f"conv baseline={baseline}"]) == 0
    text = (run_dir / "report" / "report.md").read_text()
    assert "## Compared runs" in text
    row = next(line for line in text.splitlines() if line.startswith("| conv baseline |"))
    assert f"| {baseline_metrics['mean_iou']:.3f} | -0.100 |" in row
    assert main(["report", str(run_dir), "--compare", "no-equals-sign"]) == 2
    assert "LABEL=PATH" in capsys.readouterr().err
    assert main(["report", str(run_dir), "--compare", f"x={tmp_path / 'nothing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
