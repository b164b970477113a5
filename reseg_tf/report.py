"""`reseg report RUN_DIR`: a one-page Markdown report of a training run, with PNG figures.

Reads what `reseg train` wrote (`history.csv`, `metrics.json`, `predictions/`, `run.json`) and
writes `RUN_DIR/report/`: `report.md`, `learning_curves.png`, `confusion_matrix.png`,
`class_iou.png` and `predictions.png`. Nothing is recomputed: the report shows the run's own
numbers. A `metrics.json` without `confusion_matrix` (written by an older version) is refused
with the command that rewrites it.

`compare={"label": path}` (`reseg report RUN_DIR --compare LABEL=PATH`) adds other runs (a run
directory or a `metrics.json`), e.g. an equal-budget baseline: their per-class IoU bars go next to
this run's and a table lists every run's columns and mean-IoU difference to this run.
"""
import os

import numpy as np

from reseg_tf.run_files import atomic_path, atomic_write_text, read_json

# Mean IoU on the CamVid test split reported in the ReSeg paper (Table 3), for reference lines.
PAPER_CAMVID_MEAN_IOU = {"ReSeg (paper, ImageNet VGG)": 0.588, "SegNet-Basic (from scratch)": 0.463}


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")


def _read_history(path):
    from reseg_tf.training import read_history

    rows = read_history(path)
    if not rows:
        raise ValueError(f"{path} has no completed epoch; nothing to report yet.")
    return rows


def plot_learning_curves(rows, path):
    plt = _matplotlib()
    epochs = [row["epoch"] for row in rows]
    figure, (loss_axis, iou_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss", "train loss"), ("val_loss", "val loss")):
        if key in rows[0]:
            loss_axis.plot(epochs, [row[key] for row in rows], label=label)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_axis.legend()
    for key, label in (("mean_iou", "train mean IoU"), ("val_mean_iou", "val mean IoU")):
        if key in rows[0]:
            iou_axis.plot(epochs, [row[key] for row in rows], label=label)
    best = max(rows, key=lambda row: row.get("val_mean_iou", -1))
    if "val_mean_iou" in best:
        iou_axis.scatter([best["epoch"]], [best["val_mean_iou"]], color="red", zorder=3,
                         label=f"best: epoch {best['epoch']}")
    iou_axis.set(xlabel="epoch", ylabel="mean IoU", title="Mean IoU", ylim=(0, 1))
    iou_axis.legend()
    _save(figure, path)
    plt.close(figure)


def plot_confusion(confusion, class_names, path):
    plt = _matplotlib()
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    normalized = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    image = axis.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=60, ha="right")
    axis.set_yticks(ticks, class_names)
    for row in ticks:
        for column in ticks:
            value = normalized[row, column]
            if value >= 0.01:
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.5 else "black")
    axis.set(xlabel="predicted", ylabel="ground truth", title="Confusion matrix (rows sum to 1)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    _save(figure, path)
    plt.close(figure)


def plot_class_iou(metrics, path, references, compared=None):
    """Per-class IoU bars of this run (and of `compared` runs, side by side) with mean lines."""
    plt = _matplotlib()
    names = list(metrics["class_iou"])
    runs = {"this run": metrics, **(compared or {})}
    width = 0.8 / len(runs)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figure, axis = plt.subplots(figsize=(10 + 2 * (len(runs) - 1), 4))
    positions = np.arange(len(names))
    for index, (label, run) in enumerate(runs.items()):
        color = colors[index % len(colors)]
        offset = (index - (len(runs) - 1) / 2) * width
        axis.bar(positions + offset, [run["class_iou"].get(name, 0.0) for name in names], width,
                 color=color, label=f"{label} (per class)")
        axis.axhline(run["mean_iou"], color=color, linestyle="-", linewidth=1,
                     label=f"{label}, mean {run['mean_iou']:.3f}")
    axis.set_xticks(positions, names)
    for (label, value), style in zip(references.items(), ("--", ":", "-.")):
        axis.axhline(value, color="black", linestyle=style, linewidth=1, label=f"{label}, mean {value:.3f}")
    axis.set(ylabel="IoU", ylim=(0, 1), title="Per-class IoU")
    axis.tick_params(axis="x", rotation=45)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(figure, path)
    plt.close(figure)


def plot_prediction_grid(strip_paths, path):
    from reseg_tf.inference import read_image_file

    plt = _matplotlib()
    figure, axes = plt.subplots(len(strip_paths), 1, figsize=(12, 3.2 * len(strip_paths)), squeeze=False)
    for axis, strip in zip(axes[:, 0], strip_paths):
        axis.imshow(read_image_file(strip))
        axis.set_title(f"{os.path.basename(strip)}: image | ground truth | prediction", fontsize=9)
        axis.axis("off")
    _save(figure, path)
    plt.close(figure)


def _table(metrics):
    names = list(metrics["class_iou"])
    header = "| | " + " | ".join(names) + " | global acc | avg class acc | mean IoU |"
    rule = "|---" * (len(names) + 4) + "|"
    accuracy = "| class accuracy | " + " | ".join(f"{metrics['class_acc'][n]:.3f}" for n in names)
    accuracy += f" | {metrics['global_acc']:.3f} | {metrics['avg_class_acc']:.3f} | {metrics['mean_iou']:.3f} |"
    iou = "| class IoU | " + " | ".join(f"{metrics['class_iou'][n]:.3f}" for n in names) + " | | | |"
    return "\n".join([header, rule, accuracy, iou])


def _read_compared(label, path, class_names):
    """The metrics of a run to compare with (run directory or metrics.json), checked."""
    path = os.fspath(path)
    metrics_path = os.path.join(path, "metrics.json") if os.path.isdir(path) else path
    if not os.path.isfile(metrics_path):
        raise FileNotFoundError(f"--compare {label}={path}: {metrics_path} does not exist.")
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("class_iou"), dict):
        raise ValueError(f"--compare {label}={path}: {metrics_path} is not a metrics.json of "
                         "`reseg train` / `reseg evaluate` (no class_iou).")
    if list(metrics["class_iou"]) != class_names:
        raise ValueError(f"--compare {label}={path}: its classes {list(metrics['class_iou'])} differ "
                         f"from this run's {class_names}.")
    return metrics


