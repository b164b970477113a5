"""Sharing models: `reseg push` model folders and cards, and `hf://` names through the real
huggingface_hub code path, offline, from a cache laid out as `snapshot_download` lays it out."""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import reseg_tf
from reseg_tf import cli, hub
from reseg_tf.metrics import summarize_confusion
from reseg_tf.model_io import load_reseg_model
from reseg_tf.sharing import write_model_folder
from reseg_tf.visualize import class_palette
from helpers import tiny_model
from pipelines_layouts import random_image, save, write_folder

SIZE = 24
WORKER = Path(__file__).with_name("hub_worker.py")
MAIN_COMMIT, V1_COMMIT = "a" * 40, "b" * 40


def _write_run(run_dir, model, class_names, **settings):
    """A finished run's files (what `reseg train` leaves) around `model`."""
    run_dir.mkdir(parents=True)
    model.save(run_dir / "model.keras")
    rng = np.random.default_rng(0)
    confusion = np.diag(rng.integers(50, 100, len(class_names))) + rng.integers(0, 9, (len(class_names),) * 2)
    metrics = summarize_confusion(confusion, list(class_names))
    metrics.update(dataset="folder", split="val", num_images=4, confusion_matrix=confusion.tolist())
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    record = {"state": "finished", "epochs": 3, "best_epoch": 2, "epochs_run": 3, "training_scale": 0.5,
              "settings": {"preset": "demo", "dataset": "folder", "data_dir": "../data/my_data",
                           "dataset_options": {"num_classes": len(class_names)}, "optimizer": "adam",
                           "learning_rate": 0.01, "image_size": [SIZE, SIZE], "augment": False, "seed": 0,
                           **settings}}
    (run_dir / "run.json").write_text(json.dumps(record))
    (run_dir / "history.csv").write_text("epoch,loss,mean_iou,val_loss,val_mean_iou\n1,1.5,0.2,1.6,0.25\n"
                                         "2,1.0,0.4,1.2,0.45\n3,0.8,0.5,1.1,0.43\n")
    (run_dir / "predictions").mkdir()
    save(random_image(rng, 20, 60), run_dir / "predictions" / "00_a.png")
    return metrics, record


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A tiny finished run, its pushed folder (dry run), and a Hub cache holding it (main) and a
    demo-architecture model (branch v1)."""
    root = tmp_path_factory.mktemp("hub")
    model = tiny_model((SIZE, SIZE, 3))
    metrics, record = _write_run(root / "run", model, ("a", "b", "c"), init_from="hf://someone/base@v1",
                                 class_balance=True)
    record["init_from_revision"] = V1_COMMIT
    (root / "run" / "run.json").write_text(json.dumps(record))
    result = reseg_tf.push(root / "run", "hf://someone/tiny-reseg", dry_run=True, output=root / "folder")
    demo = reseg_tf.build_model("demo", input_shape=(SIZE, SIZE, 3))
    _write_run(root / "demo_run", demo, demo.reseg_config.class_names)
    write_model_folder(root / "demo_run", root / "demo_folder", "hf://someone/tiny-reseg@v1")
    cache = root / "cache"
    _cache_snapshot(cache, "someone/tiny-reseg", root / "folder", MAIN_COMMIT, "main")
    _cache_snapshot(cache, "someone/tiny-reseg", root / "demo_folder", V1_COMMIT, "v1")
    images = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.save(root / "images.npy", images)
    return dict(root=root, model=model, demo=demo, metrics=metrics, record=record, folder=Path(result["folder"]),
                cache=cache, images=images)


def _cache_snapshot(cache, repo_id, folder, commit, ref):
    """`folder`'s files in huggingface_hub's cache layout: `models--owner--name/blobs/<hash>`,
    `snapshots/<commit>/<path>` linking to the blob, `refs/<ref>` holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)


def _run_worker(shared, *arguments, offline=True):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HF_")}
    env.update(HF_HOME=str(shared["root"] / "hf_home"), HF_HUB_CACHE=str(shared["cache"]),
               HF_HUB_OFFLINE="1" if offline else "0", PYTHONPATH=os.pathsep.join(sys.path))
    process = subprocess.run([sys.executable, str(WORKER), *map(str, arguments)], capture_output=True, text=True,
                             env=env, timeout=400, cwd=shared["root"])
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def _section(card, title):
    start = card.index(f"## {title}")
    end = card.find("\n## ", start + 1)
    return card[start:end if end > 0 else None]


