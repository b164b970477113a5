"""The Keras callbacks of a training run, and `make_callbacks`, the list `train` fits with.

They keep `history.csv`, `model.keras` and `backup/` consistent with each other when a run is
killed, resumed or diverges (see `reseg_tf.training`).
"""
import contextlib
import csv
import io
import math
import os
import signal
import threading
import time

import keras

from reseg_tf.models import ReSegModel, with_input_size
from reseg_tf.run_files import atomic_path, atomic_write_json, atomic_write_text, save_model_atomically
from reseg_tf.training.config import MONITOR, OPTIMIZERS, cosine_learning_rate


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped without saving that epoch."""


def read_history(path):
    """Rows of a `history.csv` (dicts of floats, `epoch` an int); [] if missing or unreadable."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (FileNotFoundError, csv.Error, UnicodeDecodeError):
        return []
    history = []
    for row in rows:
        try:
            history.append({key: int(value) if key == "epoch" else float(value)
                            for key, value in row.items() if value not in ("", None)})
        except (TypeError, ValueError):
            break  # a torn last line; the epochs before it stay valid
        if "epoch" not in history[-1]:
            history.pop()
            break
    return history


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that raises `TrainingDivergedError` with the epoch and batch.

    Raising (rather than `stop_training`) skips every later `on_epoch_end` / `on_train_end`,
    so neither the best-model checkpoint nor the backup ever saves diverged weights. It must be
    the first callback. A NaN `val_loss` at the end of an epoch is caught too.
    """

    def __init__(self):
        super().__init__(raise_error=True)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDivergedError(
                f"the training loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}"
            )

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingDivergedError(f"{key} became {float(value)} at the end of epoch {epoch + 1}")


class EpochHistoryCSV(keras.callbacks.Callback):
    """`history.csv` with exactly one row per completed epoch, also across resumed runs.

    Keras' `CSVLogger(append=True)` repeats the epochs that ran after the last backup when a
    killed run resumes. This logger keeps the rows of the epochs before the epoch training
    (re)starts from, and rewrites the whole (small) file atomically after every epoch, so a kill
    never leaves a torn line. It must come before the backup callback.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = None

    def on_train_begin(self, logs=None):
        self.rows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.rows is None:
            self.rows = [row for row in read_history(self.path) if row["epoch"] <= epoch]
            self._write()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({key: float(value) for key, value in sorted((logs or {}).items())})
        self.rows.append(row)
        self._write()

    def _write(self):
        keys = ["epoch"] + sorted({key for row in self.rows for key in row} - {"epoch"})
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({key: row.get(key, "") for key in keys})
        atomic_write_text(self.path, buffer.getvalue())


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model to `path` (atomically) whenever `monitor` reaches a new maximum.

    On a resumed run the best value so far is read back from `history.csv` (epochs before the
    one training restarts from), so only a real improvement replaces `model.keras`.
    `model_to_save` replaces the fitted model (a head trained on cached features saves the full
    model it shares its layers with). The file holds a copy of the model without its optimizer
    state; with `save_input_size`, the copy is built for that `(height, width)` (a model trained on crops takes any size; evaluation and export
    should run it at the size it was trained for).
    """

    def __init__(self, path, history_path, monitor=MONITOR, verbose=1, model_to_save=None,
                 save_input_size=None, ema=None):
        super().__init__()
        self.model_to_save, self.save_input_size, self.ema = model_to_save, save_input_size, ema
        self.path, self.history_path, self.monitor, self.verbose = path, history_path, monitor, verbose
        self.best = -math.inf
        self.best_epoch = None
        self._resumed = False

    def on_train_begin(self, logs=None):
        self._resumed = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._resumed:
            return
        self._resumed = True
        for row in read_history(self.history_path):
            value = row.get(self.monitor)
            if row["epoch"] <= epoch and value is not None and value > self.best and os.path.exists(self.path):
                self.best, self.best_epoch = value, row["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"cannot checkpoint on {self.monitor!r}: it is not in the logs ({sorted(logs or {})}).")
        if float(value) > self.best:
            previous = self.best
            self.best, self.best_epoch = float(value), epoch + 1
            # A ReSegModel saves its ReSegConfig, not its layers' dtype policies: a model trained
            # under a mixed-precision policy loads as a float32 model.
            model = self.model_to_save or self.model
            with self.ema.averaged_weights() if self.ema else contextlib.nullcontext():
                # A copy without the optimizer: model.keras is for inference and fine-tuning
                # (the backup keeps the optimizer state), a third of the size with Adam.
                # Any other Keras model (one a user passed to `fit`) is saved as it is.
                if isinstance(model, ReSegModel):
                    model = with_input_size(model, self.save_input_size or model.image_shape[:2])
                save_model_atomically(model, self.path)
            if self.verbose:
                improvement = "" if previous == -math.inf else f" improved from {previous:.4f}"
                print(f"Epoch {epoch + 1}: {self.monitor}{improvement} to {self.best:.4f}, saved {self.path}",
                      flush=True)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` whose patience counter survives a resume: past epochs are replayed from
    `history.csv` before the first epoch of a resumed run."""

    def __init__(self, history_path, **kwargs):
        super().__init__(**kwargs)
        self.history_path = history_path
        self._replayed = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._replayed = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._replayed:
            return
        self._replayed = True
        for row in read_history(self.history_path):
            if row["epoch"] <= epoch:
                super().on_epoch_end(row["epoch"] - 1, row)


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch that leaves too little of `minutes` for another epoch."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = minutes * 60.0

    def on_train_begin(self, logs=None):
        self.started = time.monotonic()
        self.longest_epoch = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        self.longest_epoch = max(self.longest_epoch, now - self.epoch_started)
        if now - self.started + self.longest_epoch > self.seconds:
            print(f"Time budget of {self.seconds / 60:.0f} min reached after epoch {epoch + 1} "
                  f"({(now - self.started) / 60:.1f} min); stopping.", flush=True)
            self.model.stop_training = True


