"""reseg_tf runs on Keras' TensorFlow backend only (its layers, pipelines and exports use TF ops).

`require_tensorflow_backend()` runs first thing when `reseg_tf` is imported, before Keras is:
with another backend configured it stops with one clear line instead of failing deep inside
Keras. This module imports nothing of the package.
"""
import json
import os
import sys


def configured_backend():
    """The backend Keras runs (or will run) on: the imported Keras' own answer, else Keras' rules
    (`KERAS_BACKEND`, then `backend` in `$KERAS_HOME/keras.json` or `~/.keras/keras.json`)."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and hasattr(keras.backend, "backend"):
        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as handle:
            return json.load(handle).get("backend") or "tensorflow"
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _running_as_cli():
    """True inside the `reseg` command (console script or `python -m reseg_tf.cli`)."""
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    command = list(getattr(sys, "orig_argv", []))
    as_module = any(command[i] == "-m" and command[i + 1].startswith("reseg_tf")
                    for i in range(len(command) - 1))
    return script in ("reseg", "reseg.exe") or as_module


def require_tensorflow_backend():
    backend = configured_backend()
    if backend == "tensorflow":
        return
    source = ("KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") == backend
              else "Keras' configuration (keras.json or an earlier `import keras`)")
    message = (f"reseg_tf needs Keras' TensorFlow backend, but {source} selects {backend!r}: "
               f"set KERAS_BACKEND=tensorflow (or unset it) before importing reseg_tf.")
    if _running_as_cli():
        print(f"reseg: error: {message}", file=sys.stderr)
        raise SystemExit(2)
    raise ImportError(message)
