"""Bad-input drill: feeds broken files to every entry point and checks the outcome.

Builds each bad-input case in a temporary folder and runs it through the dataset sources
(`pipelines.get_source(...).pairs()` + iterating `pipelines.make_dataset`), `reseg verify-dataset`,
`reseg evaluate`, `reseg predict`, `reseg export`, and the Python prediction / training APIs.
CLI runs are in-process (`reseg_tf.cli.main`) with an alarm as hang detector; cases marked
`contain` (huge image headers) run `python -m reseg_tf.cli` in a subprocess with a timeout, so a
memory blow-up or a hang cannot take the drill down.

Each run is classified:

- handled: a clear error (exit code 1 or 2, or a documented exception type for the Python API)
  whose message names the file or flag, or, for cases that are documented conversions (gray,
  gray+alpha, RGBA -> RGB; 16-bit -> 8-bit), a successful run;
- crashed: a traceback, an undocumented exception type or exit code, a message that does not
  name the file, or bad input accepted silently;
- hung: no answer within the timeout.

Prints a table (case, target, outcome, message excerpt) and, as its last line, one JSON object
with `tried`, `handled`, `crashed`, `hung` and the list of failures.

    python benchmarks/bad_input_drill.py [--timeout 120] [--keep DIR]
"""
import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

# Run from a checkout: the repository root holds `pipelines` and `reseg_tf`.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import pipelines  # noqa: E402
import reseg_tf  # noqa: E402
from reseg_tf import cli  # noqa: E402
from reseg_tf.models import CAMVID_CLASSES  # noqa: E402

SIZE = 32
NON_UTF8_NAME = b"\xff\xfe"
# Exit codes of a clean refusal: 1 (some inputs skipped / dataset has bad files), 2 (user error).
ERROR_CODES = (1, 2)


class _Hang(Exception):
    """Raised by the alarm when an in-process run takes longer than the timeout."""


@dataclass
class Run:
    case: str
    target: str
    outcome: str
    message: str


@dataclass
class Case:
    """One bad input. `expect` is "error" (needs `needle` in the message) or "convert"."""

    name: str
    expect: str
    needle: str = ""
    contain: bool = False
    notes: list = field(default_factory=list)


# ----------------------------------------------------------------------------------- files


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png_bytes(width, height, color_type=2):
    """A valid-looking 8-bit PNG header (color type 2 RGB, 0 gray) claiming `width`x`height`,
    with one tiny IDAT: cheap to write, expensive for a reader that allocates the claimed size."""
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def _rgb(height=SIZE, width=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)


