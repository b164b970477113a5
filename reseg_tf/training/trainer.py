"""`train`: runs `model.fit` on a run directory (see `reseg_tf.training`) and evaluates the
best model at the end."""
import dataclasses
import os
import shutil
import sys

import keras
import tensorflow as tf

from reseg_tf.distribute import is_chief, make_strategy
from reseg_tf.losses import make_loss
from reseg_tf.metrics import segmentation_metrics
from reseg_tf.models import build_model, describe_recipe, get_preset
from reseg_tf.run_files import RunLock, atomic_write_json, read_json
from reseg_tf.training.callbacks import (
    BestModelCheckpoint, StopOnSignal, TrainingDivergedError, make_callbacks, read_history,
)
from reseg_tf.training.config import MONITOR, OPTIMIZERS, TrainConfig, mixed_precision_policy
from reseg_tf.training.data import (load_source, make_datasets, make_feature_datasets, measure_training_scale,
                                   model_config_for)
from reseg_tf.training.run_dir import (RunDirectoryError, artifact_paths, is_finished_run, prepare_output,
                                       write_run_record)


def train(config=None, **settings):
    """Trains a ReSeg model with `model.fit` and writes a run directory (see `reseg_tf.training`).

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
        FrontEndWeightsError (a ValueError): the ImageNet weights of the preset's front end
            cannot be downloaded (raised before anything is written; it names both ways on:
            `front_end_weights=FILE`, a local copy, or `front_end_weights="none"`).
        TrainingDivergedError: the loss became NaN/inf (model.keras and backup/ are kept).
        KeyboardInterrupt: Ctrl-C / SIGTERM (see `StopOnSignal`), after printing how to resume.
    """
    if config is None:
        config = TrainConfig(**settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    # First: MultiWorkerMirroredStrategy must exist before TensorFlow runs anything else.
    strategy = make_strategy(config.strategy, tpu_address=config.tpu_address)
    chief = is_chief(strategy)
    if not chief:
        # Other workers keep their own checkpoints/backups and write no user-facing artifacts.
        task_id = strategy.cluster_resolver.task_id
        config = dataclasses.replace(config, output=os.path.join(config.output, "workers", str(task_id)))
    if config.from_recipe:
        recipe = {name: getattr(config, name) for name in config.from_recipe}
        print(f"Preset {config.preset!r}'s recipe: {describe_recipe(recipe)} (flags override it).", flush=True)
    paths = artifact_paths(config.output)
    if os.path.exists(config.output) and not os.path.isdir(config.output):
        raise RunDirectoryError(f"--output {config.output} exists and is not a directory.")
    if is_finished_run(config):  # reported as it is: no weights to fetch, offline or not
        return _already_finished(config, paths)
    front_end_weights = _front_end_weights(config)
    source = load_source(config)
    model_config, image_size = model_config_for(config, source)
    verbose = config.verbose if config.verbose is not None else (1 if sys.stdout.isatty() else 2)

    os.makedirs(config.output, exist_ok=True)
    with RunLock(config.output, purpose="reseg train") as lock:
        if lock.took_over_from:
            print(f"Took over the lock of a process that is gone (pid {lock.took_over_from.get('pid')}).",
                  flush=True)
        state = prepare_output(config)
        if state == "finished":
            return _already_finished(config, paths)
        if state != "trained":
            write_run_record(config, "running", training_scale=measure_training_scale(source, image_size),
                             **_init_from_revision(config))
            # Ctrl-C and SIGTERM from here on only ask `stop` to raise at the next batch or epoch end.
            stop = StopOnSignal()
            with stop.handling_signals():
                _fit(config, strategy, source, model_config, image_size, paths, verbose, front_end_weights, stop)
            # Recorded before the backup goes, so a kill in between never loses the trained run.
            write_run_record(config, "trained")
            if os.path.isdir(paths["backup"]):
                shutil.rmtree(paths["backup"])
        if not chief:
            return {"output": config.output, "metrics": None, "best_epoch": None, "epochs_run": None}
        return _finish(config, source, paths, verbose)


def _init_from_revision(config):
    """`{"init_from_revision": commit}` when fine-tuning from a Hub model (the record keeps the
    name as given and the commit it resolved to), else nothing."""
    from reseg_tf import hub

    if not hub.is_hub_name(config.init_from):
        return {}
    return {"init_from_revision": hub.download(config.init_from, "--init-from")[1]}


def _front_end_weights(config):
    """The file `build_model` starts the front end from (downloaded for "imagenet"), or None."""
    front_end = get_preset(config.preset)[0].front_end_spec
    weights = config.front_end_weights
    if weights == "none":
        fixed = "kept fixed (--freeze-front-end)" if config.freeze_front_end else "trained"
        print(f"Front end {front_end.name}: random weights, {fixed}.", flush=True)
    path = front_end.fetch_weights(weights, get_preset(config.preset)[0].front_end_settings)
    if weights == "imagenet":
        print(f"Front end {front_end.name}: ImageNet weights ({path}).", flush=True)
    return path


def _fit(config, strategy, source, model_config, image_size, paths, verbose, front_end_weights, stop):
    previous_policy = keras.config.dtype_policy()
    policy = mixed_precision_policy(config.mixed_precision)
    if policy:
        keras.config.set_dtype_policy(policy)
        print(f"Mixed precision: {policy} policy.", flush=True)
    try:
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            # Crops train a model that takes any size; it is saved as a copy built for image_size.
            input_size = (None, None) if config.crop_size else image_size
            model = build_model(model_config, input_shape=(*input_size, 3), weights=front_end_weights,
                                name=f"reseg_{config.preset}")
            if config.init_from:
                # A resumed run then restores its own weights from backup/ over these.
                from reseg_tf.training.init_from import describe, freeze_front_end, load_matching_layers

                loaded = load_matching_layers(model, config.init_from)
                frozen = freeze_front_end(model) if config.freeze_front_end else None
                print("\n".join(describe(loaded, config.init_from, frozen)), flush=True)
            fitted = model
            if config.cache_features:
                fitted, train_data, val_data = make_feature_datasets(
                    config, source, model, image_size, paths, verbose)
            fitted.compile(
                optimizer=_optimizer(config.optimizer, config.learning_rate,
                                     ema_momentum=config.ema_momentum if config.ema else None),
                loss=make_loss(config.loss, model_config.num_classes, config.loss_weights),
                metrics=segmentation_metrics(model_config.num_classes),
            )
        replicas = strategy.num_replicas_in_sync
        if replicas > 1:
            print(f"{config.strategy} strategy: {replicas} replicas, global batch "
                  f"{config.batch_size * replicas} ({config.batch_size} per replica).", flush=True)
        if not config.cache_features:
            train_data, val_data = make_datasets(config, source, image_size, config.batch_size * replicas)
        callbacks = make_callbacks(config, paths, verbose, model_to_save=model if fitted is not model else None,
                                   save_input_size=image_size if config.crop_size else None)
        crops = f" (random {config.crop_size[0]}x{config.crop_size[1]} crops)" if config.crop_size else ""
        print(f"Training {config.preset} on {config.dataset} ({source.data_dir}) at "
              f"{image_size[0]}x{image_size[1]}{crops} for up to {config.epochs} epochs -> {config.output}",
              flush=True)
        try:
            stop.raise_if_requested()  # a signal while the model and the data were prepared
            history = fitted.fit(train_data, validation_data=val_data, epochs=config.epochs,
                                 steps_per_epoch=config.steps_per_epoch, callbacks=callbacks + [stop],
                                 shuffle=False, verbose=verbose)  # pipelines shuffle
            stop.raise_if_requested()  # a signal after fit's last hook
            return history
        except tf.errors.OpError as error:
            # Bad data that passed the up-front checks (e.g. a corrupt middle of a PNG, labels out
            # of range) fails inside tf.data; the message names the file.
            from reseg_tf.evaluation import op_error_summary

            raise ValueError(f"training data could not be read: {op_error_summary(error)}. Run "
                             f"`reseg verify-dataset` on the data to list every bad file.") from None
        except KeyboardInterrupt:
            completed = read_json(os.path.join(paths["backup"], "training_metadata.json"), {}).get("epoch", 0)
            print(f"\nTraining interrupted. {completed} completed epoch(s) are backed up in "
                  f"{paths['backup']}; run the same command again to resume.", flush=True)
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


def _summary_line(metrics):
    return (f"Best epoch {metrics.get('best_epoch')}: val mean IoU {metrics['mean_iou']:.4f} "
            f"(all-one-class baseline {metrics['baseline_mean_iou']:.4f}), global acc "
            f"{metrics['global_acc']:.4f}, avg class acc {metrics['avg_class_acc']:.4f}.")


def _already_finished(config, paths):
    """The same command run again on a finished run: report it, train nothing."""
    metrics = read_json(paths["metrics.json"])
    print(f"{config.output} already holds this run, finished with the same settings; nothing to "
          f"train (--overwrite trains it again).", flush=True)
    print(f"{_summary_line(metrics)} Files in {config.output}/", flush=True)
    return {"output": config.output, "metrics": metrics, "best_epoch": metrics.get("best_epoch"),
            "epochs_run": metrics.get("epochs_run")}


def _finish(config, source, paths, verbose):
    from reseg_tf.evaluation import evaluate_model, load_reseg_model
    from reseg_tf.visualize import write_prediction_strips

    model = load_reseg_model(paths["model.keras"])
    print(f"Evaluating the best model on {config.dataset} 'val' at the labels' resolution...", flush=True)
    summary = evaluate_model(model, source, "val", verbose=verbose)
    history_rows = read_history(paths["history.csv"])
    best = max(history_rows, key=lambda row: row.get(MONITOR, -1.0), default={})
    summary.update(
        dataset=config.dataset, split="val", preset=config.preset, model=paths["model.keras"],
        best_epoch=best.get("epoch"), epochs_run=len(history_rows),
    )
    write_prediction_strips(model, source, "val", paths["predictions"], count=config.num_examples)
    atomic_write_json(paths["metrics.json"], summary)
    write_run_record(config, "finished", best_epoch=best.get("epoch"), epochs_run=len(history_rows))
    print(f"{_summary_line(summary)} Wrote {config.output}/", flush=True)
    return {"output": config.output, "metrics": summary, "best_epoch": best.get("epoch"),
            "epochs_run": len(history_rows)}


def _optimizer(name, learning_rate, ema_momentum=None):
    class_name, defaults = OPTIMIZERS[name]
    arguments = dict(defaults)
    if learning_rate is not None:
        arguments["learning_rate"] = learning_rate
    if ema_momentum is not None:
        arguments.update(use_ema=True, ema_momentum=ema_momentum)
    return getattr(keras.optimizers, class_name)(**arguments)
