"""The run directory: which artifacts a run writes, its record `run.json`, and whether to start,
resume or refuse a run in a directory (`prepare_output`)."""
import dataclasses
import json
import os
import shutil

from reseg_tf.run_files import atomic_write_json, read_json
from reseg_tf.training.config import RECIPE_DEFAULTS, TrainConfig

RUN_FILE = "run.json"
ARTIFACTS = ("model.keras", "metrics.json", "history.csv", "tensorboard", "predictions", "backup",
             "feature_cache", RUN_FILE)


class RunDirectoryError(ValueError):
    """The output directory cannot be used as asked (finished run, foreign files, other settings)."""


def artifact_paths(output):
    """`{artifact name: its path}` for a run writing to `output`."""
    return {name: os.path.join(output, name) for name in ARTIFACTS}


def _remove_artifacts(output):
    for path in artifact_paths(output).values():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def prepare_output(config):
    """Decides between a fresh run, resuming, evaluating a trained run, or refusing.

    Returns the state to continue from: `"fresh"`, `"resume"`, `"trained"` (evaluate the best
    model), or `"finished"` (a finished run with the same settings: nothing left to do).
    """
    output = config.output
    paths = artifact_paths(output)
    record = read_json(paths[RUN_FILE])
    how_to_restart = "pass --overwrite to replace it, or --output DIR to train elsewhere"
    if config.overwrite:
        if record is not None or any(os.path.exists(path) for path in paths.values()):
            print(f"--overwrite: removing the previous run's files in {output}.", flush=True)
            _remove_artifacts(output)
        return "fresh"
    if is_finished_run(config):
        return "finished"
    finished = os.path.exists(paths["metrics.json"]) or (record or {}).get("state") == "finished"
    if record is None:
        ours = [name for name, path in paths.items() if os.path.exists(path)]
        if finished:
            raise RunDirectoryError(f"{output} holds a finished run (metrics.json exists); {how_to_restart}.")
        if ours:
            raise RunDirectoryError(
                f"{output} already contains {', '.join(ours)} but no {RUN_FILE} of a reseg run; {how_to_restart}."
            )
        return "fresh"
    differences = _differences(record, config)
    if differences:
        listed = "; ".join(f"{key}: run has {old!r}, asked {new!r}" for key, (old, new) in differences.items())
        kind = "a finished run" if finished else "an unfinished run"
        again = "" if finished else "rerun with the same settings to resume it, or "
        raise RunDirectoryError(
            f"{output} holds {kind} with other settings ({listed}); {again}{how_to_restart}."
        )
    if finished:  # not a complete finished run (`is_finished_run` would have said so)
        raise RunDirectoryError(f"{output} holds a finished run whose files are incomplete "
                                f"(run.json or metrics.json is missing); {how_to_restart}.")
    if record.get("state") == "trained":
        print(f"{output}: training had finished; evaluating the best model.", flush=True)
        return "trained"
    if os.path.isdir(paths["backup"]):
        metadata = read_json(os.path.join(paths["backup"], "training_metadata.json"), {})
        print(f"Resuming the unfinished run in {output} after epoch {metadata.get('epoch', '?')} "
              f"(from {paths['backup']}).", flush=True)
        return "resume"
    print(f"{output}: the previous run stopped before completing an epoch; starting it again.", flush=True)
    return "fresh"


def is_finished_run(config):
    """Whether `config.output` holds a finished run with these same settings (what
    `prepare_output` returns `"finished"` for); reads only, so it can be asked before anything
    is fetched or written."""
    if config.overwrite:
        return False
    paths = artifact_paths(config.output)
    record = read_json(paths[RUN_FILE])
    return (record is not None and record.get("state") == "finished" and os.path.exists(paths["metrics.json"])
            and not _differences(record, config))


def _differences(record, config):
    """`{setting: (recorded, asked)}` for every identity setting on which `config` differs from
    the run recorded in `record`."""
    # A setting the record lacks was added after that run started: it ran with the default.
    # (The training settings' defaults are RECIPE_DEFAULTS: the dataclass holds None for them.)
    defaults = {field.name: field.default if field.default_factory is dataclasses.MISSING
                else field.default_factory() for field in dataclasses.fields(TrainConfig)}
    defaults.update(RECIPE_DEFAULTS)
    recorded = {**defaults, **record.get("settings", {})}
    if recorded.get("data_dir") is not None:  # recorded relative to the working directory
        recorded["data_dir"] = os.path.abspath(recorded["data_dir"])
    return {
        key: (recorded.get(key), value)
        for key, value in config.identity().items()
        if _jsonable(recorded.get(key)) != _jsonable(value)
    }


def _lineage(model_path):
    """What a fine-tune started from: the model file and, where its run folder recorded them,
    that run's command, preset and lineage."""
    source = read_json(os.path.join(os.path.dirname(os.path.abspath(model_path)), RUN_FILE)) or {}
    lineage = {"model": os.path.relpath(model_path) if os.path.isabs(model_path) else model_path}
    for key in ("command", "started_from"):
        if key in source:
            lineage[key] = source[key]
    if source.get("settings", {}).get("preset"):
        lineage["preset"] = source["settings"]["preset"]
    return lineage


def _jsonable(value):
    return json.loads(json.dumps(value))


def write_run_record(config, state, **extra):
    """Writes `run.json`: the run's `state` (`running`, `trained`, `finished`), settings and
    `extra` facts (e.g. `training_scale`); facts written earlier in the run are kept."""
    settings = _jsonable(config.identity())
    if settings.get("data_dir") is not None:
        # Relative, so a run directory committed with a repository names no machine's paths.
        settings["data_dir"] = os.path.relpath(settings["data_dir"])
    record = read_json(os.path.join(config.output, RUN_FILE)) or {}
    record.update({"state": state, "settings": settings, "epochs": config.epochs}, **extra)
    if config.command is not None:
        record["command"] = config.command
    if config.init_from is not None and "started_from" not in record:
        record["started_from"] = _lineage(config.init_from)
    atomic_write_json(os.path.join(config.output, RUN_FILE), record)
