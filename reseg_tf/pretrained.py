"""The pretrained models that travel with the package: one default model per dataset,
and a CamVid model built for phones.

They are package data of the `reseg_tf_pretrained` package, which the build maps onto the
repository's `saved_models/` folder (only each dataset's `model.keras`, `metrics.json` and
`run.json` go into a wheel; variants, fine-tunes and reports stay in the repository). So they
load by name after any install, editable or not, from any working directory:

>>> model = load_pretrained("camvid")            # doctest: +SKIP
>>> [entry["name"] for entry in list_pretrained()]  # doctest: +SKIP
['camvid', 'oxford_flowers17', 'weizmann_horse']
"""
import importlib.resources
import json
from pathlib import Path

DATA_PACKAGE = "reseg_tf_pretrained"
# name: (dataset it was trained on, a one-line description).
PRETRAINED = {
    "camvid": ("camvid", "CamVid street scenes, 11 classes; camvid_scratch trained from scratch at 264x352"),
    "weizmann_horse": ("weizmann_horse", "Weizmann Horse, horse vs background; horse_scratch from scratch"),
    "oxford_flowers17": ("oxford_flowers17", "Oxford Flowers 17, flower vs background; flowers_scratch from scratch"),
    "camvid_mobile_scratch": ("camvid", "CamVid street scenes for phones, 11 classes; camvid_mobile_scratch from "
                              "scratch at 264x352, a fraction of the CamVid model's TFLite latency"),
}
ALIASES = {"horse": "weizmann_horse", "flowers": "oxford_flowers17"}
MODEL_FILE, METRICS_FILE, RUN_FILE = "model.keras", "metrics.json", "run.json"
# Every shipped model's sizes and TFLite latencies, as `benchmarks/shipped_models_bench.py
# --output` wrote them (one run, one machine; the file says which).
COSTS_FILE = "shipped_models_costs.json"


def _root():
    try:
        return Path(str(importlib.resources.files(DATA_PACKAGE)))
    except ModuleNotFoundError:
        # Running from a source tree that was not installed: the repository's folder itself.
        return Path(__file__).resolve().parent.parent / "saved_models"


def resolve_name(name):
    """The canonical name of a pretrained model (`horse` -> `weizmann_horse`), or ValueError."""
    canonical = ALIASES.get(name, name)
    if canonical not in PRETRAINED:
        known = ", ".join(sorted(PRETRAINED) + sorted(ALIASES))
        raise ValueError(f"no pretrained model named {name!r}; available: {known}.")
    return canonical


def pretrained_path(name):
    """The `model.keras` path of a pretrained model; FileNotFoundError names what is missing."""
    canonical = resolve_name(name)
    path = _root() / canonical / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"the pretrained {canonical!r} model is not installed ({path} is missing): reinstall "
            "reseg_tf from a wheel or a git checkout that has saved_models/, or pass --model PATH.")
    return path


def model_file(value):
    """`(path, name)`: `value` itself when it exists (name None), else the `model.keras` of the
    pretrained model it names, else `value` unchanged (loading it then names what is missing)."""
    if value is None or Path(value).exists():
        return value, None
    try:
        name = resolve_name(value)
    except ValueError:
        return value, None
    return str(pretrained_path(name)), name


def load_pretrained(name="camvid"):
    """Loads a pretrained ReSeg model by name (`camvid`, `weizmann_horse` / `horse`,
    `oxford_flowers17` / `flowers`), or a shared one from the Hugging Face Hub
    (`hf://owner/name[@revision]`, see `reseg_tf.push`); it takes raw RGB 0..255 images and
    returns probabilities."""
    from reseg_tf.hub import is_hub_name
    from reseg_tf.model_io import load_reseg_model

    if is_hub_name(name):
        return load_reseg_model(name, flag="load_pretrained")
    return load_reseg_model(str(pretrained_path(name)))


def _read(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def list_pretrained():
    """One dict per pretrained model: `name`, `dataset`, `description`, `path` (None when not
    installed), `preset`, `epochs_run`, `val` (the val figures of its `metrics.json`:
    `mean_iou`, `global_acc`, `avg_class_acc`, and `foreground_iou` for binary tasks), `costs`
    (parameters, file sizes, TFLite operators and ms per image at 1 and 2 threads, from
    `shipped_models_costs.json`; empty when not measured)."""
    costs = _read(_root() / COSTS_FILE).get("models", {})
    entries = []
    for name, (dataset, description) in sorted(PRETRAINED.items()):
        folder = _root() / name
        metrics, run = _read(folder / METRICS_FILE), _read(folder / RUN_FILE)
        val = {key: metrics[key] for key in ("mean_iou", "global_acc", "avg_class_acc") if key in metrics}
        class_iou = metrics.get("class_iou", {})
        if len(class_iou) == 2:  # binary tasks: the foreground is the second class
            val["foreground_iou"] = list(class_iou.values())[1]
        entries.append(dict(
            name=name, dataset=dataset, description=description,
            path=str(folder / MODEL_FILE) if (folder / MODEL_FILE).is_file() else None,
            preset=run.get("settings", {}).get("preset"), epochs_run=run.get("epochs_run"),
            best_epoch=run.get("best_epoch"), val=val, costs=costs.get(name, {}),
        ))
    return entries
