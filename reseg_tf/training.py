"""Training of ReSeg with `model.fit`: `reseg_tf.train(...)`, the library call behind `reseg train`.

What a run writes to its output directory (default `runs/<preset>/`):

- `model.keras`: the best model on validation mean IoU (saved atomically at each improvement);
- `metrics.json`: the best model's validation metrics at the labels' full resolution (keys
  `global_acc`, `avg_class_acc`, `mean_iou`, `class_acc`, `class_iou`, fractions in [0, 1], plus
  `baseline_mean_iou`: the mean IoU of predicting the most frequent class everywhere);
- `history.csv`: one row per completed epoch (1-based `epoch`), rewritten atomically each epoch;
- `tensorboard/`: TensorBoard logs; `predictions/`: image | ground truth | prediction strips;
- `run.json`: the run's settings and state (`running`, `trained`, `finished`);
- `backup/` while training (Keras `BackupAndRestore`): an interrupted run resumes from it.

Loss and weight decay: `VoidAwareCrossEntropy` is the mean cross-entropy over non-void pixels
(per-pixel class-balancing weights multiply it). The paper's L2 weight decay 1e-3 is the default
(`weight_decay`), applied as `keras.regularizers.L2` on the model's trainable kernels, i.e.
`1e-3 * sum(kernel ** 2)` added to that pixel-averaged loss, as Lasagne's
`regularize_network_params(l2)` would (see `reseg_tf.losses`).

Reliability: the output directory holds a lock file with the owner's pid (a dead owner's lock
is taken over); Ctrl-C or SIGTERM stop cleanly with a message saying how to resume; a NaN/inf
loss stops training (`TrainingDivergedError`) before anything of that epoch is saved, so
`model.keras` and `backup/` keep the last good state.
"""
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import signal
import sys
import threading
import time

import keras
import tensorflow as tf

from reseg_tf.distribute import STRATEGIES, distribute_options, is_chief, make_strategy
from reseg_tf.losses import VoidAwareCrossEntropy
from reseg_tf.metrics import segmentation_metrics
from reseg_tf.models import build_model, get_preset, with_input_size
from reseg_tf.run_files import (
    RunLock, atomic_path, atomic_write_json, atomic_write_text, read_json, save_model_atomically,
)