def _labels(height=SIZE, width=SIZE):
    labels = np.zeros((height, width), np.uint8)
    labels[:, : width // 2] = 3
    labels[:4, :4] = 11  # void
    return labels


def _png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


def _png16_rgb_bytes(height=SIZE, width=SIZE):
    import tensorflow as tf

    values = np.random.default_rng(1).integers(0, 65536, (height, width, 3)).astype(np.uint16)
    return tf.io.encode_png(values).numpy()


def _random_bytes(count=300, seed=3):
    return np.random.default_rng(seed).integers(0, 256, count).astype(np.uint8).tobytes()


def image_variants():
    """name -> (file name bytes, file content bytes or None for a directory, expect, needle)."""
    png = _png_bytes(_rgb())
    jpeg = _jpeg_bytes(_rgb())
    return {
        "image_truncated_png": (b"bad.png", png[: len(png) // 2], "error", "bad.png"),
        "image_truncated_jpg": (b"bad.jpg", jpeg[: len(jpeg) // 2], "error", "bad.jpg"),
        "image_zero_bytes": (b"bad.png", b"", "error", "bad.png"),
        "image_random_bytes_png": (b"bad.png", _random_bytes(), "error", "bad.png"),
        "image_random_bytes_jpg": (b"bad.jpg", _random_bytes(seed=4), "error", "bad.jpg"),
        "image_gray_1ch": (b"bad.png", _png_bytes(_rgb()[..., 0]), "convert", ""),
        "image_gray_alpha_2ch": (b"bad.png", _png_bytes(np.stack([_rgb()[..., 0]] * 2, -1)), "convert", ""),
        "image_rgba_4ch": (b"bad.png", _png_bytes(np.concatenate([_rgb(), _rgb()[..., :1]], -1)), "convert", ""),
        "image_16bit_png": (b"bad.png", _png16_rgb_bytes(), "convert", ""),
        "image_huge_header_20000x20000": (b"bad.png", huge_png_bytes(20000, 20000), "error", "bad.png"),
        "image_non_utf8_name": (NON_UTF8_NAME + b".png", png, "error", "UTF-8"),
        "image_path_is_directory": (b"bad.png", None, "error", "bad.png"),
    }


def _write(path, content):
    path = os.fsencode(path)
    if content is None:
        os.makedirs(path)
    else:
        with open(path, "wb") as handle:
            handle.write(content)


def write_camvid(root, bad=None):
    """A CamVid-layout folder (train/ trainannot/ val/ valannot/, 2 good pairs each) plus, in
    val, the bad pair `bad = (image name, image bytes, mask name, mask bytes)`."""
    for split in ("train", "val"):
        os.makedirs(root / split), os.makedirs(root / f"{split}annot")
        for index in range(2):
            (root / split / f"good{index}.png").write_bytes(_png_bytes(_rgb(seed=index)))
            (root / f"{split}annot" / f"good{index}.png").write_bytes(_png_bytes(_labels()))
    if bad:
        image_name, image_bytes, mask_name, mask_bytes = bad
        _write(os.fsencode(root / "val") + b"/" + image_name, image_bytes)
        if mask_name is not None:
            _write(os.fsencode(root / "valannot") + b"/" + mask_name, mask_bytes)
    return root


def dataset_cases():
    """name -> (bad pair for `write_camvid`, Case)."""
    good_mask = _png_bytes(_labels())
    cases = {}
    for name, (file_name, content, expect, needle) in image_variants().items():
        mask_name = os.path.splitext(file_name)[0] + b".png"
        if name == "image_huge_header_20000x20000":
            mask = huge_png_bytes(20000, 20000, color_type=0)  # a matching mask: only the size is wrong
        else:
            mask = good_mask
        cases[name] = ((file_name, content, mask_name, mask), Case(name, expect, needle,
                                                                   contain="huge" in name))
    out_of_range = _labels()
    out_of_range[10:12, 10:12] = 200
    wide = _png_bytes(_rgb(SIZE, SIZE + 8))
    cases["mask_out_of_range_values"] = ((b"bad.png", _png_bytes(_rgb()), b"bad.png", _png_bytes(out_of_range)),
                                         Case("mask_out_of_range_values", "error", "bad.png"))
    cases["mask_rgb_3ch"] = ((b"bad.png", _png_bytes(_rgb()), b"bad.png", _png_bytes(_rgb())),
                             Case("mask_rgb_3ch", "error", "bad.png"))
    cases["mask_16bit"] = ((b"bad.png", _png_bytes(_rgb()), b"bad.png",
                            _png_bytes(_labels().astype(np.uint16))), Case("mask_16bit", "error", "bad.png"))
    cases["mask_zero_bytes"] = ((b"bad.png", _png_bytes(_rgb()), b"bad.png", b""),
                                Case("mask_zero_bytes", "error", "bad.png"))
    cases["image_mask_size_mismatch"] = ((b"bad.png", wide, b"bad.png", good_mask),
                                         Case("image_mask_size_mismatch", "error", "bad.png"))
    cases["image_without_mask"] = ((b"bad.png", _png_bytes(_rgb()), None, None),
                                   Case("image_without_mask", "error", "bad"))
    return cases


def tiny_reseg_model():
    config = reseg_tf.ReSegConfig(num_classes=len(CAMVID_CLASSES), class_names=CAMVID_CLASSES, front_end="none",
                                  renet=((4, (2, 2)),), upsampling=((4, (2, 2)),))
    return reseg_tf.build_model(config, input_shape=(None, None, 3), name="tiny")


def write_models(folder):
    """The good model and every bad `.keras` case: name -> (path, Case)."""
    folder.mkdir()
    good = folder / "good.keras"
    tiny_reseg_model().save(good)
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="dense")
    dense.save(folder / "not_reseg.keras")
    lambda_model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Lambda(lambda x: x * 2)])
    lambda_model.save(folder / "lambda.keras")
    (folder / "random_bytes.keras").write_bytes(_random_bytes(2000))
    (folder / "zero_bytes.keras").write_bytes(b"")
    good_bytes = good.read_bytes()
    (folder / "truncated.keras").write_bytes(good_bytes[: len(good_bytes) // 2])
    (folder / "directory.keras").mkdir()
    return good, {
        "model_not_reseg": (folder / "not_reseg.keras", Case("model_not_reseg", "error", "not_reseg.keras")),
        "model_lambda_layer": (folder / "lambda.keras", Case("model_lambda_layer", "error", "Lambda")),
        "model_random_bytes": (folder / "random_bytes.keras", Case("model_random_bytes", "error", "random_bytes.keras")),
        "model_zero_bytes": (folder / "zero_bytes.keras", Case("model_zero_bytes", "error", "zero_bytes.keras")),
        "model_truncated": (folder / "truncated.keras", Case("model_truncated", "error", "truncated.keras")),
        "model_is_directory": (folder / "directory.keras", Case("model_is_directory", "error", "directory.keras")),
        "model_missing": (folder / "missing.keras", Case("model_missing", "error", "missing.keras")),
    }


# ------------------------------------------------------------------------------- running


def _excerpt(text, limit=100):
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)  # TF's `{{function_node ...}}` prefix
    if "assertion failed:" in text:  # a tf.data check: its message is the useful part
        text = text[text.index("assertion failed:"):]
    # Leave out TensorFlow's start-up log lines of subprocess runs.
    lines = [line.strip() for line in text.strip().splitlines()
             if line.strip() and not re.match(r"^([IWE]\d{4} |WARNING: All log messages)", line.strip())]
    # The error line, not a progress bar or the list header that precedes it.
    picked = next((line for line in reversed(lines) if "error" in line.lower() or "skipped" in line), None)
    line = picked or (lines[-1] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _classify(case, code, output):
    """Outcome of a CLI run from its exit code and output."""
    if "Traceback (most recent call last)" in output:
        return "crashed", _excerpt(output)
    if case.expect == "convert":
        return ("handled", "converted: " + _excerpt(output)) if code == 0 else ("crashed", _excerpt(output))
    if code == 0:
        return "crashed", "accepted silently: " + _excerpt(output)
    if code not in ERROR_CODES:
        return "crashed", f"exit code {code}: {_excerpt(output)}"
    if case.needle.lower() not in output.lower():
        return "crashed", f"message does not name {case.needle!r}: {_excerpt(output)}"
    return "handled", _excerpt(output)


@contextlib.contextmanager
def _alarm(seconds):
    def on_alarm(signum, frame):
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(seconds))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(case, argv, timeout):
    """Runs `reseg ARGV`: in-process, or in a subprocess for `case.contain`."""
    if case.contain:
        command = [sys.executable, "-m", "reseg_tf.cli", *(os.fsencode(str(arg) if isinstance(arg, int) else arg)
                                                             for arg in argv)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return "hung", f"no exit within {timeout} s"
        output = (done.stdout + done.stderr).decode("utf-8", "backslashreplace")
        if done.returncode < 0:
            return "crashed", f"killed by signal {-done.returncode}: {_excerpt(output)}"
        return _classify(case, done.returncode, output)
    stream = io.StringIO()
    try:
        with _alarm(timeout), contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            code = cli.main([str(arg) if isinstance(arg, int) else os.fsdecode(arg) for arg in argv])
    except _Hang:
        return "hung", f"no exit within {timeout} s"
    except SystemExit as exit_:  # argparse refusing a flag
        code = exit_.code
    except BaseException as error:  # noqa: BLE001 - any escaping exception is a crash to report
        first_line = (str(error).strip().splitlines() or [""])[0]
        return "crashed", f"{type(error).__name__}: {first_line}"[:100]
    return _classify(case, code, stream.getvalue())


def run_api(case, function, timeout, expected_errors=(ValueError, FileNotFoundError)):
    """Runs a Python API call; a documented exception naming `case.needle` is handled."""
    try:
        with _alarm(timeout), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = function()
    except _Hang:
        return "hung", f"no answer within {timeout} s"
    except expected_errors as error:
        message = (str(error).strip().splitlines() or [""])
        text = " | ".join(message)
        if case.expect == "convert":
            return "crashed", f"{type(error).__name__}: {message[0]}"[:100]
        if case.needle.lower() not in text.lower():
            return "crashed", f"message does not name {case.needle!r}: {message[0]}"[:100]
        return "handled", f"{type(error).__name__}: {_excerpt(text, 90)}"
    except BaseException as error:  # noqa: BLE001
        first_line = (str(error).strip().splitlines() or [""])[0]
        return "crashed", f"{type(error).__name__}: {first_line}"[:100]
    if case.expect == "convert":
        return "handled", f"converted: {result}"
    return "crashed", f"accepted silently: {result}"


def _iterate_source(data_dir):
    """The dataset-source target: list the pairs, then decode every example of val."""
    source = pipelines.get_source("camvid", str(data_dir))
    source.pairs("val")
    shapes = [tuple(images.shape[1:]) for images, _ in
              pipelines.make_dataset(source, "val", batch_size=1, cache=False, shuffle=False)]
    return f"{len(shapes)} examples, image shapes {sorted(set(shapes))}"


def drill(work, timeout=120):
    """Runs every case under the folder `work`; returns the list of `Run`s."""
    runs = []

    def record(case, target, outcome_message):
        runs.append(Run(case.name, target, *outcome_message))

    good_model, model_cases = write_models(work / "models")
    predict_out = work / "predicted"

    # Datasets: sources, verify-dataset, evaluate; the bad image alone: predict, export.
    for name, (bad, case) in dataset_cases().items():
        data_dir = write_camvid(work / "datasets" / name, bad)
        record(case, "source", run_api(case, lambda: _iterate_source(data_dir), timeout,
                                       (ValueError, FileNotFoundError, pipelines_errors())))
        record(case, "verify-dataset", run_cli(case, ["verify-dataset", "--data-dir", data_dir], timeout))
        record(case, "evaluate", run_cli(case, ["evaluate", "--model", good_model, "--data-dir", data_dir], timeout))
        if not name.startswith("image_") or name in ("image_without_mask", "image_mask_size_mismatch"):
            continue  # the image alone is fine
        image_path = os.fsencode(data_dir / "val") + b"/" + bad[0]
        record(case, "predict", run_cli(case, ["predict", "--model", good_model, image_path,
                                               "--output", predict_out / name], timeout))
        representative = work / "representative" / name
        representative.mkdir(parents=True)
        _write(os.fsencode(representative) + b"/" + bad[0], bad[1])
        export_case = case
        if name == "image_path_is_directory":  # a folder without images: refused naming the folder
            export_case = Case(name, "error", "representative")
        record(case, "export", run_cli(export_case, [
            "export", "--model", good_model, "--output", work / "exports" / name, "--tflite", "none",
            "--image-size", SIZE, SIZE, "--representative-data", representative], timeout)
            if export_case.expect == "error" else _export_loads_images(export_case, representative, timeout))

    # Model files: evaluate, predict, export.
    sample_image = work / "sample.png"
    sample_image.write_bytes(_png_bytes(_rgb()))
    camvid = write_camvid(work / "datasets" / "good")
    for name, (path, case) in model_cases.items():
        record(case, "evaluate", run_cli(case, ["evaluate", "--model", path, "--data-dir", camvid], timeout))
        record(case, "predict", run_cli(case, ["predict", "--model", path, sample_image,
                                               "--output", predict_out / name], timeout))
        record(case, "export", run_cli(case, ["export", "--model", path, "--output", work / "exports" / name,
                                              "--tflite", "none", "--no-verify", "--image-size", SIZE, SIZE],
                                       timeout))
    unsafe = Case("model_lambda_layer_unsafe_mode_enabled", "error", "Lambda")
    record(unsafe, "load_reseg_model", run_api(unsafe, lambda: _load_with_unsafe_enabled(model_cases), timeout))

    # A file or folder where the other is expected (besides --model DIR and image-is-folder).
    occupied = work / "occupied.txt"
    occupied.write_text("a user's file\n")
    case = Case("predict_output_is_a_file", "error", "occupied.txt")
    record(case, "predict", run_cli(case, ["predict", "--model", good_model, sample_image, "--output", occupied], timeout))
    case = Case("export_output_is_a_file", "error", "occupied.txt")
    record(case, "export", run_cli(case, ["export", "--model", good_model, "--output", occupied,
                                          "--tflite", "none", "--no-verify", "--image-size", SIZE, SIZE], timeout))
    case = Case("evaluate_json_is_a_directory", "error", "json_dir")
    (work / "json_dir").mkdir()
    record(case, "evaluate", run_cli(case, ["evaluate", "--model", good_model, "--data-dir", camvid,
                                            "--json", work / "json_dir"], timeout))
    case = Case("camvid_list_file_not_utf8", "error", "val.txt")
    listed = write_camvid(work / "datasets" / "list_not_utf8")
    (listed / "train.txt").write_text("train/good0.png trainannot/good0.png\n")
    (listed / "val.txt").write_bytes(b"val/good0.png valannot/good0.png\nval/\xff.png valannot/\xff.png\n")
    record(case, "source", run_api(case, lambda: _iterate_source(listed), timeout))
    record(case, "verify-dataset", run_cli(case, ["verify-dataset", "--data-dir", listed], timeout))
    case = Case("data_dir_is_a_file", "error", "occupied.txt")
    record(case, "verify-dataset", run_cli(case, ["verify-dataset", "--data-dir", occupied], timeout))
    record(case, "evaluate", run_cli(case, ["evaluate", "--model", good_model, "--data-dir", occupied], timeout))
    if occupied.read_text() != "a user's file\n":
        runs.append(Run("occupied_file_untouched", "all", "crashed", "a user's file was overwritten"))

    # NaN / inf: images cannot hold them, arrays and .npy files can.
    nan_npy = work / "nan_image.npy"
    np.save(nan_npy, np.full((SIZE, SIZE, 3), np.nan, np.float32))
    case = Case("nan_npy_file", "error", "nan_image.npy")
    record(case, "predict", run_cli(case, ["predict", "--model", good_model, nan_npy, "--output", predict_out / "npy"],
                                    timeout))
    model = reseg_tf.evaluation.load_reseg_model(good_model)
    for value in ("nan", "inf"):
        case = Case(f"{value}_array_input", "error", "NaN or infinite")
        images = np.full((1, SIZE, SIZE, 3), float(value), np.float32)
        record(case, "Predictor", run_api(case, lambda: reseg_tf.evaluation.Predictor(model).classes(images), timeout))
    case = Case("nan_array_input_training", "error", "NaN")
    record(case, "model.fit", run_api(case, _fit_on_nan_images, timeout, (reseg_tf.training.TrainingDivergedError,)))
    return runs


def pipelines_errors():
    import tensorflow as tf

    # Decode-time checks inside tf.data raise InvalidArgumentError with the file in the message.
    return tf.errors.InvalidArgumentError


def _export_loads_images(case, representative, timeout):
    """Export's image loading (calibration / verification) of a documented conversion."""
    from reseg_tf.export import find_images, load_images

    return run_api(case, lambda: f"{load_images(find_images(representative), (SIZE, SIZE)).shape} uint8", timeout)


def _load_with_unsafe_enabled(model_cases):
    """Some other code of the process turned Keras's safe mode off: our loader still refuses."""
    from keras.src.saving import serialization_lib

    from reseg_tf.model_io import load_reseg_model

    previous = serialization_lib.in_safe_mode()
    keras.config.enable_unsafe_deserialization()
    try:
        return load_reseg_model(model_cases["model_lambda_layer"][0])
    finally:  # restore the process-wide setting for whatever runs next (e.g. other tests)
        serialization_lib.global_state.set_global_attribute("safe_mode_saving", previous)


def _fit_on_nan_images():
    from reseg_tf.losses import VoidAwareCrossEntropy
    from reseg_tf.training import StopOnNonFiniteLoss

    model = tiny_reseg_model()
    model.compile("sgd", VoidAwareCrossEntropy(len(CAMVID_CLASSES)))
    images = np.full((2, SIZE, SIZE, 3), np.nan, np.float32)
    labels = np.zeros((2, SIZE, SIZE), np.int32)
    model.fit(images, labels, epochs=1, batch_size=2, callbacks=[StopOnNonFiniteLoss()], verbose=0)
    return "trained on NaN images"


def format_table(runs):
    widths = (max(len(r.case) for r in runs), max(len(r.target) for r in runs), 7)
    lines = [f"{'case':{widths[0]}}  {'target':{widths[1]}}  {'outcome':{widths[2]}}  message"]
    lines += [f"{r.case:{widths[0]}}  {r.target:{widths[1]}}  {r.outcome:{widths[2]}}  {r.message}" for r in runs]
    return "\n".join(lines)


def summarize(runs, seconds):
    counts = {outcome: sum(r.outcome == outcome for r in runs) for outcome in ("handled", "crashed", "hung")}
    return {"tried": len(runs), **counts, "cases": len({r.case for r in runs}), "seconds": round(seconds, 1),
            "failures": [f"{r.case} / {r.target}: {r.message}" for r in runs if r.outcome != "handled"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=int, default=120, help="seconds before a run counts as hung")
    parser.add_argument("--keep", default=None, help="build the cases in this folder and keep it")
    args = parser.parse_args(argv)
    start = time.monotonic()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bad_input_drill-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        runs = drill(work, args.timeout)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs, time.monotonic() - start)
    print(format_table(runs))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["handled"] == result["tried"] else 1)