def test_folder_holds_the_keras_layout_the_records_and_the_report(shared):
    folder, root = shared["folder"], shared["root"]
    for name in ("config.json", "metadata.json", "model.weights.h5", "README.md", "report/class_iou.png",
                 "report/learning_curves.png"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "metrics.json").read_text()) == shared["metrics"]
    assert json.loads((folder / "run.json").read_text()) == shared["record"]
    palette = class_palette(shared["model"].reseg_config)  # the colours `reseg predict --overlay` paints
    assert json.loads((folder / "class_names.json").read_text()) == [
        {"index": index, "name": name, "color": palette[index].tolist()} for index, name in enumerate("abc")]
    assert not (root / "run" / "report").exists()  # the report is written into the folder only
    assert not [name for name in os.listdir(root) if name.endswith(".tmp")]
    # The folder loads by path, in reseg (with the recorded training scale) and in Keras alone.
    import keras

    loaded = load_reseg_model(folder)
    expected = shared["model"].predict(shared["images"], verbose=0)
    np.testing.assert_array_equal(loaded.predict(shared["images"], verbose=0), expected)
    assert loaded.training_scale == 0.5
    np.testing.assert_array_equal(keras.saving.load_model(folder).predict(shared["images"], verbose=0), expected)
    with pytest.raises(FileExistsError, match="not an empty folder"):
        reseg_tf.push(root / "run", "hf://someone/tiny-reseg", dry_run=True, output=folder)
    with pytest.raises(IsADirectoryError, match="directory without a model"):
        load_reseg_model(root / "run")


def test_card_header_is_what_the_hub_reads_and_every_figure_is_from_metrics_json(shared):
    import huggingface_hub  # the Hub's own card parser (writing the card needs no huggingface_hub)

    card = (shared["folder"] / "README.md").read_text()
    metrics = shared["metrics"]
    data = huggingface_hub.ModelCard(card).data
    assert (data.library_name, data.pipeline_tag, data.license) == ("keras", "image-segmentation", "unknown")
    results = {result.metric_name: result.metric_value for result in data.eval_results}
    expected = {"Mean IoU (val, %)": metrics["mean_iou"], "Global accuracy (val, %)": metrics["global_acc"],
                "Average class accuracy (val, %)": metrics["avg_class_acc"],
                **{f"IoU {name} (val, %)": value for name, value in metrics["class_iou"].items()}}
    assert results == {name: round(100 * value, 2) for name, value in expected.items()}
    assert {result.dataset_split for result in data.eval_results} == {"val"}

    shown = {f"{100 * value:.2f}" for value in
             [metrics["mean_iou"], metrics["global_acc"], metrics["avg_class_acc"],
              *metrics["class_iou"].values(), *metrics["class_acc"].values()]}
    results_section = _section(card, "Results")
    figures = set(re.findall(r"\d+\.\d+", results_section.split("| metric |", 1)[1]))
    assert figures == shown  # every figure in the tables is one of metrics.json's, and all are there
    assert "(4 images)" in results_section and "epoch 2 of 3 run" in results_section
    assert "selected on this same split" in results_section
    for name in ("a", "b", "c"):
        row = f"| {name} | {100 * metrics['class_iou'][name]:.2f} | {100 * metrics['class_acc'][name]:.2f} |"
        assert row in results_section
    assert "![per-class IoU](report/class_iou.png)" in card
    assert "fine-tuned from `hf://someone/base@v1` (revision `" + V1_COMMIT + "`)" in card
    assert 'reseg_tf.load_pretrained("hf://someone/tiny-reseg")' in card
    assert 'keras.saving.load_model("hf://someone/tiny-reseg")' in card


def test_card_command_rebuilds_the_recorded_training_settings(shared):
    card = (shared["folder"] / "README.md").read_text()
    command = re.search(r"```bash\n(reseg train [^\n]*)\n```", card).group(1)
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    settings = shared["record"]["settings"]
    assert (args.preset, args.dataset, args.data_dir, args.num_classes) == ("demo", "folder", "my_data", 3)
    assert (args.epochs, args.optimizer, args.learning_rate) == (3, "adam", 0.01)
    assert (args.class_balance, args.augment, args.init_from) == (True, False, settings["init_from"])
    assert list(args.image_size) == settings["image_size"] and args.seed is None


def test_hub_names(tmp_path):
    assert hub.parse_hub_name("hf://someone/reseg-horse") == ("someone/reseg-horse", None)
    assert hub.parse_hub_name("hf://org_1/m.v2@refs/pr/3") == ("org_1/m.v2", "refs/pr/3")
    for bad in ("hf://someone", "hf://a/b/c", "hf://a/b@", "hf://a/b..c", "hf://-a/b", "someone/reseg"):
        with pytest.raises(ValueError, match="expected hf://owner/name"):
            hub.parse_hub_name(bad)
    assert not hub.is_hub_name(tmp_path) and hub.is_hub_name("hf://a/b")


