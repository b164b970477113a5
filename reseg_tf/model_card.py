"""The model card (`README.md`) of a shared model folder, written from its run's own records.

Every figure in the card comes from the run's `metrics.json` (`reseg evaluate` on val) and
`run.json` (`reseg train`'s settings); nothing is measured here. The card opens with the
metadata header the Hugging Face Hub reads (library, task, datasets, licence, `model-index`
results), then says what the model is, how it was trained and selected, how well it does, how
to load it and where it stops working.
"""
import json
import shlex

DATASET_TITLES = {"camvid": "CamVid", "weizmann_horse": "Weizmann Horse",
                  "oxford_flowers17": "Oxford Flowers 17", "folder": "a folder of images and masks"}
# Flags of `reseg train` whose recorded value cannot be told from the preset's recipe.
_OTHER_FLAGS = (("seed", 0), ("steps_per_epoch", None), ("mixed_precision", False), ("strategy", "default"),
                ("cache_features", False), ("init_from", None), ("freeze_front_end", False))


def percent(value):
    """A fraction as the card shows it: percent with two decimals."""
    return f"{100 * value:.2f}"


def _flag(key, value):
    name = "--" + {"palette_file": "palette"}.get(key, key).replace("_", "-")
    if value is True:
        return [name]
    if value is False:
        return ["--no-crop"] if key == "crop_size" else [f"--no-{name[2:]}"]
    if isinstance(value, (list, tuple)):
        return [name, *map(str, value)]
    return [name, str(value)]


def train_command(run):
    """The `reseg train` command line of a recorded run: the preset, the data, and each setting
    that differs from what the preset's recipe would use (so it trains the same run)."""
    from reseg_tf.models import PRESETS, get_preset, get_recipe
    from reseg_tf.training.config import RECIPE_DEFAULTS

    settings = run.get("settings", {})
    preset = settings.get("preset")
    recipe = {**RECIPE_DEFAULTS, **(get_recipe(preset) if preset in PRESETS else {})}
    words = ["reseg", "train", "--preset", str(preset), "--dataset", str(settings.get("dataset"))]
    if settings.get("data_dir"):
        words += ["--data-dir", settings["data_dir"].replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]]
    for key, value in (settings.get("dataset_options") or {}).items():
        words += _flag(key, value)
    if run.get("epochs") is not None and run["epochs"] != recipe["epochs"]:
        words += _flag("epochs", run["epochs"])
    for key in recipe:
        value = settings.get(key)
        if key != "epochs" and value is not None and _plain(value) != _plain(recipe[key]):
            words += _flag(key, value)
    for key, default in _OTHER_FLAGS:
        if settings.get(key) not in (None, default):
            words += _flag(key, settings[key])
    weights = settings.get("front_end_weights")
    if weights and preset in PRESETS and weights != get_preset(preset)[0].front_end_spec.default_weights:
        words += _flag("front_end_weights", weights)
    return shlex.join(words)


def _plain(value):
    return json.loads(json.dumps(value))  # tuples as lists, as run.json holds them


def _yaml_string(text):
    return json.dumps(str(text))  # a JSON string is a YAML string


def metadata_header(metrics, run, model_name, license_id):
    """The YAML front matter the Hub reads: library, task, tags, licence, datasets, results."""
    settings = run.get("settings", {})
    dataset = metrics.get("dataset") or settings.get("dataset") or "unknown"
    split = metrics.get("split", "val")
    lines = ["---", "library_name: keras", "pipeline_tag: image-segmentation",
             f"license: {_yaml_string(license_id)}", "tags:", "- reseg", "- reseg_tf", "- semantic-segmentation",
             "- tensorflow"]
    if dataset != "folder":
        lines += ["datasets:", f"- {_yaml_string(dataset)}"]
    results = [("mean_iou", "Mean IoU", metrics["mean_iou"]), ("accuracy", "Global accuracy", metrics["global_acc"]),
               ("mean_accuracy", "Average class accuracy", metrics["avg_class_acc"])]
    results += [("iou", f"IoU {name}", value) for name, value in metrics["class_iou"].items()]
    lines += ["model-index:", f"- name: {_yaml_string(model_name)}", "  results:", "  - task:",
              "      type: image-segmentation", "      name: Semantic segmentation", "    dataset:",
              f"      name: {_yaml_string(DATASET_TITLES.get(dataset, dataset))}",
              f"      type: {_yaml_string(dataset)}", f"      split: {_yaml_string(split)}", "    metrics:"]
    for metric_type, name, value in results:
        lines += [f"    - type: {metric_type}", f"      name: {_yaml_string(f'{name} ({split}, %)')}",
                  f"      value: {percent(value)}"]
    return lines + ["---"]