PAPER_WEIGHT_DECAY = 1e-3
MONITOR = "val_mean_iou"
# Fresh-run defaults per preset; others use DEFAULT_EPOCHS and early stopping. The demo is tuned
# to finish in a few minutes on a 2-core CPU (see the preset's description).
PRESET_EPOCHS = {"demo": 60}
DEFAULT_EPOCHS = 200
OPTIMIZERS = {
    # The paper's Adadelta is Lasagne's (lr 1.0, rho 0.95, eps 1e-6), not Keras' defaults.
    "adadelta": (keras.optimizers.Adadelta, dict(learning_rate=1.0, rho=0.95, epsilon=1e-6)),
    "adam": (keras.optimizers.Adam, dict(learning_rate=1e-3)),
    "sgd": (keras.optimizers.SGD, dict(learning_rate=1e-2, momentum=0.9)),
    "rmsprop": (keras.optimizers.RMSprop, dict(learning_rate=1e-3)),
}
AUGMENT_MODES = ("standard", "flip")
FLIP_ONLY = dict(hflip=True, scale_range=None, max_shift=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION = (False, True, "auto", "float16", "bfloat16")
# Settings that may change when an unfinished run is resumed; any other difference is refused.
RESUMABLE_CHANGES = ("epochs", "patience", "verbose", "overwrite", "num_examples", "time_budget")
RUN_FILE = "run.json"
ARTIFACTS = ("model.keras", "metrics.json", "history.csv", "tensorboard", "predictions", "backup",
             "feature_cache", RUN_FILE)


class RunDirectoryError(ValueError):
    """The output directory cannot be used as asked (finished run, foreign files, other settings)."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; training stopped without saving that epoch."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of `reseg_tf.train`; every field mirrors a `reseg train` flag.

    Args:
        preset: model preset (`reseg_tf.list_presets()`).
        dataset: data source name (`camvid`, `weizmann_horse`, `oxford_flowers17`, `folder`).
        data_dir: dataset root; None = the embedded CamVid sample (camvid only).
        dataset_options: extra `pipelines.get_source` options (e.g. `num_classes` for `folder`).
        output: output directory; default `runs/<preset>`.
        epochs: maximum epochs; default 60 for `demo`, 200 otherwise (early stopping ends sooner).
        batch_size: images per step (the paper: 5).
        image_size: `(height, width)` to train at; default the preset's size.
        crop_size: `(height, width)` of random crops taken from each training image (after the
            resize to `image_size`), or None. The step costs what a crop-sized image costs,
            while validation, the saved model and evaluation use the whole `image_size`:
            more resolution for the same step time, and a translation augmentation. The
            ReNet layers see whole images at inference (their sweeps are longer than in
            training).
        optimizer: `adadelta` (the paper's settings), `adam`, `sgd` (momentum 0.9) or `rmsprop`.
        learning_rate: default per optimizer: 1.0, 1e-3, 1e-2, 1e-3.
        weight_decay: L2 coefficient on trainable kernels (paper: 1e-3).
        class_balance: median-frequency class balancing as per-pixel sample weights.
        class_balance_power: the weights are raised to this power: 1 = median-frequency
            balancing, 0.5 = its square root (softer: rare classes are boosted less, which
            over-predicts them less and usually gives a better mean IoU), 0 = no weighting.
        augment: random augmentation of the training split (see `augment_mode`).
        augment_mode: `"standard"` (`pipelines.AugmentConfig()` defaults: flips, zoom, shifts,
            colour jitter) or `"flip"` (left-right flips only).
        lr_schedule: `"constant"`, or `"cosine"`: the learning rate follows a half cosine from
            `learning_rate` down to 0 over `epochs` (set per epoch; resumed runs stay on it).
        steps_per_epoch: batches per epoch (the training set repeats); default one pass.
        patience: epochs without val mean IoU improvement before stopping.
        seed: seed of weights, shuffling and augmentation.
        mixed_precision: False (float32), `"float16"` / `"bfloat16"` (the `mixed_float16` /
            `mixed_bfloat16` policy), or True / `"auto"`: float16 when a GPU is visible, bfloat16
            otherwise (CPUs with AVX512_BF16/AMX run bf16 convolutions and ReNet matmuls faster;
            float16 is slow on CPUs).
        vgg_weights: VGG16 front-end weights: `imagenet`, a weights file, or None.
        overwrite: replace a finished run (or foreign files of ours) in `output`.
        num_examples: validation images drawn into `predictions/`.
        verbose: Keras verbosity; None = progress bar on a terminal, one line per epoch otherwise.
        strategy: `default`, `mirrored`, `multiworker` (reads `TF_CONFIG`) or `tpu`
            (`reseg_tf.distribute.make_strategy`). `batch_size` is per replica: the global
            batch is `batch_size * num_replicas_in_sync`. Only the chief writes artifacts.
        time_budget: stop after the epoch that would otherwise end past this many minutes of
            training in this process (None: no limit); the best model so far is kept.
        cache_features: run the frozen front end (VGG16, or the preprocessing of a no-VGG
            preset) once over train and val, keep its float16 features in
            `OUTPUT/feature_cache/`, and train the rest of the model on them
            (`reseg_tf.feature_cache`). Gradients equal full-model training without augmentation;
            with `augment`, only left-right flips are applied, in feature space.
    """

    preset: str = "demo"
    dataset: str = "camvid"
    data_dir: str = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    output: str = None
    epochs: int = None
    batch_size: int = 5
    image_size: tuple = None
    crop_size: tuple = None
    optimizer: str = "adadelta"
    learning_rate: float = None
    weight_decay: float = PAPER_WEIGHT_DECAY
    class_balance: bool = False
    class_balance_power: float = 1.0
    augment: bool = True
    augment_mode: str = "standard"
    lr_schedule: str = "constant"
    steps_per_epoch: int = None
    patience: int = 20
    seed: int = 0
    mixed_precision: bool | str = False
    vgg_weights: str = None
    overwrite: bool = False
    num_examples: int = 4
    verbose: int = None
    strategy: str = "default"
    time_budget: float = None
    cache_features: bool = False

    def __post_init__(self):
        get_preset(self.preset)  # raises for an unknown name
        if self.output is None:
            self.output = os.path.join("runs", self.preset)
        if self.epochs is None:
            self.epochs = PRESET_EPOCHS.get(self.preset, DEFAULT_EPOCHS)
        for field in ("epochs", "batch_size", "patience", "num_examples"):
            value = getattr(self, field)
            minimum = 0 if field in ("patience", "num_examples") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{field}` must be an int >= {minimum}, got {value!r}.")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ValueError(f"`steps_per_epoch` must be a positive int or None, got {self.steps_per_epoch!r}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        if self.cache_features and self.strategy != "default":
            raise ValueError("`cache_features` works with the default strategy only.")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ValueError(f"`time_budget` must be a positive number of minutes, got {self.time_budget!r}.")
        if not (0 <= self.class_balance_power <= 4):
            raise ValueError(f"`class_balance_power` must be in [0, 4], got {self.class_balance_power!r}.")
        if self.augment_mode not in AUGMENT_MODES:
            raise ValueError(f"unknown augment_mode {self.augment_mode!r}; choose one of {', '.join(AUGMENT_MODES)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"`mixed_precision` must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if self.learning_rate is not None and not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"`learning_rate` must be a positive number, got {self.learning_rate!r}.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay!r}.")
        for field in ("image_size", "crop_size"):
            value = getattr(self, field)
            if value is not None:
                size = tuple(value)
                if len(size) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in size):
                    raise ValueError(f"`{field}` must be (height, width) positive ints, got {value!r}.")
                setattr(self, field, size)
        if self.crop_size is not None and self.cache_features:
            raise ValueError("`crop_size` cannot be combined with `cache_features` (features are "
                             "cached for whole images).")
        if self.data_dir is not None:
            self.data_dir = os.path.abspath(os.fspath(self.data_dir))

    def identity(self):
        """The settings that define the run (compared when an unfinished run is resumed)."""
        settings = dataclasses.asdict(self)
        for name in RESUMABLE_CHANGES + ("output",):
            settings.pop(name)
        return settings


def mixed_precision_policy(setting):
    """The Keras dtype policy name for a `TrainConfig.mixed_precision` setting (None: float32)."""
    if setting is False or setting is None:
        return None
    if setting in (True, "auto"):
        setting = "float16" if tf.config.list_logical_devices("GPU") else "bfloat16"
    return f"mixed_{setting}"


def cosine_learning_rate(base, epoch, epochs):
    """Learning rate of 0-based `epoch` on a half cosine from `base` (epoch 0) towards 0."""
    return base * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _optimizer(name, learning_rate):
    optimizer_class, defaults = OPTIMIZERS[name]
    arguments = dict(defaults)
    if learning_rate is not None:
        arguments["learning_rate"] = learning_rate
    return optimizer_class(**arguments)


def _say(message):
    print(message, flush=True)


# ---------------------------------------------------------------------------------------------
# Callbacks


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
    model it shares its layers with). With `save_input_size`, a copy of it built for that
    `(height, width)` is saved (a model trained on crops takes any size; evaluation and export
    should run it at the size it was trained for).
    """

    def __init__(self, path, history_path, monitor=MONITOR, verbose=1, model_to_save=None,
                 save_input_size=None):
        super().__init__()
        self.model_to_save, self.save_input_size = model_to_save, save_input_size
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
            if self.save_input_size:
                model = with_input_size(model, self.save_input_size)
            save_model_atomically(model, self.path)
            if self.verbose:
                improvement = "" if previous == -math.inf else f" improved from {previous:.4f}"
                _say(f"Epoch {epoch + 1}: {self.monitor}{improvement} to {self.best:.4f}, saved {self.path}")


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
            _say(f"Time budget of {self.seconds / 60:.0f} min reached after epoch {epoch + 1} "
                 f"({(now - self.started) / 60:.1f} min); stopping.")
            self.model.stop_training = True


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


# ---------------------------------------------------------------------------------------------
# Output directory


def _artifact_paths(output):
    return {name: os.path.join(output, name) for name in ARTIFACTS}


def _remove_artifacts(output):
    for path in _artifact_paths(output).values():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _prepare_output(config):
    """Decides between a fresh run, resuming, evaluating a trained run, or refusing.

    Returns the state to continue from: `"fresh"`, `"resume"` or `"trained"`.
    """
    output = config.output
    paths = _artifact_paths(output)
    record = read_json(paths[RUN_FILE])
    how_to_restart = "pass --overwrite to replace it, or --output DIR to train elsewhere"
    if config.overwrite:
        if record is not None or any(os.path.exists(path) for path in paths.values()):
            _say(f"--overwrite: removing the previous run's files in {output}.")
            _remove_artifacts(output)
        return "fresh"
    if os.path.exists(paths["metrics.json"]) or (record or {}).get("state") == "finished":
        raise RunDirectoryError(f"{output} holds a finished run (metrics.json exists); {how_to_restart}.")
    if record is None:
        ours = [name for name, path in paths.items() if os.path.exists(path)]
        if ours:
            raise RunDirectoryError(
                f"{output} already contains {', '.join(ours)} but no {RUN_FILE} of a reseg run; {how_to_restart}."
            )
        return "fresh"
    # A setting the record lacks was added after that run started: it ran with the default.
    defaults = {field.name: field.default if field.default_factory is dataclasses.MISSING
                else field.default_factory() for field in dataclasses.fields(TrainConfig)}
    recorded = {**defaults, **record.get("settings", {})}
    differences = {
        key: (recorded.get(key), value)
        for key, value in config.identity().items()
        if _jsonable(recorded.get(key)) != _jsonable(value)
    }
    if differences:
        listed = "; ".join(f"{key}: run has {old!r}, asked {new!r}" for key, (old, new) in differences.items())
        raise RunDirectoryError(
            f"{output} holds an unfinished run with other settings ({listed}); rerun with the "
            f"same settings to resume it, or {how_to_restart}."
        )
    if record.get("state") == "trained":
        _say(f"{output}: training had finished; evaluating the best model.")
        return "trained"
    if os.path.isdir(paths["backup"]):
        metadata = read_json(os.path.join(paths["backup"], "training_metadata.json"), {})
        _say(f"Resuming the unfinished run in {output} after epoch {metadata.get('epoch', '?')} "
             f"(from {paths['backup']}).")
        return "resume"
    _say(f"{output}: the previous run stopped before completing an epoch; starting it again.")
    return "fresh"


def _jsonable(value):
    return json.loads(json.dumps(value))


def _write_run_record(config, state, **extra):
    record = {"state": state, "settings": _jsonable(config.identity()), "epochs": config.epochs}
    record.update(extra)
    atomic_write_json(os.path.join(config.output, RUN_FILE), record)


class _StopSignals:
    """Turns SIGTERM into KeyboardInterrupt while training, so both stop the same clean way."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


# ---------------------------------------------------------------------------------------------
# train


def _load_source(config):
    import pipelines

    return pipelines.get_source(config.dataset, config.data_dir, **config.dataset_options)


def _model_config(config, source):
    model_config, preset_size, _ = get_preset(config.preset)
    if model_config.num_classes != source.num_classes:
        _say(f"Preset {config.preset!r} has {model_config.num_classes} classes; dataset "
             f"{config.dataset!r} has {source.num_classes}: using the dataset's classes.")
    model_config = model_config.replace(
        num_classes=source.num_classes, class_names=tuple(source.class_names),
        weight_decay=config.weight_decay,
    )
    image_size = tuple(config.image_size or preset_size)
    crop = config.crop_size
    if crop is not None and (crop[0] > image_size[0] or crop[1] > image_size[1]):
        raise ValueError(f"`crop_size` {crop[0]}x{crop[1]} is larger than the training image size "
                         f"{image_size[0]}x{image_size[1]} (`image_size` or the preset's); crops must fit.")
    return model_config, image_size


def _class_weights(config, source):
    """The training split's per-class pixel weights (None without class balancing)."""
    if not config.class_balance:
        return None
    import pipelines

    weights = pipelines.median_frequency_weights(source, "train")
    if config.class_balance_power != 1:
        weights = weights ** config.class_balance_power
        _say("Class weights (median frequency ** {:g}): {}".format(
            config.class_balance_power, ", ".join(f"{w:.2f}" for w in weights)))
    return weights


def _datasets(config, source, image_size, global_batch_size):
    import pipelines

    if "val" not in source.splits:
        raise ValueError(f"dataset {config.dataset!r} in {source.data_dir} has no 'val' split "
                         f"(splits: {', '.join(source.splits)}); model selection needs one.")
    # TPUs need static batch shapes.
    common = dict(batch_size=global_batch_size, image_size=image_size, seed=config.seed,
                  drop_remainder=config.strategy == "tpu")
    class_balance = _class_weights(config, source)
    augment = False
    if config.augment:
        augment = pipelines.AugmentConfig(**FLIP_ONLY) if config.augment_mode == "flip" else pipelines.AugmentConfig()
    if config.crop_size:
        # Crops without --augment: no flips, zoom, shifts or colour; just the crop.
        augment = dataclasses.replace(
            augment or pipelines.AugmentConfig(**{**FLIP_ONLY, "hflip": False}),
            crop_size=config.crop_size)
    train_data = pipelines.make_dataset(
        source, "train", augment=augment, class_balance=class_balance,
        shuffle=True, repeat=config.steps_per_epoch is not None, **common,
    )
    val_data = pipelines.make_dataset(source, "val", shuffle=False, **common)
    return distribute_options(train_data), distribute_options(val_data)


def _feature_datasets(config, source, model, image_size, paths, verbose):
    """`(head, train, val)` for training on cached front-end features (see `TrainConfig`)."""
    import pipelines

    from reseg_tf.feature_cache import cache_features, random_flip_features, split_frozen_front_end

    front_end, head = split_frozen_front_end(model, image_size)
    common = dict(batch_size=config.batch_size, image_size=image_size, seed=config.seed, shuffle=False)
    cached = {}
    for split, balance in (("train", _class_weights(config, source)), ("val", False)):
        _say(f"Caching front-end features of {split} in {paths['feature_cache']}/{split} ...")
        plain = pipelines.make_dataset(source, split, augment=False, class_balance=balance, **common)
        cached[split] = cache_features(front_end, plain, os.path.join(paths["feature_cache"], split),
                                       verbose=1 if verbose == 1 else 0)
    train = cached["train"]
    if config.augment:
        train = random_flip_features(train, seed=config.seed)
    train = train.shuffle(512, seed=config.seed).batch(config.batch_size)
    if config.steps_per_epoch is not None:
        train = train.repeat()
    val = cached["val"].batch(config.batch_size)
    # Build the head's variables view before fit (BackupAndRestore loads weights into it).
    features, *_ = next(iter(val))
    head(features[:1])
    return head, train.prefetch(tf.data.AUTOTUNE), val.prefetch(tf.data.AUTOTUNE)


def _callbacks(config, paths, verbose, model_to_save=None, save_input_size=None):
    optional = [TimeBudget(config.time_budget)] if config.time_budget else []
    if config.lr_schedule == "cosine":
        base = config.learning_rate or OPTIMIZERS[config.optimizer][1]["learning_rate"]
        optional.append(keras.callbacks.LearningRateScheduler(
            lambda epoch, _: cosine_learning_rate(base, epoch, config.epochs)))
    return optional + [
        StopOnNonFiniteLoss(),
        EpochHistoryCSV(paths["history.csv"]),
        BestModelCheckpoint(paths["model.keras"], paths["history.csv"], verbose=verbose,
                            model_to_save=model_to_save, save_input_size=save_input_size),
        ResumableEarlyStopping(paths["history.csv"], monitor=MONITOR, mode="max",
                               patience=config.patience, verbose=verbose),
        keras.callbacks.TensorBoard(paths["tensorboard"], write_graph=False, profile_batch=0),
        # Last: it records an epoch as done only after every artifact of that epoch is written.
        AtomicBackupAndRestore(paths["backup"], delete_checkpoint=False),
    ]


def train(config=None, **settings):
    """Trains a ReSeg model with `model.fit` and writes a run directory (see the module docstring).

    Args:
        config: a `TrainConfig`; or leave it out and pass its fields as keyword arguments
            (`train(preset="demo", epochs=5)`); keywords also override a given config.

    Returns:
        A dict: `output` (directory), `metrics` (the `metrics.json` content), `best_epoch`,
        `epochs_run`.

    Raises:
        ValueError / FileNotFoundError: bad settings or data (unknown preset or dataset, missing
            data dir); `RunDirectoryError` (a ValueError) for an output directory holding a
            finished run or other files; `OutputLockedError` if another run uses it.
        TrainingDivergedError: the loss became NaN/inf (model.keras and backup/ are kept).
        KeyboardInterrupt: Ctrl-C / SIGTERM, after printing how to resume.
    """
    if config is None:
        config = TrainConfig(**settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)
    if not chief:
        # Other workers keep their own checkpoints/backups and write no user-facing artifacts.
        task_id = strategy.cluster_resolver.task_id
        config = dataclasses.replace(config, output=os.path.join(config.output, "workers", str(task_id)))
    source = _load_source(config)
    model_config, image_size = _model_config(config, source)
    paths = _artifact_paths(config.output)
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)

    if os.path.exists(config.output) and not os.path.isdir(config.output):
        raise RunDirectoryError(f"--output {config.output} exists and is not a directory.")
    os.makedirs(config.output, exist_ok=True)
    with RunLock(config.output, purpose="reseg train") as lock:
        if lock.took_over_from:
            _say(f"Took over the lock of a process that is gone (pid {lock.took_over_from.get('pid')}).")
        state = _prepare_output(config)
        if state != "trained":
            _write_run_record(config, "running")
            _fit(config, strategy, source, model_config, image_size, paths, verbose)
            # Recorded before the backup goes, so a kill in between never loses the trained run.
            _write_run_record(config, "trained")
            if os.path.isdir(paths["backup"]):
                shutil.rmtree(paths["backup"])
        if not chief:
            return {"output": config.output, "metrics": None, "best_epoch": None, "epochs_run": None}
        return _finish(config, source, paths, verbose)


def _fit(config, strategy, source, model_config, image_size, paths, verbose):
    previous_policy = keras.config.dtype_policy()
    policy = mixed_precision_policy(config.mixed_precision)
    if policy:
        keras.config.set_dtype_policy(policy)
        _say(f"Mixed precision: {policy} policy.")
    try:
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            # Crops train a model that takes any size; it is saved as a copy built for image_size.
            input_size = (None, None) if config.crop_size else image_size
            model = build_model(model_config, input_shape=(*input_size, 3), weights=config.vgg_weights,
                                name=f"reseg_{config.preset}")
            fitted = model
            if config.cache_features:
                fitted, train_data, val_data = _feature_datasets(config, source, model, image_size, paths, verbose)
            fitted.compile(
                optimizer=_optimizer(config.optimizer, config.learning_rate),
                loss=VoidAwareCrossEntropy(model_config.num_classes),
                metrics=segmentation_metrics(model_config.num_classes),
            )
        replicas = strategy.num_replicas_in_sync
        if replicas > 1:
            _say(f"{config.strategy} strategy: {replicas} replicas, global batch "
                 f"{config.batch_size * replicas} ({config.batch_size} per replica).")
        if not config.cache_features:
            train_data, val_data = _datasets(config, source, image_size, config.batch_size * replicas)
        callbacks = _callbacks(config, paths, verbose, model_to_save=model if fitted is not model else None,
                               save_input_size=image_size if config.crop_size else None)
        crops = f" (random {config.crop_size[0]}x{config.crop_size[1]} crops)" if config.crop_size else ""
        _say(f"Training {config.preset} on {config.dataset} ({source.data_dir}) at "
             f"{image_size[0]}x{image_size[1]}{crops} for up to {config.epochs} epochs -> {config.output}")
        try:
            with _StopSignals():
                return fitted.fit(train_data, validation_data=val_data, epochs=config.epochs,
                                 steps_per_epoch=config.steps_per_epoch, callbacks=callbacks,
                                 shuffle=False, verbose=verbose)  # pipelines shuffle
        except tf.errors.OpError as error:
            # Bad data that passed the up-front checks (e.g. a corrupt middle of a PNG, labels out
            # of range) fails inside tf.data; the message names the file.
            from reseg_tf.evaluation import op_error_summary

            raise ValueError(f"training data could not be read: {op_error_summary(error)}. Run "
                             f"`reseg verify-dataset` on the data to list every bad file.") from None
        except KeyboardInterrupt:
            completed = read_json(os.path.join(paths["backup"], "training_metadata.json"), {}).get("epoch", 0)
            _say(f"\nTraining interrupted. {completed} completed epoch(s) are backed up in "
                 f"{paths['backup']}; run the same command again to resume.")
            raise
        except TrainingDivergedError as error:
            checkpoint = next(c for c in callbacks if isinstance(c, BestModelCheckpoint))
            kept = (f"{paths['model.keras']} keeps the best model (epoch {checkpoint.best_epoch}, "
                    f"{MONITOR} {checkpoint.best:.4f})" if checkpoint.best_epoch else "no model was saved yet")
            raise TrainingDivergedError(
                f"training stopped: {error}. {kept}; {paths['backup']} keeps the last good epoch. "
                "Try a lower --learning-rate (with --overwrite or another --output), or check the data "
                "for NaN/inf values."
            ) from None
    finally:
        keras.config.set_dtype_policy(previous_policy)


def _finish(config, source, paths, verbose):
    from reseg_tf.evaluation import evaluate_model, load_reseg_model, write_prediction_strips

    model = load_reseg_model(paths["model.keras"])
    _say(f"Evaluating the best model on {config.dataset} 'val' at the labels' resolution...")
    summary = evaluate_model(model, source, "val", verbose=verbose)
    history_rows = read_history(paths["history.csv"])
    best = max(history_rows, key=lambda row: row.get(MONITOR, -1.0), default={})
    summary.update(
        dataset=config.dataset, split="val", preset=config.preset, model=paths["model.keras"],
        best_epoch=best.get("epoch"), epochs_run=len(history_rows),
    )
    write_prediction_strips(model, source, "val", paths["predictions"], count=config.num_examples)
    atomic_write_json(paths["metrics.json"], summary)
    _write_run_record(config, "finished", best_epoch=best.get("epoch"), epochs_run=len(history_rows))
    _say(f"Best epoch {best.get('epoch')}: val mean IoU {summary['mean_iou']:.4f} "
         f"(all-one-class baseline {summary['baseline_mean_iou']:.4f}), global acc "
         f"{summary['global_acc']:.4f}, avg class acc {summary['avg_class_acc']:.4f}. Wrote {config.output}/")
    return {"output": config.output, "metrics": summary, "best_epoch": best.get("epoch"),
            "epochs_run": len(history_rows)}
