"""Crash safety of training runs: atomic writes, the output-dir lock (a second run refused, a
killed owner taken over), NaN/inf stop (loss or inputs), history rows."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from reseg_tf import run_files, training
from reseg_tf.run_files import OutputLockedError, RunLock, atomic_write_json, save_model_atomically


def test_atomic_write_keeps_previous_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"mean_iou": 0.5})

    class Unserializable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"mean_iou": Unserializable()})
    assert json.loads(path.read_text()) == {"mean_iou": 0.5}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left behind


class _DiskFullAfter:
    """`open` for `run_files`: a binary write stores `limit` bytes, then fails as a full disk."""

    def __init__(self, limit):
        self.limit = limit

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" not in mode:
            return handle
        limit = self.limit

        class Handle:
            def __enter__(self):
                return self

            def __exit__(self, *exc_info):
                handle.close()

            def write(self, data):
                handle.write(bytes(data)[:limit])
                handle.flush()
                raise OSError(28, "No space left on device")

        return Handle()


def test_an_interrupted_write_leaves_the_previous_file_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "history.csv"
    run_files.atomic_write_text(path, "epoch,loss\n1,0.5\n")
    monkeypatch.setattr(run_files, "open", _DiskFullAfter(limit=12), raising=False)
    with pytest.raises(OSError, match="No space left"):
        run_files.atomic_write_text(path, "epoch,loss\n1,0.5\n2,0.4\n")
    assert path.read_text() == "epoch,loss\n1,0.5\n"
    assert os.listdir(tmp_path) == ["history.csv"]  # the partial temporary file is gone too


class _SaveFailsMidway:
    """A model whose `save` writes the first bytes of its file, then fails (a full disk)."""

    def save(self, path):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")


def test_a_failed_model_save_leaves_the_previous_model_file(tmp_path):
    path = tmp_path / "model.keras"
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    save_model_atomically(model, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        save_model_atomically(_SaveFailsMidway(), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.keras"]
    keras.models.load_model(path)


def test_atomic_model_save_killed_midway_keeps_loadable_model(tmp_path):
    path = tmp_path / "model.keras"
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    save_model_atomically(model, path)
    # A process killed while saving: its temporary file is left, the model file is untouched.
    # run_files.py is loaded by path: importing the reseg_tf package would load TensorFlow.
    code = (
        "import os, signal, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('run_files', {run_files.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"with module.atomic_path({str(path)!r}) as temporary:\n"
        "    open(temporary, 'wb').write(b'partial zip')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.get_weights()[0], model.get_weights()[0])


def test_lock_refuses_a_live_owner_and_takes_over_a_killed_one(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}.*--output"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / RunLock.FILE_NAME).exists()

    dead = subprocess.run([sys.executable, "-c", "import os, signal; print(os.getpid(), flush=True); "
                           "os.kill(os.getpid(), signal.SIGKILL)"], capture_output=True, text=True)
    assert dead.returncode == -9
    stale = {"pid": int(dead.stdout), "host": os.uname().nodename, "start_time": 1, "purpose": "reseg train"}
    (tmp_path / RunLock.FILE_NAME).write_text(json.dumps(stale))
    lock = RunLock(tmp_path).acquire()
    assert lock.took_over_from["pid"] == stale["pid"]
    assert json.loads((tmp_path / RunLock.FILE_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_second_train_into_a_locked_output_refuses_until_the_owner_is_killed(tmp_path, capsys):
    from reseg_tf import cli

    output = tmp_path / "run"
    # Another live `reseg train` holds the lock: run_files.py loaded by path, no TensorFlow import.
    holder = subprocess.Popen([sys.executable, "-c", (
        "import importlib.util, sys, time\n"
        f"spec = importlib.util.spec_from_file_location('run_files', {run_files.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        f"module.RunLock({str(output)!r}).acquire(); print('locked', flush=True); time.sleep(600)\n"
    )], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["train", "--output", str(output), "--epochs", "1"]) == 2
        error = capsys.readouterr().err
        assert f"pid {holder.pid}" in error and "--output" in error and error.count("\n") == 1
        assert sorted(os.listdir(output)) == [RunLock.FILE_NAME]  # nothing of the second run
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with RunLock(output) as lock:  # the killed owner's lock is taken over, not stuck forever
        assert lock.took_over_from["pid"] == holder.pid


def test_lock_of_a_reused_pid_is_stale(tmp_path):
    # Our own pid, but recorded with another process start time: the recorded owner is gone.
    record = {"pid": os.getpid(), "host": os.uname().nodename, "start_time": -1, "purpose": "reseg train"}
    (tmp_path / RunLock.FILE_NAME).write_text(json.dumps(record))
    with RunLock(tmp_path) as lock:
        assert lock.took_over_from is not None


def _tiny_model():
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(inputs)
    return keras.Model(inputs, outputs)


class _PoisonWeightsAtSecondEpoch(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            kernel = self.model.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint_and_backup(tmp_path):
    from reseg_tf.losses import VoidAwareCrossEntropy
    from reseg_tf.metrics import MeanIoU

    model = _tiny_model()
    model.compile("sgd", VoidAwareCrossEntropy(3), metrics=[MeanIoU(3)])
    images = np.random.default_rng(0).random((4, 4, 4, 3)).astype("float32")
    labels = np.random.default_rng(1).integers(0, 4, (4, 4, 4))
    paths = {name: str(tmp_path / name) for name in ("history.csv", "model.keras", "backup")}
    callbacks = [
        training.StopOnNonFiniteLoss(),
        _PoisonWeightsAtSecondEpoch(),
        training.EpochHistoryCSV(paths["history.csv"]),
        training.BestModelCheckpoint(paths["model.keras"], paths["history.csv"], verbose=0),
        training.AtomicBackupAndRestore(paths["backup"], delete_checkpoint=False),
    ]
    with pytest.raises(training.TrainingDivergedError, match="epoch 2, batch 1"):
        model.fit(images, labels, validation_data=(images, labels), epochs=3, batch_size=2,
                  callbacks=callbacks, verbose=0)
    saved = keras.models.load_model(paths["model.keras"], compile=False)
    assert all(np.isfinite(w).all() for w in saved.get_weights())
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 1
    assert [row["epoch"] for row in training.read_history(paths["history.csv"])] == [1]


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_or_inf_inputs_stop_training_and_keep_last_good_checkpoint(tmp_path, bad_value):
    import tensorflow as tf

    from reseg_tf.losses import VoidAwareCrossEntropy
    from reseg_tf.metrics import MeanIoU

    model = _tiny_model()
    model.compile("sgd", VoidAwareCrossEntropy(3), metrics=[MeanIoU(3)])
    images = np.random.default_rng(0).random((8, 4, 4, 3)).astype("float32")
    images[4:] = bad_value  # the batches of epoch 2
    labels = np.random.default_rng(1).integers(0, 4, (8, 4, 4))
    # steps_per_epoch: the second epoch continues the same pass, so it reaches the bad images.
    train_data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    paths = {name: str(tmp_path / name) for name in ("history.csv", "model.keras")}
    callbacks = [training.StopOnNonFiniteLoss(), training.EpochHistoryCSV(paths["history.csv"]),
                 training.BestModelCheckpoint(paths["model.keras"], paths["history.csv"], verbose=0)]
    with pytest.raises(training.TrainingDivergedError, match="epoch 2, batch 1"):
        model.fit(train_data, validation_data=(images[:4], labels[:4]), epochs=3, steps_per_epoch=2,
                  shuffle=False, callbacks=callbacks, verbose=0)
    saved = keras.models.load_model(paths["model.keras"], compile=False)
    assert all(np.isfinite(w).all() for w in saved.get_weights())
    assert [row["epoch"] for row in training.read_history(paths["history.csv"])] == [1]


def test_history_keeps_rows_before_the_resumed_epoch_only(tmp_path):
    path = str(tmp_path / "history.csv")
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.9\n2,0.8\n3,0.7\n4,0.")
    logger = training.EpochHistoryCSV(path)
    logger.on_train_begin()
    logger.on_epoch_begin(2)  # the backup says 2 epochs were completed
    logger.on_epoch_end(2, {"loss": 0.5, "val_mean_iou": 0.25})
    rows = training.read_history(path)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[2] == {"epoch": 3, "loss": 0.5, "val_mean_iou": 0.25}
