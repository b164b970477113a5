"""`reseg train / evaluate / predict` end to end on a tiny synthetic CamVid-layout dataset.

One 1-epoch CLI training run (module fixture) is shared by the artifact, evaluate and predict
tests; the resume test interrupts a second run after its first backup.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

from reseg_tf import cli, training
from reseg_tf.evaluation import load_reseg_model
from reseg_tf.run_files import read_json

SIZE = 32
VOID = 11


def _write_camvid(root, counts=(("train", 4), ("val", 2)), seed=0):
    """SegNet layout, 32x32: a left half of class 3 (Road), a right half of 0 (Sky), a void
    square, images colored by class so the task is learnable."""
    rng = np.random.default_rng(seed)
    for split, count in counts:
        os.makedirs(root / split), os.makedirs(root / f"{split}annot")
        lines = []
        for index in range(count):
            labels = np.zeros((SIZE, SIZE), np.uint8)
            labels[:, : SIZE // 2 + index] = 3
            labels[4:8, 4:8] = VOID
            image = np.where(labels[..., None] == 3, [128, 64, 128], [128, 128, 128]).astype(np.uint8)
            image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
            name = f"{split}_{index}.png"
            Image.fromarray(image).save(root / split / name)
            Image.fromarray(labels).save(root / f"{split}annot" / name)
            lines.append(f"{split}/{name} {split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def _train_args(data_dir, output, *extra):
    return ["train", "--data-dir", str(data_dir), "--output", str(output), "--epochs", "1",
            "--image-size", str(SIZE), str(SIZE), "--batch-size", "2", "--no-augment", *extra]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write_camvid(tmp_path_factory.mktemp("camvid"))


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "tiny"
    assert cli.main(_train_args(data_dir, output, "--optimizer", "adam")) == 0
    return output


def test_class_balance_gives_the_loss_each_pixels_class_weight(data_dir):
    def batches(**settings):
        config = training.TrainConfig(data_dir=str(data_dir), image_size=(SIZE, SIZE), augment=False, **settings)
        train_data, _ = training.make_datasets(config, training.load_source(config), (SIZE, SIZE), 2)
        return config, [[np.asarray(part) for part in batch] for batch in train_data]

    _, plain = batches()
    assert {len(batch) for batch in plain} == {2}  # (images, masks): every non-void pixel counts the same
    config, balanced = batches(class_balance=True)
    weights = training.class_weights(config, training.load_source(config))
    assert np.ptp(weights[[0, 3]]) > 0.1
    for _, masks, sample_weight in balanced:
        expected = np.where(masks == VOID, 0.0, weights[np.minimum(masks, VOID - 1)])
        np.testing.assert_allclose(sample_weight, expected, rtol=1e-6)


def test_weight_decay_adds_l2_of_every_trainable_kernel_to_the_loss(data_dir):
    from reseg_tf.models import build_model

    config = training.TrainConfig(data_dir=str(data_dir), image_size=(SIZE, SIZE), weight_decay=0.01)
    model_config, size = training.model_config_for(config, training.load_source(config))
    model = build_model(model_config, input_shape=(*size, 3))
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) >= 4  # ReNet input and recurrent weights, transposed convs, classifier
    expected = 0.01 * sum(float(np.sum(np.square(np.asarray(w)))) for w in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-4)
    # The loss training minimizes: with a pixel loss of 0, what remains is the L2 term.
    model.compile(optimizer="sgd", loss=lambda y_true, y_pred: keras.ops.sum(y_pred) * 0.0)
    images = np.zeros((1, *size, 3), np.float32)
    assert model.evaluate(images, np.zeros((1, *size), np.int32), verbose=0) == pytest.approx(expected, rel=1e-4)
    no_decay = training.TrainConfig(data_dir=str(data_dir), image_size=(SIZE, SIZE), weight_decay=0.0)
    assert not build_model(training.model_config_for(no_decay, training.load_source(no_decay))[0],
                           input_shape=(*size, 3)).losses


def _scores_by_hand(model_path, root, split):
    """Global acc, per-class acc and IoU (void ignored, 11 classes, 0 without ground truth) and
    the all-one-class baseline of the model on a split, counted with NumPy from its argmax."""
    from reseg_tf.inference import Predictor

    predictor = Predictor(load_reseg_model(model_path))
    truth, predicted = [], []
    for line in (root / f"{split}.txt").read_text().split():
        if line.startswith(f"{split}annot/"):
            truth.append(np.asarray(Image.open(root / line)).ravel())
        else:
            image = np.asarray(Image.open(root / line))[None]
            predicted.append(predictor.probabilities(image).numpy().argmax(-1).ravel())
    truth, predicted = np.concatenate(truth).astype(int), np.concatenate(predicted)
    valid = truth != VOID
    truth, predicted = truth[valid], predicted[valid]
    classes = np.arange(VOID)
    hits = np.array([np.sum((truth == c) & (predicted == c)) for c in classes])
    counts = np.array([np.sum(truth == c) for c in classes])
    unions = np.array([np.sum((truth == c) | (predicted == c)) for c in classes])
    class_acc = np.where(counts > 0, hits / np.maximum(counts, 1), 0.0)
    class_iou = np.where(counts > 0, hits / np.maximum(unions, 1), 0.0)
    return {"global_acc": np.mean(truth == predicted), "class_acc": class_acc, "class_iou": class_iou,
            "avg_class_acc": class_acc.mean(), "mean_iou": class_iou.mean(),
            "baseline_mean_iou": counts.max() / counts.sum() / VOID}


def _assert_scores_are(metrics, expected):
    for key in ("global_acc", "avg_class_acc", "mean_iou", "baseline_mean_iou"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-6), key
    for key in ("class_acc", "class_iou"):
        assert list(metrics[key].values()) == pytest.approx(list(expected[key]), abs=1e-6), key


def test_train_writes_every_artifact(trained_run, data_dir):
    for name in ("model.keras", "metrics.json", "history.csv", "run.json"):
        assert (trained_run / name).is_file(), name
    assert not (trained_run / "backup").exists()
    assert not (trained_run / ".reseg.lock").exists()
    assert any((trained_run / "tensorboard").rglob("events.out.tfevents.*"))
    strips = sorted((trained_run / "predictions").glob("*.png"))
    assert len(strips) == 2  # the val split has 2 images
    assert Image.open(strips[0]).size == (3 * SIZE + 8, SIZE)  # image | truth | prediction

    metrics = json.loads((trained_run / "metrics.json").read_text())
    _assert_scores_are(metrics, _scores_by_hand(trained_run / "model.keras", data_dir, "val"))
    assert len(metrics["class_acc"]) == len(metrics["class_iou"]) == 11
    # Classes 0 and 3 only: the other 9 have no ground truth and count as 0.
    assert len(metrics["classes_without_ground_truth"]) == 9
    assert metrics["num_pixels"] == 2 * (SIZE * SIZE - 16)

    with open(trained_run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1"]
    # Validation during training scored the same model on the same 32x32 images.
    assert float(rows[0]["val_mean_iou"]) == pytest.approx(metrics["mean_iou"], abs=1e-4)
    assert float(rows[0]["val_global_acc"]) == pytest.approx(metrics["global_acc"], abs=1e-4)
    assert json.loads((trained_run / "run.json").read_text())["state"] == "finished"
    model = load_reseg_model(trained_run / "model.keras")
    assert model.input_shape == (None, SIZE, SIZE, 3)


def test_finished_run_with_other_settings_is_refused_naming_the_flags(trained_run, data_dir, capsys):
    before = (trained_run / "model.keras").stat().st_mtime_ns
    assert cli.main(_train_args(data_dir, trained_run)) == 2  # adadelta, the run used adam
    error = capsys.readouterr().err
    assert "finished run with other settings" in error and "optimizer" in error
    assert "--overwrite" in error and "--output" in error
    assert (trained_run / "model.keras").stat().st_mtime_ns == before


def test_finished_run_asked_again_reports_its_metrics_and_trains_nothing(trained_run, data_dir, capsys):
    files = sorted(p for p in trained_run.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert cli.main(_train_args(data_dir, trained_run, "--optimizer", "adam")) == 0
    out = capsys.readouterr().out
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert "already holds this run" in out
    assert f"val mean IoU {metrics['mean_iou']:.4f}" in out and "Epoch 1/" not in out
    assert sorted(p for p in trained_run.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before
    result = training.train(preset="demo", dataset="camvid", data_dir=str(data_dir), output=str(trained_run),
                            epochs=1, image_size=(SIZE, SIZE), batch_size=2, augment=False, optimizer="adam")
    assert result["metrics"] == metrics and result["best_epoch"] == metrics["best_epoch"]


def test_evaluate_prints_table_and_writes_json(trained_run, data_dir, tmp_path, capsys):
    json_path = tmp_path / "eval.json"
    code = cli.main(["evaluate", "--model", str(trained_run / "model.keras"), "--dataset", "camvid",
                     "--data-dir", str(data_dir), "--split", "val", "--json", str(json_path)])
    assert code == 0
    table = capsys.readouterr().out
    assert "Global acc" in table and "Mean IoU" in table and "Road" in table
    result = json.loads(json_path.read_text())
    trained = json.loads((trained_run / "metrics.json").read_text())
    # Same model, same split, same resolution: the numbers training reported.
    assert result["mean_iou"] == pytest.approx(trained["mean_iou"])
    assert result["class_iou"] == pytest.approx(trained["class_iou"])


def test_evaluate_resizes_probabilities_to_label_size(trained_run, data_dir):
    from reseg_tf.evaluation import evaluate

    summary = evaluate(str(trained_run / "model.keras"), "camvid", str(data_dir), "val", image_size=(16, 16),
                       verbose=0)
    assert summary["num_pixels"] == 2 * (SIZE * SIZE - 16)  # counted at the labels' 32x32


def test_predict_any_size_overlay_and_bad_image(trained_run, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(np.full((20, 50, 3), 128, np.uint8)).save(inputs / "wide.png")
    Image.fromarray(np.full((40, 30), 90, np.uint8)).save(inputs / "gray.jpg")
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    output = tmp_path / "out"
    code = cli.main(["predict", "--model", str(trained_run / "model.keras"), str(inputs),
                     "--output", str(output), "--overlay"])
    captured = capsys.readouterr()
    assert code == 1  # one image was skipped
    assert "broken.png" in captured.out and "skipped" in captured.out
    classes = np.asarray(Image.open(output / "wide.png"))
    assert classes.shape == (20, 50) and classes.max() < 11
    assert np.asarray(Image.open(output / "wide_overlay.png")).shape == (20, 50, 3)
    assert np.asarray(Image.open(output / "gray.png")).shape == (40, 30)
    assert not (output / "broken.png").exists()


def test_bad_inputs_give_clear_errors(tmp_path, data_dir, capsys):
    assert cli.main(["train", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--dataset", "nope", "--output", str(tmp_path / "a")]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert cli.main(["train", "--data-dir", str(tmp_path / "missing"), "--output", str(tmp_path / "b")]) == 2
    assert "not found" in capsys.readouterr().err
    inputs = keras.Input((8, 8, 3))
    keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs)).save(tmp_path / "plain.keras")
    assert cli.main(["evaluate", "--model", str(tmp_path / "plain.keras"), "--data-dir", str(data_dir)]) == 2
    assert "not a ReSeg model" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "history.csv").write_text("mine\n")
    assert cli.main(_train_args(data_dir, foreign)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (foreign / "history.csv").read_text() == "mine\n"
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    assert cli.main(_train_args(data_dir, a_file)) == 2
    assert "exists and is not a directory" in capsys.readouterr().err and a_file.read_text() == "mine\n"


def test_overwrite_trains_a_finished_run_again(data_dir, tmp_path, capsys):
    output = tmp_path / "run"
    assert cli.main(_train_args(data_dir, output, "--steps-per-epoch", "1")) == 0
    capsys.readouterr()
    assert cli.main(_train_args(data_dir, output, "--steps-per-epoch", "1", "--overwrite")) == 0
    out = capsys.readouterr().out
    assert "already holds this run" not in out
    assert "removing the previous run's files" in out and "Evaluating the best model" in out


def _state(model):
    """Copies of the model's weights and of its optimizer's variables (step count included)."""
    return [np.array(v) for v in model.weights], [np.array(v) for v in model.optimizer.variables]


class _SigtermInSecondEpoch(keras.callbacks.Callback):
    """Records the state the backup saved after epoch 1, then sends the process SIGTERM during
    the first batch of epoch 2 (it comes after the backup in the callback list)."""

    def __init__(self):
        super().__init__()
        self.saved = self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.saved = _state(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1 and batch == 0:
            # With the default disposition SIGTERM would end the test process: fail instead.
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
            os.kill(os.getpid(), signal.SIGTERM)


class _RecordRestoredState(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.restored = _state(self.model)  # after the backup callback restored its files


def test_sigterm_stops_and_resume_restores_the_weights_and_optimizer_state(data_dir, tmp_path, monkeypatch, capsys):
    output = tmp_path / "resumed"
    make_callbacks = training.make_callbacks
    stopper, recorder = _SigtermInSecondEpoch(), _RecordRestoredState()
    handler_before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(training.trainer, "make_callbacks",
                        lambda *args, **kwargs: make_callbacks(*args, **kwargs) + [stopper])
    assert cli.main(_train_args(data_dir, output, "--epochs", "2")) == 130
    assert "Training interrupted. 1 completed epoch(s)" in capsys.readouterr().out
    assert read_json(str(output / "backup" / "training_metadata.json"))["epoch"] == 1
    assert [row["epoch"] for row in training.read_history(str(output / "history.csv"))] == [1]
    assert not (output / "metrics.json").exists()
    assert not (output / ".reseg.lock").exists()
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the run's handler is gone with it

    monkeypatch.setattr(training.trainer, "make_callbacks",
                        lambda *args, **kwargs: make_callbacks(*args, **kwargs) + [recorder])
    assert cli.main(_train_args(data_dir, output, "--epochs", "2")) == 0
    assert "Resuming the unfinished run" in capsys.readouterr().out
    (saved_weights, saved_optimizer), (weights, optimizer) = stopper.saved, recorder.restored
    assert len(weights) == len(saved_weights) and len(optimizer) == len(saved_optimizer) > 1
    for restored, saved in zip(weights + optimizer, saved_weights + saved_optimizer):
        np.testing.assert_array_equal(restored, saved)
    with open(output / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    assert json.loads((output / "metrics.json").read_text())["epochs_run"] == 2
    assert not (output / "backup").exists()


def test_ctrl_c_during_a_checkpoint_save_is_not_lost(data_dir, tmp_path, monkeypatch, capsys):
    """Keras' `model.save` runs a check inside a bare `except:` (keras/src/saving/saving_lib.py):
    a KeyboardInterrupt raised there by Python's default handler is swallowed and training goes
    on. The run's own handler only records the signal, and the run stops after the epoch."""
    from keras.src.saving import saving_lib

    check = saving_lib.is_memory_sufficient
    sent = []

    def ctrl_c_while_saving(model):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return check(model)

    monkeypatch.setattr(saving_lib, "is_memory_sufficient", ctrl_c_while_saving)
    output = tmp_path / "interrupted"
    assert cli.main(_train_args(data_dir, output, "--epochs", "3")) == 130
    assert sent and "Training interrupted. 1 completed epoch(s)" in capsys.readouterr().out
    assert [row["epoch"] for row in training.read_history(str(output / "history.csv"))] == [1]
    load_reseg_model(output / "model.keras")  # the save that was interrupted completed