def _comparison_table(runs):
    names = list(next(iter(runs.values()))["class_iou"])
    reference = next(iter(runs.values()))["mean_iou"]
    lines = ["| run | mean IoU | difference | global acc | avg class acc | " + " | ".join(names) + " |",
             "|---" * (len(names) + 5) + "|"]
    for label, run in runs.items():
        lines.append(
            f"| {label} | {run['mean_iou']:.3f} | {run['mean_iou'] - reference:+.3f} | "
            f"{run['global_acc']:.3f} | {run['avg_class_acc']:.3f} | "
            + " | ".join(f"{run['class_iou'][name]:.3f}" for name in names) + " |")
    return "\n".join(lines)


def _setting(value):
    """A recorded setting as the report shows it: sizes as HxW."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return "x".join(str(v) for v in value)
    return value


AVERAGING_TABLE = os.path.join("averaging", "table.md")


def write_report(run_dir, output_dir=None, max_strips=4, compare=None):
    """Writes `report.md` and its PNG figures for the run in `run_dir`; returns the report path.

    `compare`: `{label: run directory or metrics.json}` of other runs to show next to this one.
    A table of averaged inference in `RUN_DIR/averaging/table.md` (written by
    `benchmarks/averaging_bench.py --output-dir RUN_DIR/averaging`) is included as it is.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist (or is not a directory).")
    metrics_path = os.path.join(run_dir, "metrics.json")
    metrics = read_json(metrics_path)
    if metrics is None:
        raise ValueError(f"{metrics_path} is missing: the run has not finished (run `reseg train` "
                         "with the same flags to finish it).")
    if "confusion_matrix" not in metrics:
        raise ValueError(
            f"{metrics_path} has no confusion_matrix (older version); rewrite it with `reseg evaluate "
            f"--model {os.path.join(run_dir, 'model.keras')} --dataset ... --data-dir ... --split val "
            f"--json {metrics_path}`."
        )
    rows = _read_history(os.path.join(run_dir, "history.csv"))
    output_dir = output_dir or os.path.join(run_dir, "report")
    os.makedirs(output_dir, exist_ok=True)
    run = read_json(os.path.join(run_dir, "run.json"), {}) or {}
    settings = run.get("settings", {})
    class_names = list(metrics["class_iou"])
    compared = {label: _read_compared(label, path, class_names) for label, path in (compare or {}).items()}

    figures = {name: os.path.join(output_dir, name) for name in
               ("learning_curves.png", "confusion_matrix.png", "class_iou.png", "predictions.png")}
    plot_learning_curves(rows, figures["learning_curves.png"])
    plot_confusion(metrics["confusion_matrix"], class_names, figures["confusion_matrix.png"])
    references = PAPER_CAMVID_MEAN_IOU if metrics.get("dataset", settings.get("dataset")) == "camvid" else {}
    plot_class_iou(metrics, figures["class_iou.png"], references, compared)
    predictions = os.path.join(run_dir, "predictions")
    strips = sorted(os.path.join(predictions, f) for f in os.listdir(predictions)
                    if f.endswith(".png")) if os.path.isdir(predictions) else []
    if strips:
        plot_prediction_grid(strips[:max_strips], figures["predictions.png"])

    best = max(rows, key=lambda row: row.get("val_mean_iou", -1))
    lines = [
        f"# ReSeg run report: `{os.path.normpath(run_dir)}`",
        "",
        f"- preset `{settings.get('preset', metrics.get('preset', '?'))}`, dataset "
        f"`{settings.get('dataset', metrics.get('dataset', '?'))}`, image size "
        f"{_setting(settings.get('image_size')) or 'preset default'}, "
        f"optimizer `{settings.get('optimizer', '?')}`, "
        f"class balance {settings.get('class_balance', '?')}, augmentation {settings.get('augment', '?')}"
        + "".join(f", {label} {_setting(settings[key])}" for key, label in (
            ("crop_size", "random crops"), ("augment_mode", "augment mode"),
            ("lr_schedule", "learning-rate schedule"),
            ("mixed_precision", "mixed precision"), ("time_budget", "time budget (min)"))
            if settings.get(key) not in (None, False)),
        f"- {len(rows)} epochs run; best epoch {best['epoch']} (val mean IoU during training "
        f"{best.get('val_mean_iou', float('nan')):.4f})",
        f"- evaluated on `{metrics.get('split', 'val')}` ({metrics.get('num_images', '?')} images) at the "
        f"labels' full resolution, void ignored: **mean IoU {metrics['mean_iou']:.4f}**, global accuracy "
        f"{metrics['global_acc']:.4f}, average class accuracy {metrics['avg_class_acc']:.4f} "
        f"(all-one-class baseline mean IoU {metrics.get('baseline_mean_iou', float('nan')):.4f})",
        "",
        "## Paper's Table 3 columns",
        "",
        _table(metrics),
        "",
    ]
    if references:
        lines += ["Reference mean IoU on the CamVid *test* split: " + ", ".join(
            f"{name} {value:.3f}" for name, value in references.items()) + ". This run is measured on "
            f"`{metrics.get('split', 'val')}`.", ""]
    if compared:
        lines += ["## Compared runs", "", _comparison_table({"this run": metrics, **compared}), "",
                  "Per-class IoU of every run is in the per-class IoU figure below.", ""]
    averaging = os.path.join(run_dir, AVERAGING_TABLE)
    if os.path.isfile(averaging):
        with open(averaging, encoding="utf-8") as handle:
            lines += ["## Averaged inference", "", f"From `{AVERAGING_TABLE}` "
                      "(`benchmarks/averaging_bench.py`): the same split through single passes, the flip "
                      "average and Monte Carlo dropout.", "", handle.read().strip(), ""]
    lines += ["## Learning curves", "", "![learning curves](learning_curves.png)", "",
              "## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", "",
              "## Per-class IoU", "", "![per-class IoU](class_iou.png)", ""]
    if strips:
        lines += ["## Predictions", "", "![image | truth | prediction](predictions.png)", ""]
    report_path = os.path.join(output_dir, "report.md")
    atomic_write_text(report_path, "\n".join(lines))
    return report_path