def _results_section(metrics, run):
    split = metrics.get("split", "val")
    selected = (f"The model kept is the epoch with the best {split} mean IoU during training (epoch "
                f"{run.get('best_epoch', '?')} of {run.get('epochs_run', '?')} run): it was selected on this "
                "same split, so these figures are optimistic; expect lower on held-out data."
                if split == "val" else f"Measured on the `{split}` split.")
    lines = ["## Results", "",
             f"On the `{split}` split ({metrics.get('num_images', '?')} images) at the labels' full "
             "resolution, void pixels ignored, through `reseg evaluate` (`metrics.json`). Mean IoU is the "
             "per-class IoU averaged over the classes (the paper's \"Avg IoU\"). " + selected, "",
             "| metric | value (%) |", "|---|---|",
             f"| mean IoU | {percent(metrics['mean_iou'])} |",
             f"| global accuracy | {percent(metrics['global_acc'])} |",
             f"| average class accuracy | {percent(metrics['avg_class_acc'])} |", "",
             "| class | IoU (%) | accuracy (%) |", "|---|---|---|"]
    lines += [f"| {name} | {percent(metrics['class_iou'][name])} | {percent(metrics['class_acc'][name])} |"
              for name in metrics["class_iou"]]
    return lines + [""]


def model_card(model, run, metrics, model_name, hub_name=None, license_id="unknown", figures=()):
    """The text of `README.md` for a model folder.

    Args:
        model: the ReSeg Keras model (its configuration, input size and parameter count).
        run, metrics: the run's `run.json` and `metrics.json` contents.
        model_name: the model's name on the Hub (`model-index`).
        hub_name: `hf://owner/name` it is pushed to (None: loading examples use a local folder).
        license_id: the Hub licence identifier.
        figures: `(title, relative path)` of the report figures in the folder.
    """
    from reseg_tf.front_ends import describe_front_end
    from reseg_tf.models import PRESETS, config_from_model

    config = config_from_model(model)
    settings = run.get("settings", {})
    preset = settings.get("preset") or metrics.get("preset") or "?"
    dataset = metrics.get("dataset") or settings.get("dataset") or "?"
    height, width = model.input_shape[1:3]
    size = f"{height}x{width}" if height and width else "any size"
    where = hub_name or "path/to/this/folder"
    keras_where = "hf://" + hub_name[len("hf://"):].split("@")[0] if hub_name else where
    init_from = settings.get("init_from")
    lineage = ("It started from random weights" if not init_from else
               f"It was fine-tuned from `{init_from}`"
               + (f" (revision `{run['init_from_revision']}`)" if run.get("init_from_revision") else "")
               + ": every layer whose name and weight shapes matched was loaded, the rest started fresh")
    lines = metadata_header(metrics, run, model_name, license_id) + [
        f"# {model_name}: ReSeg semantic segmentation ({DATASET_TITLES.get(dataset, dataset)})", "",
        "**ReSeg** (Visin et al., *ReSeg: A Recurrent Neural Network-based Model for Semantic "
        "Segmentation*, CVPR-W 2016, arXiv:1511.07053) labels every pixel of an image. A convolutional "
        "front end feeds **ReNet layers**: GRUs sweep every column down and up, then every row right "
        "and left, so each feature sees the whole image; transposed convolutions upsample back to the "
        "input size and a softmax gives per-pixel class probabilities. This model was trained with "
        "reseg_tf (TensorFlow / Keras 3).", "",
        "## Model", "",
        f"- preset `{preset}`: {PRESETS.get(preset, {}).get('description', 'a custom configuration')}",
        f"- front end: {describe_front_end(config.front_end, config.front_end_settings, config.freeze_front_end)}",
        f"- {config.num_classes} classes: {', '.join(f'`{name}`' for name in config.class_names)} "
        "(names and overlay colours in `class_names.json`)",
        f"- input: RGB images, raw 0..255, float32 `(batch, H, W, 3)`; the model runs at {size} "
        "(`reseg` resizes each image as training did and the probabilities back to its size)",
        f"- output: float32 class probabilities `(batch, H, W, {config.num_classes})`; "
        f"{model.count_params():,} parameters", "",
        "## Training", "",
        f"- data: the `train` split of {DATASET_TITLES.get(dataset, dataset)} (`--dataset {dataset}`), "
        f"validated on `{metrics.get('split', 'val')}`",
        f"- recipe (`run.json`): " + ", ".join(
            f"{key} {_shown(settings[key])}" for key in ("optimizer", "learning_rate", "lr_schedule", "weight_decay",
                                                          "batch_size", "image_size", "crop_size", "augment",
                                                          "augment_mode", "class_balance", "ema", "loss")
            if key in settings and settings[key] is not None),
        f"- {run.get('epochs_run', '?')} epochs run of {run.get('epochs', '?')}, best epoch "
        f"{run.get('best_epoch', '?')}. {lineage}.", "",
        *(["The command that trained it (as recorded in `run.json`):", "", "```bash", run["command"], "```", ""]
          if run.get("command") else
          ["The command that trained it (rebuilt from `run.json`; `--data-dir` is the dataset's folder):", "",
           "```bash", train_command(run), "```", ""]),
        *(["The command of the run it was fine-tuned from:", "", "```bash",
           run["started_from"]["command"], "```", ""] if run.get("started_from", {}).get("command") else [])]
    lines += _results_section(metrics, run)
    lines += [f"![{title}]({path})" for title, path in figures] + ([""] if figures else [])
    lines += [
        "## How to use", "",
        "With reseg_tf (`pip install \"reseg_tf[hub]\"`): images of any size in, class-index PNGs out.", "",
        "```bash", f"reseg predict photo.jpg --model {where} --output out/ --overlay",
        f"reseg evaluate --model {where} --dataset {dataset} --data-dir DATA --split val",
        f"reseg train --init-from {where} ...   # fine-tune on your data", "```", "",
        "```python", "import reseg_tf", f"model = reseg_tf.load_pretrained({json.dumps(where)})",
        "reseg_tf.predict(model, [\"photo.jpg\"], \"out/\", overlay=True)", "```", "",
        "With Keras alone (`import reseg_tf` registers the ReSeg layers; images already at the model's "
        "size):", "",
        "```python", "import keras, reseg_tf",
        f"model = keras.saving.load_model({json.dumps(keras_where)})"
        + ("   # Keras loads the main branch" if hub_name and "@" in hub_name else ""),
        "probabilities = model.predict(images)   # (B, H, W, 3) RGB 0..255 -> (B, H, W, classes)", "```", "",
        "## Limits", "",
        f"- Trained on {DATASET_TITLES.get(dataset, dataset)} only: other kinds of images, viewpoints or "
        "classes than its training images are out of its domain, and its figures do not carry over.",
        "- The figures above are on the split the model was selected on (see Results).",
        "- `keras.saving.load_model` needs `import reseg_tf` first and does not resize: feed images at "
        "the model's size, or use `reseg` / `reseg_tf.predict`, which resize as training did.", "",
        "## Files", "",
        "`config.json`, `metadata.json`, `model.weights.h5`: the Keras model (the layout "
        "`keras.saving.load_model` reads); `run.json`: the training settings; `metrics.json`: the "
        "evaluation above; `class_names.json`: classes and colours; `report/`: the training report.", ""]
    return "\n".join(lines)


def _shown(value):
    if isinstance(value, (list, tuple)):
        return "x".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)