class _NanLossInSecondEpoch(keras.callbacks.Callback):
    """Reports a NaN training loss in epoch 2 (it must run before `StopOnNonFiniteLoss`)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == 1:
            logs["loss"] = float("nan")


def test_a_nan_loss_exits_1_and_keeps_the_last_good_epoch(data_dir, tmp_path, monkeypatch, capsys):
    output = tmp_path / "diverged"
    make_callbacks = training.make_callbacks
    monkeypatch.setattr(training.trainer, "make_callbacks",
                        lambda *args, **kwargs: [_NanLossInSecondEpoch()] + make_callbacks(*args, **kwargs))
    assert cli.main(_train_args(data_dir, output, "--epochs", "3")) == 1
    err = capsys.readouterr().err
    assert "the training loss became nan at epoch 2, batch 1" in err
    assert "keeps the best model (epoch 1" in err and "--learning-rate" in err
    assert [row["epoch"] for row in training.read_history(str(output / "history.csv"))] == [1]
    assert read_json(str(output / "backup" / "training_metadata.json"))["epoch"] == 1
    assert (output / "model.keras").is_file() and not (output / "metrics.json").exists()
    assert json.loads((output / "run.json").read_text())["state"] == "running"


def _start_training(args, env):
    return subprocess.Popen([sys.executable, "-m", "reseg_tf.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _backed_up_epochs(output):
    return (read_json(str(output / "backup" / "training_metadata.json")) or {}).get("epoch", 0)


def _wait_for_backup(process, output, epochs, timeout=300):
    """Waits (on the run's own files, not the clock) until the run has backed up `epochs` epochs."""
    deadline = time.monotonic() + timeout
    while _backed_up_epochs(output) < epochs:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"epoch {epochs} was not backed up"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigint_then_sigkill_then_resume_counts_each_epoch_once(data_dir, tmp_path):
    output = tmp_path / "killed"
    args = _train_args(data_dir, output, "--epochs", "3", "--steps-per-epoch", "20")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")

    # Ctrl-C once epoch 1 is backed up; the run stops at the next batch or epoch boundary, before
    # epoch 2 ends. (The run catches SIGINT even when it inherited it ignored, as a background
    # job of a script does.)
    process = _start_training(args, env)
    _wait_for_backup(process, output, 1)
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130, out
    assert "Training interrupted. 1 completed epoch(s)" in out and "run the same command again to resume" in out
    assert not (output / ".reseg.lock").exists()
    assert _backed_up_epochs(output) == 1
    assert [row["epoch"] for row in training.read_history(str(output / "history.csv"))] == [1]

    process = _start_training(args, env)
    _wait_for_backup(process, output, 2)
    process.kill()  # SIGKILL inside epoch 3: the lock stays behind with a dead pid
    process.communicate(timeout=60)
    assert (output / ".reseg.lock").exists()

    process = _start_training(args, env)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    assert "Took over the lock" in out and "Resuming the unfinished run" in out
    with open(output / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2", "3"]
    assert json.loads((output / "metrics.json").read_text())["epochs_run"] == 3
    load_reseg_model(output / "model.keras")


def test_bad_training_data_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    data_dir = _write_camvid(tmp_path / "camvid")
    mask_path = data_dir / "trainannot" / "train_1.png"
    labels = np.array(Image.open(mask_path))
    labels[0, 0] = 200  # outside 0..10 and not void
    Image.fromarray(labels).save(mask_path)
    assert cli.main(_train_args(data_dir, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "training data could not be read" in err and "train_1.png" in err
    assert "Traceback" not in err


def test_run_recorded_before_a_setting_existed_still_resumes(data_dir, tmp_path, capsys):
    """A run.json written by an older version lacks newer settings: they count as defaults."""
    from reseg_tf.training import TrainConfig, prepare_output
    from reseg_tf.run_files import atomic_write_json

    config = TrainConfig(data_dir=str(data_dir), output=str(tmp_path / "run"), epochs=1, image_size=(SIZE, SIZE))
    settings = json.loads(json.dumps(config.identity()))
    del settings["strategy"]
    (tmp_path / "run").mkdir()
    atomic_write_json(str(tmp_path / "run" / "run.json"), {"state": "trained", "settings": settings})
    assert prepare_output(config) == "trained"
    settings["batch_size"] = 3
    atomic_write_json(str(tmp_path / "run" / "run.json"), {"state": "trained", "settings": settings})
    with pytest.raises(ValueError, match="batch_size"):
        prepare_output(config)


def test_train_on_cached_features_saves_the_full_model(data_dir, tmp_path):
    output = tmp_path / "cached"
    args = _train_args(data_dir, output, "--cache-features", "--optimizer", "adam", "--augment")
    args[args.index("--epochs") + 1] = "3"
    assert cli.main(args) == 0
    assert (output / "feature_cache" / "train").is_dir() and (output / "feature_cache" / "val").is_dir()
    model = load_reseg_model(str(output / "model.keras"))
    assert model.input_shape == (None, SIZE, SIZE, 3)  # the full model (images in), not the head
    history = training.read_history(str(output / "history.csv"))
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    # The saved full model scores on images what the head scored on the cached val features
    # (same 32x32 size; float16 features explain the tolerance).
    metrics = json.loads((output / "metrics.json").read_text())
    best = max(row["val_mean_iou"] for row in history)
    assert abs(metrics["mean_iou"] - best) < 0.02


def test_cosine_schedule_precision_and_augment_settings(monkeypatch, tmp_path):
    assert training.cosine_learning_rate(1e-3, 0, 10) == pytest.approx(1e-3)
    assert training.cosine_learning_rate(1e-3, 5, 10) == pytest.approx(5e-4)
    rates = [training.cosine_learning_rate(1.0, epoch, 10) for epoch in range(10)]
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] > 0
    assert training.mixed_precision_policy(False) is None
    assert training.mixed_precision_policy("float16") == "mixed_float16"
    # Tests see no GPU: auto is bfloat16 only where the CPU computes it natively.
    monkeypatch.setattr(training.config, "cpu_has_native_bfloat16", lambda: True)
    assert training.mixed_precision_policy(True) == "mixed_bfloat16"
    monkeypatch.setattr(training.config, "cpu_has_native_bfloat16", lambda: False)
    assert training.mixed_precision_policy("auto") is None
    assert training.mixed_precision_policy("bfloat16") == "mixed_bfloat16"  # asked for: honoured
    for bad in (dict(augment_mode="heavy"), dict(lr_schedule="step"), dict(mixed_precision="int8")):
        with pytest.raises(ValueError, match=next(iter(bad))):
            training.TrainConfig(**bad)


def _train_images(data_dir, **settings):
    """Every training image of three passes over the tiny train split, as the trainer feeds them."""
    config = training.TrainConfig(data_dir=str(data_dir), image_size=(SIZE, SIZE), **settings)
    train_data, _ = training.make_datasets(config, training.load_source(config), (SIZE, SIZE), 1)
    return [np.asarray(images[0]) for _ in range(3) for images, _ in train_data]


def test_flip_augment_mode_only_flips(data_dir):
    originals = _train_images(data_dir, augment=False)
    allowed = originals + [image[:, ::-1] for image in originals]

    def unchanged_or_flipped(image):
        return any(np.array_equal(image, candidate) for candidate in allowed)

    flipped = _train_images(data_dir, augment_mode="flip")
    assert all(unchanged_or_flipped(image) for image in flipped)
    assert any(not any(np.array_equal(image, o) for o in originals) for image in flipped)  # some flips
    assert not all(unchanged_or_flipped(image) for image in _train_images(data_dir, augment_mode="standard"))


def test_mixed_precision_cosine_run_saves_a_float32_model(data_dir, tmp_path):
    output = tmp_path / "bf16"
    args = _train_args(data_dir, output, "--optimizer", "adam", "--mixed-precision", "bfloat16",
                       "--lr-schedule", "cosine", "--augment", "--augment-mode", "flip")
    args[args.index("--epochs") + 1] = "2"
    assert cli.main(args) == 0
    history = training.read_history(str(output / "history.csv"))
    assert [row["learning_rate"] for row in history] == pytest.approx([1e-3, 5e-4])
    model = load_reseg_model(str(output / "model.keras"))
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    # The float32 copy scores on val what the bfloat16 model scored at its best epoch, up to
    # bfloat16 rounding of a few pixels.
    best = max(row["val_mean_iou"] for row in history)
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["mean_iou"] == pytest.approx(best, abs=0.05)
    _assert_scores_are(metrics, _scores_by_hand(output / "model.keras", data_dir, "val"))


def test_class_balance_power_softens_the_weights(data_dir):
    def weights(**settings):
        config = training.TrainConfig(data_dir=str(data_dir), image_size=(SIZE, SIZE), **settings)
        return training.class_weights(config, training.load_source(config))

    assert weights() is None
    full = weights(class_balance=True)
    assert np.ptp(full) > 0  # Road and Sky have different frequencies in the tiny set
    np.testing.assert_allclose(weights(class_balance=True, class_balance_power=0.5), np.sqrt(full), rtol=1e-6)
    np.testing.assert_allclose(weights(class_balance=True, class_balance_power=0.0), np.ones_like(full))
    with pytest.raises(ValueError, match="class_balance_power"):
        training.TrainConfig(class_balance_power=-1)


def test_evaluate_runs_unchanged_on_a_test_split(trained_run, tmp_path):
    """CamVid's test split (233 images in the SegNet layout) is not shipped here; a dataset root
    that has one is evaluated with `--split test` like val."""
    root = _write_camvid(tmp_path / "camvid", counts=(("train", 2), ("val", 1), ("test", 3)), seed=1)
    json_path = tmp_path / "test.json"
    assert cli.main(["evaluate", "--model", str(trained_run / "model.keras"), "--dataset", "camvid",
                     "--data-dir", str(root), "--split", "test", "--json", str(json_path)]) == 0
    result = json.loads(json_path.read_text())
    assert result["split"] == "test" and result["num_images"] == 3
    _assert_scores_are(result, _scores_by_hand(trained_run / "model.keras", root, "test"))


def test_crop_training_feeds_crops_and_saves_a_full_size_model(data_dir, tmp_path):
    originals = _train_images(data_dir, augment=False)
    crops = _train_images(data_dir, augment=False, crop_size=(16, 24))
    assert {image.shape for image in crops} == {(16, 24, 3)}

    def window_of_an_original(crop):
        return any(np.array_equal(crop, original[top:top + 16, left:left + 24])
                   for original in originals for top in range(SIZE - 16 + 1) for left in range(SIZE - 24 + 1))

    assert all(window_of_an_original(crop) for crop in crops)
    distinct_images = len({image.tobytes() for image in originals})
    assert len({crop.tobytes() for crop in crops}) > distinct_images  # crops move between passes

    output = tmp_path / "crops"
    assert cli.main(_train_args(data_dir, output, "--optimizer", "adam", "--crop-size", "16", "16")) == 0
    model = load_reseg_model(str(output / "model.keras"))
    assert model.input_shape == (None, SIZE, SIZE, 3)  # saved for the whole image, not the crop
    assert json.loads((output / "run.json").read_text())["settings"]["crop_size"] == [16, 16]
    metrics = json.loads((output / "metrics.json").read_text())
    # Validation during training ran on whole 32x32 images, as the evaluation of the saved model.
    assert metrics["mean_iou"] == pytest.approx(training.read_history(str(output / "history.csv"))[0]["val_mean_iou"], abs=1e-4)


def test_crop_size_errors_name_the_setting(data_dir):
    with pytest.raises(ValueError, match="crop_size"):
        training.TrainConfig(crop_size=(16,))
    with pytest.raises(ValueError, match="crop_size.*cache_features"):
        training.TrainConfig(crop_size=(16, 16), cache_features=True)
    config = training.TrainConfig(data_dir=str(data_dir), image_size=(SIZE, SIZE), crop_size=(SIZE + 4, 16))
    with pytest.raises(ValueError, match=f"crop_size.*larger than the training image size {SIZE}x{SIZE}"):
        training.model_config_for(config, training.load_source(config))


def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert not training.config.cpu_has_native_bfloat16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert training.config.cpu_has_native_bfloat16(cpuinfo)
    assert not training.config.cpu_has_native_bfloat16(tmp_path / "missing")
