"""Model folders: a trained run as one self-describing folder, kept locally or pushed to the Hub.

`reseg push RUN_DIR hf://owner/name` (`push`) assembles, from a finished `reseg train` run:

    config.json, metadata.json, model.weights.h5   the model, as Keras writes a model folder
                                                   (`model.save(folder, zipped=False)`, what
                                                   `model.save("hf://...")` uploads), so
                                                   `keras.saving.load_model` reads it by path
                                                   or as `hf://owner/name`
    run.json, metrics.json                         the run's record and its val evaluation
    class_names.json                               class names and their overlay colours
    report/                                        the run's report (`reseg report`) figures
    README.md                                      the model card (`reseg_tf.model_card`)

and uploads it (`reseg_tf.hub`, the one module that touches the network). The same folder kept
locally loads by path wherever a model is taken (`--model FOLDER`), with its training scale
(from its `run.json`), so pushing adds nothing that a local copy lacks.
"""
import os
import shutil
import uuid

from reseg_tf.run_files import atomic_write_json, atomic_write_text, read_json

MODEL_FILES = ("config.json", "model.weights.h5")
REPORT_FILES = ("report.md", "learning_curves.png", "confusion_matrix.png", "class_iou.png", "predictions.png")
FIGURE_TITLES = {"class_iou.png": "per-class IoU", "confusion_matrix.png": "confusion matrix",
                 "learning_curves.png": "learning curves", "predictions.png": "image | truth | prediction"}
DEFAULT_LICENSE = "unknown"


def is_model_folder(path):
    """Whether `path` is a folder holding a Keras model as `config.json` + `model.weights.h5`."""
    path = os.fspath(path)
    return os.path.isdir(path) and all(os.path.isfile(os.path.join(path, name)) for name in MODEL_FILES)


def _run_files(run_dir):
    """`(model.keras path, run record, metrics)` of a finished run; errors name what is missing."""
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"RUN_DIR {run_dir}: no such directory (give the --output folder of a "
                                "finished `reseg train` run).")
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(model_path):
        raise FileNotFoundError(f"RUN_DIR {run_dir}: no model.keras (not a `reseg train` output folder).")
    metrics = read_json(os.path.join(run_dir, "metrics.json"))
    if not isinstance(metrics, dict) or not isinstance(metrics.get("class_iou"), dict):
        raise ValueError(f"RUN_DIR {run_dir}: metrics.json is missing or has no class_iou; finish the run "
                         "(run the same `reseg train` command) or write it with `reseg evaluate --json`.")
    run = read_json(os.path.join(run_dir, "run.json"))
    if not isinstance(run, dict):
        raise ValueError(f"RUN_DIR {run_dir}: run.json is missing or unreadable; the card is written from it.")
    return model_path, run, metrics


def _copy_report(run_dir, report_dir):
    """The run's report files copied into `report_dir` (written there from the run's records when
    the run has no report yet); returns the figure files copied."""
    source = os.path.join(run_dir, "report")
    if not os.path.isfile(os.path.join(source, "class_iou.png")):
        if not os.path.isfile(os.path.join(run_dir, "history.csv")):
            return []
        from reseg_tf.report import write_report

        write_report(run_dir, report_dir)
        source = report_dir
    os.makedirs(report_dir, exist_ok=True)
    copied = []
    for name in REPORT_FILES:
        if os.path.isfile(os.path.join(source, name)):
            if source != report_dir:
                shutil.copyfile(os.path.join(source, name), os.path.join(report_dir, name))
            copied.append(name)
    return [name for name in copied if name.endswith(".png")]


def write_model_folder(run_dir, output, hub_name=None, license_id=DEFAULT_LICENSE):
    """Assembles the model folder of the finished run `run_dir` at `output` (a new or empty
    folder; written in a scratch folder beside it and renamed into place). Returns `output`."""
    from reseg_tf.hub import is_hub_name, parse_hub_name
    from reseg_tf.model_card import model_card
    from reseg_tf.model_io import load_reseg_model
    from reseg_tf.models import config_from_model
    from reseg_tf.visualize import class_palette

    output = os.fspath(output)
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise FileExistsError(f"--output {output} exists and is not an empty folder; give a new folder.")
    repo_id = parse_hub_name(hub_name, "push to")[0] if is_hub_name(hub_name) else None
    model_path, run, metrics = _run_files(run_dir)
    model = load_reseg_model(model_path, flag="RUN_DIR")
    config = config_from_model(model)
    if list(metrics["class_iou"]) != list(config.class_names):
        raise ValueError(f"RUN_DIR {run_dir}: metrics.json's classes {list(metrics['class_iou'])} are not the "
                         f"model's {list(config.class_names)}; re-evaluate it with `reseg evaluate --json`.")
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    scratch = os.path.join(parent, f".{os.path.basename(os.path.abspath(output))}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        model.save(scratch, zipped=False)
        atomic_write_json(os.path.join(scratch, "run.json"), run)
        atomic_write_json(os.path.join(scratch, "metrics.json"), metrics)
        palette = class_palette(config)
        atomic_write_json(os.path.join(scratch, "class_names.json"), [
            {"index": index, "name": name, "color": [int(c) for c in palette[index]]}
            for index, name in enumerate(config.class_names)])
        figures = _copy_report(os.fspath(run_dir), os.path.join(scratch, "report"))
        name = repo_id.split("/")[1] if repo_id else os.path.basename(os.path.abspath(output))
        card = model_card(model, run, metrics, name, hub_name=hub_name, license_id=license_id,
                          figures=[(FIGURE_TITLES[f], f"report/{f}") for f in figures if f in FIGURE_TITLES])
        atomic_write_text(os.path.join(scratch, "README.md"), card)
        if os.path.isdir(output):
            os.rmdir(output)  # empty, checked above
        os.replace(scratch, output)
    finally:
        if os.path.isdir(scratch):
            shutil.rmtree(scratch)
    return output


def push(run_dir, name, *, private=False, output=None, dry_run=False, token=None, license_id=DEFAULT_LICENSE):
    """Shares the finished run in `run_dir` as the Hub model `name` (`hf://owner/name[@revision]`).

    Args:
        run_dir: the output folder of a finished `reseg train` run (model.keras, run.json,
            metrics.json, and its report if any).
        name: `hf://owner/name`, or `hf://owner/name@branch` to push to a branch (created if missing).
        private: create the repository private (an existing repository keeps its visibility).
        output: keep the assembled folder here (a new or empty folder); default: a scratch folder.
        dry_run: write the folder to `output` and upload nothing.
        token: a Hub token with write access; default: HF_TOKEN or the one `hf auth login` stored.
        license_id: the licence the card declares (a Hub licence identifier).

    Returns:
        `{"folder": the assembled folder (None once a scratch folder is removed), "url": the
        commit's URL (None for a dry run)}`.
    """
    from reseg_tf import hub

    hub.parse_hub_name(name, "push to")
    if dry_run and output is None:
        raise ValueError("--dry-run writes the model folder without uploading: give --output DIR.")
    if not dry_run:
        hub.check_token(token)  # before anything is written
    if output is not None:
        folder = write_model_folder(run_dir, output, hub_name=name, license_id=license_id)
        url = None if dry_run else hub.upload(folder, name, private=private, token=token)
        return {"folder": folder, "url": url}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="reseg_push_") as scratch:
        folder = write_model_folder(run_dir, os.path.join(scratch, "model"), hub_name=name, license_id=license_id)
        return {"folder": None, "url": hub.upload(folder, name, private=private, token=token)}