def test_without_the_extra_hub_names_say_how_to_install_it_and_dry_runs_still_work(shared, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # `import huggingface_hub` fails
    for call in (lambda: load_reseg_model("hf://someone/tiny-reseg"),
                 lambda: reseg_tf.load_pretrained("hf://someone/tiny-reseg"),
                 lambda: reseg_tf.push(shared["root"] / "run", "hf://someone/x")):
        with pytest.raises(ValueError, match=re.escape('pip install "reseg_tf[hub]"')):
            call()
    output = shared["root"] / "no_extra"
    assert cli.main(["push", str(shared["root"] / "run"), "hf://someone/x", "--dry-run", "--output", str(output)]) == 0
    assert (output / "README.md").is_file() and (output / "model.weights.h5").is_file()


def test_cli_push_flags(shared, capsys):
    run = str(shared["root"] / "run")
    assert cli.main(["push", run, "hf://someone/x", "--dry-run"]) == 2
    assert "give --output DIR" in capsys.readouterr().err
    assert cli.main(["push", run, "hf://someone/x@dev", "--revision", "dev", "--dry-run", "--output", "o"]) == 2
    assert "already names a revision" in capsys.readouterr().err
    assert cli.main(["push", run, "someone/x", "--dry-run", "--output", "o"]) == 2
    assert "expected hf://owner/name" in capsys.readouterr().err
    output = shared["root"] / "licensed"
    assert cli.main(["push", run, "hf://someone/x", "--revision", "dev", "--license", "apache-2.0",
                     "--dry-run", "--output", str(output)]) == 0
    card = (output / "README.md").read_text()
    assert 'license: "apache-2.0"' in card and "hf://someone/x@dev --output" in card
    parser = cli.build_parser()
    push_parser = next(action for action in parser._subparsers._group_actions).choices["push"]
    assert all(action.help for action in push_parser._actions)


@pytest.fixture(scope="module")
def offline(shared, tmp_path_factory):
    """What a fresh process with HF_HUB_OFFLINE=1 saw loading, predicting and fine-tuning from the cache."""
    out = tmp_path_factory.mktemp("offline")
    image = save(random_image(np.random.default_rng(2), 30, 40), out / "photo.png")
    data = write_folder(out / "data", count=6, size=(SIZE, SIZE), num_classes=3)
    seen = _run_worker(shared, "hf://someone/tiny-reseg", "hf://someone/tiny-reseg@v1", "hf://someone/not-cached",
                       shared["root"] / "images.npy", image, data, out, shared["root"] / "run")
    return seen, out


@pytest.mark.slow
def test_hf_names_load_offline_from_the_cache_through_huggingface_hub(shared, offline):
    seen, out = offline
    expected = shared["model"].predict(shared["images"], verbose=0)
    np.testing.assert_array_equal(seen["probabilities"], expected)
    np.testing.assert_array_equal(seen["keras_probabilities"], expected)
    np.testing.assert_array_equal(seen["pinned_probabilities"], shared["demo"].predict(shared["images"], verbose=0))
    assert (seen["training_scale"], seen["revision"], seen["pinned_revision"]) == (0.5, MAIN_COMMIT, V1_COMMIT)
    assert seen["predict_exit"] == 0 and (out / "predicted" / "photo.png").is_file()


@pytest.mark.slow
def test_offline_errors_name_the_model_and_what_to_do(offline):
    seen, out = offline
    kind, message = seen["missing"]
    assert kind == "FileNotFoundError" and "hf://someone/not-cached" in message and "HF_HUB_OFFLINE=1" in message
    kind, message = seen["push_without_token"]
    assert kind == "ValueError" and "token" in message and "hf auth login" in message
    assert not (out / "kept").exists()  # refused before anything was written
    kind, message = seen["push_offline"]  # the upload's own error, through huggingface_hub
    assert kind == "ValueError" and "reseg push hf://someone/new: the upload failed" in message
    assert (out / "kept_offline" / "README.md").is_file()  # the folder asked for is kept


@pytest.mark.slow
def test_fine_tune_from_a_hub_name_records_the_name_and_revision(shared, offline):
    seen, out = offline
    assert seen["train_exit"] == 0
    record_text = (out / "tuned" / "run.json").read_text()
    record = json.loads(record_text)
    assert record["settings"]["init_from"] == "hf://someone/tiny-reseg@v1"
    assert record["init_from_revision"] == V1_COMMIT
    assert str(shared["cache"]) not in record_text and "snapshots" not in record_text


def test_card_shows_the_recorded_command_and_the_fine_tunes_origin(shared, tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir, shared["model"], ("a", "b", "c"))
    record = json.loads((run_dir / "run.json").read_text())
    record["command"] = "reseg train --preset demo --loss cross_entropy+lovasz"
    record["started_from"] = {"model": "base/model.keras", "command": "reseg train --preset demo --epochs 9"}
    (run_dir / "run.json").write_text(json.dumps(record))
    write_model_folder(run_dir, tmp_path / "folder", "hf://someone/tiny")
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "```bash\nreseg train --preset demo --loss cross_entropy+lovasz\n```" in card
    assert "```bash\nreseg train --preset demo --epochs 9\n```" in card
