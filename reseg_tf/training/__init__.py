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
is taken over); Ctrl-C or SIGTERM stop cleanly at the next batch or epoch boundary (a second
one at once) with a message saying how to resume; a NaN/inf loss stops training
(`TrainingDivergedError`) before anything of that epoch is saved, so `model.keras` and
`backup/` keep the last good state.

Modules: `config` (`TrainConfig`, option names), `data` (data source and datasets: the only
place training uses `pipelines`), `callbacks`, `run_dir` (artifacts, `run.json`, resuming),
`trainer` (`train`), `feature_cache` (training the head on cached front-end features).
"""
from reseg_tf.training.callbacks import (
    AtomicBackupAndRestore, BestModelCheckpoint, EpochHistoryCSV, ResumableEarlyStopping, StopOnNonFiniteLoss,
    StopOnSignal, TimeBudget, TrainingDivergedError, make_callbacks, read_history,
)
from reseg_tf.training.config import (
    AUGMENT_MODES, DEFAULT_EPOCHS, FLIP_ONLY, LR_SCHEDULES, MIXED_PRECISION, MIXED_PRECISION_MODES, MONITOR,
    OPTIMIZERS, PAPER_WEIGHT_DECAY, RECIPE_DEFAULTS, RESUMABLE_CHANGES, TrainConfig, cosine_learning_rate,
    mixed_precision_policy,
)
from reseg_tf.training.data import class_weights, load_source, make_datasets, model_config_for
from reseg_tf.training.run_dir import RunDirectoryError, prepare_output
from reseg_tf.training.trainer import train

__all__ = [
    "AUGMENT_MODES", "AtomicBackupAndRestore", "BestModelCheckpoint", "DEFAULT_EPOCHS", "EpochHistoryCSV",
    "FLIP_ONLY", "LR_SCHEDULES", "MIXED_PRECISION", "MIXED_PRECISION_MODES", "MONITOR", "OPTIMIZERS",
    "PAPER_WEIGHT_DECAY", "RECIPE_DEFAULTS", "RESUMABLE_CHANGES", "ResumableEarlyStopping", "RunDirectoryError",
    "StopOnNonFiniteLoss", "StopOnSignal", "TimeBudget", "TrainConfig", "TrainingDivergedError", "class_weights",
    "cosine_learning_rate", "load_source", "make_callbacks", "make_datasets", "mixed_precision_policy",
    "model_config_for", "prepare_output", "read_history", "train",
]