class StopOnSignal(keras.callbacks.Callback):
    """Ctrl-C (SIGINT) and SIGTERM stop training at the next batch or epoch boundary.

    Inside `handling_signals()` the first signal only sets a flag; every hook of this callback
    (train and validation batches, epochs) raises `KeyboardInterrupt` once the flag is set, and
    `raise_if_requested()` does the same outside `fit`. A `KeyboardInterrupt` raised by Python's
    default handler can be lost: it surfaces wherever the interpreter happens to be, and Keras
    and TensorFlow code has bare `except:` clauses (saving, compile-time structure checks) and
    `__del__` methods, where an exception is swallowed. Here it is raised only from this
    callback's own code. The handlers are installed whatever the inherited disposition (a
    background job started by a shell script inherits SIGINT ignored), so `kill -INT` stops it
    too. A second signal raises `KeyboardInterrupt` at once, for a user who will not wait for
    the batch to end. It must be the last callback: a stop at the end of an epoch comes after
    that epoch's backup.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.received = None

    @contextlib.contextmanager
    def handling_signals(self):
        """Installs the handlers for the duration of the block (in the main thread only)."""
        self.received = None
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                if handler is not None:  # None: a handler not set from Python, which cannot be restored
                    signal.signal(number, handler)

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice")
        self.received = signum
        # os.write, not print: the signal may arrive while the main thread holds stdout's lock.
        with contextlib.suppress(OSError):
            os.write(2, f"\n{signal.Signals(signum).name}: stopping at the end of this batch "
                        "(send it again to stop at once).\n".encode())

    def raise_if_requested(self):
        if self.received is not None:
            raise KeyboardInterrupt(f"{signal.Signals(self.received).name} received")

    def on_train_begin(self, logs=None):
        self.raise_if_requested()

    def on_epoch_begin(self, epoch, logs=None):
        self.raise_if_requested()

    def on_train_batch_end(self, batch, logs=None):
        self.raise_if_requested()

    def on_test_batch_end(self, batch, logs=None):
        self.raise_if_requested()

    def on_epoch_end(self, epoch, logs=None):
        self.raise_if_requested()


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """Validation sees the optimizer's exponential moving average of the weights (`use_ema=True`).

    Keras' `SwapEMAWeights(swap_on_epoch=True)` leaves the averaged weights in the model between
    epochs, so a backup written then stores the average as the model's weights and the raw
    weights as the optimizer's average, and a resumed run would continue from the swapped pair.
    Here the swap lasts only for validation and for `averaged_weights()` (the best-model
    checkpoint saves inside it), so the backup always holds the raw weights and the running
    average in their own places, and a resumed run continues both. Batch-norm statistics are
    not trainable variables: the averaged model uses the raw run's moving statistics.
    """

    def __init__(self):
        super().__init__(swap_on_epoch=False)

    @contextlib.contextmanager
    def averaged_weights(self):
        """The averaged weights in the model for the duration of the block."""
        if self._ema_weights_in_model:
            yield
            return
        self._swap_variables()
        self._ema_weights_in_model = True
        try:
            yield
        finally:
            self._swap_variables()
            self._ema_weights_in_model = False


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that writes its weights and epoch files atomically.

    Keras writes `latest.weights.h5` and `training_metadata.json` in place, so a kill during the
    write leaves a file that cannot be loaded. Here each goes through a temporary name and a
    rename (the weights first: a kill between the two renames resumes one epoch early with the
    newer weights, which is harmless). It overrides Keras' private `_save_model` (Keras 3.15).
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        with atomic_path(self._weights_path) as temporary:
            self.model.save_weights(temporary)
        atomic_write_json(self._training_metadata_path,
                          {"epoch": self._current_epoch, "batch": self._last_batch_seen})


def make_callbacks(config, paths, verbose, model_to_save=None, save_input_size=None):
    """The callbacks of a run of `config` writing to the artifact `paths`, in the order they need.

    `model_to_save` and `save_input_size` are passed to `BestModelCheckpoint`.
    """
    optional = [TimeBudget(config.time_budget)] if config.time_budget else []
    ema = AveragedWeights() if config.ema else None
    if config.lr_schedule == "cosine":
        base = config.learning_rate or OPTIMIZERS[config.optimizer][1]["learning_rate"]
        optional.append(keras.callbacks.LearningRateScheduler(
            lambda epoch, _: cosine_learning_rate(base, epoch, config.epochs)))
    return optional + [
        StopOnNonFiniteLoss(),
        *([ema] if ema else []),
        EpochHistoryCSV(paths["history.csv"]),
        BestModelCheckpoint(paths["model.keras"], paths["history.csv"], verbose=verbose,
                            model_to_save=model_to_save, save_input_size=save_input_size, ema=ema),
        ResumableEarlyStopping(paths["history.csv"], monitor=MONITOR, mode="max",
                               patience=config.patience, verbose=verbose),
        keras.callbacks.TensorBoard(paths["tensorboard"], write_graph=False, profile_batch=0),
        # Last: it records an epoch as done only after every artifact of that epoch is written.
        AtomicBackupAndRestore(paths["backup"], delete_checkpoint=False),
    ]
