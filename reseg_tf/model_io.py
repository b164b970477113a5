"""Loading trained ReSeg models, shared by evaluate, predict, export, train: `.keras` files, model
folders and Hugging Face Hub names (`reseg_tf.sharing`, `reseg_tf.hub`).

A `.keras` file is a zip archive holding `config.json` and the weights; a model folder holds the
same files unzipped. Loading runs Keras's
deserialization with `safe_mode=True`, and the archive's config is checked first for Lambda
layers (Python code): `safe_mode=True` alone does not refuse them once some code in the process
has called `keras.config.enable_unsafe_deserialization()`. ReSeg models never contain one.
"""
import json
import os
import zipfile

# Layer class names whose config carries Python code (Keras 3 serializes a lambda function
# as `__lambda__`).
UNSAFE_CLASS_NAMES = ("Lambda", "__lambda__")


def _class_names(config):
    """Every `class_name` in a nested Keras config."""
    if isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            yield config["class_name"]
        for value in config.values():
            yield from _class_names(value)
    elif isinstance(config, list):
        for value in config:
            yield from _class_names(value)


def _read_archive_config(path, flag):
    """The parsed `config.json` of a `.keras` archive; ValueError naming the file otherwise."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{flag} {path}: not a .keras model file (not a zip archive; the file "
                         "may be truncated, corrupt, or of another kind)")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except KeyError:
        raise ValueError(f"{flag} {path}: not a .keras model file (no config.json in the archive)") from None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{flag} {path}: corrupt .keras archive ({error})") from None


def _read_folder_config(path, flag):
    """The parsed `config.json` of a model folder; ValueError naming the folder otherwise."""
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{flag} {path}: unreadable config.json in the model folder ({error})") from None


def load_reseg_model(model_or_path, flag="--model"):
    """Returns a ReSeg Keras model (uncompiled) from a model object, a `.keras` path, a model
    folder (`config.json` + `model.weights.h5`, as `reseg push` writes) or a Hugging Face Hub
    name `hf://owner/name[@revision]` (downloaded into huggingface_hub's cache; `reseg_tf.hub`).

    A model loaded from a path or a name gets `training_scale` (from the `run.json` beside the
    file, or in the folder); one from the Hub also `hub_revision` (the commit it came from).
    Raises FileNotFoundError / IsADirectoryError / ValueError naming the path (and `flag`, the
    CLI flag that gave it) for a missing path, a folder without a model, a file that is not a
    `.keras` archive, a model with a Lambda layer (refused under safe mode) and a non-ReSeg model.
    """
    import keras

    from reseg_tf import hub
    from reseg_tf.models import config_from_model

    if isinstance(model_or_path, keras.Model):
        model, where = model_or_path, f"model {model_or_path.name!r}"
    else:
        path = os.fspath(model_or_path)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        shown = ascii(path) if not path.isprintable() or not path.isascii() else path
        revision = None
        if hub.is_hub_name(path):
            path, revision = hub.download(path, flag)
        model = _load_path(path, shown, flag)
        if revision:
            model.hub_revision = revision
        where = f"{flag} {shown}"
    try:
        config_from_model(model)
    except ValueError:
        raise ValueError(f"{where} is a Keras model ({type(model).__name__} {model.name!r}) but "
                         "not a ReSeg model; give a model saved by `reseg train` or "
                         "reseg_tf.build_model.") from None
    return model


def _load_path(path, shown, flag):
    """A Keras model from a `.keras` file or a model folder, checked for Lambda layers first."""
    import keras

    from reseg_tf.sharing import is_model_folder
    from reseg_tf.tiling import training_scale

    if os.path.isdir(path):
        if not is_model_folder(path):
            raise IsADirectoryError(f"{flag} {shown} is a directory without a model; give a .keras model "
                                    "file or a model folder (config.json and model.weights.h5, as "
                                    "`reseg push --dry-run --output DIR` writes).")
        config = _read_folder_config(path, flag)
    elif not os.path.exists(path):
        raise FileNotFoundError(f"{flag} {shown}: model file not found")
    else:
        config = _read_archive_config(path, flag)
    unsafe = sorted(set(_class_names(config)) & set(UNSAFE_CLASS_NAMES))
    if unsafe:
        raise ValueError(f"{flag} {shown}: refused to load a model with a Lambda layer (Python code "
                         "that Keras's safe mode does not run); ReSeg models have none.")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for foreign, corrupt or unsafe files.
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{flag} {shown}: could not load it as a Keras model ({first_line})") from None
    # What tiled inference scales images by (`reseg_tf.tiling`), from the run record beside the file.
    model.training_scale = training_scale(path)
    return model
