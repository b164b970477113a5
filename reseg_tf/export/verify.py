"""Verification: every exported artifact must answer like `reseg predict`.

The reference is `reseg_tf.inference.Predictor`'s probabilities for each image at its own size
(what `reseg predict` computes). The SavedModel is reloaded with `tf.saved_model.load` and
`saved_model_cli` and each signature gets the same images; a TFLite model goes through the
same contract (`tflite.tflite_image_probabilities`). For a model that accepts any size, the
TFLite reference is `reseg predict --image-size` at the TFLite models' static size.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reseg_tf.export.errors import ExportVerificationError, clean_stderr
from reseg_tf.export.saved_model import saved_model_op_types
from reseg_tf.export.signatures import (BYTES_SIGNATURE, DEFAULT_SIGNATURE, MASK_SIGNATURE, OUTPUT_KEYS, SERVING_SIGNATURES,
                                        SIGNATURES, ServingLimits)
from reseg_tf.export.tflite import load_tflite, tflite_image_probabilities

# Verification bounds from the export spec.
FP32_MAX_PROB_DIFF = 1e-4
MIN_AGREEMENT = {"fp16": 0.995, "dynamic": 0.97, "int8": 0.97}
# ONNX, and TFLite models taking camera frames (`--tflite-input-size`), resize to the working
# size by matrix products (no antialiased-resize op): a pixel in a few thousand can round one
# value apart, so they are held to an agreement bound instead of the fp32 probability bound.
ONNX_MIN_AGREEMENT = RESIZED_MIN_AGREEMENT = 0.995


def reference_probabilities(model, images, image_size=None, tta="none"):
    """float32 `(1, H, W, C)` per image, at its own size: what `reseg predict` computes.

    `image_size`: the size to run the model at, as `reseg predict --image-size` (default its
    fixed input size; a model that accepts any size runs at each image's size). `tta`: as
    `reseg predict --tta`.
    """
    from reseg_tf.inference import Predictor

    predictor = Predictor(model, image_size, tta=tta)
    return [predictor.probabilities(np.asarray(image)[np.newaxis]).numpy() for image in images]


def _timed(function, inputs):
    """Runs `function` on each input (after one warm-up call); returns outputs and s/input."""
    function(inputs[0])
    start = time.perf_counter()
    outputs = [function(x) for x in inputs]
    return outputs, (time.perf_counter() - start) / len(inputs)


def _agreement(probabilities, reference):
    """Fraction of all pixels whose argmax class matches the reference's."""
    same = sum(int(np.sum(np.argmax(p, -1) == np.argmax(r, -1))) for p, r in zip(probabilities, reference))
    return same / sum(int(np.prod(r.shape[:-1])) for r in reference)


def _mask_agreement(masks, reference):
    """Fraction of all pixels whose class in the `(1, H, W)` masks is the reference's argmax."""
    same = sum(int(np.sum(mask == np.argmax(r, -1))) for mask, r in zip(masks, reference))
    return same / sum(int(np.prod(r.shape[:-1])) for r in reference)


def _max_diff(name, probabilities, reference, problems):
    """Worst |probability difference| over the images; None (and a problem) for a wrong shape."""
    for answer, expected in zip(probabilities, reference):
        if answer.shape != expected.shape:
            problems.append(f"{name} answered {tuple(answer.shape)} where predict gives {tuple(expected.shape)}")
            return None
    return max(float(np.abs(p - r).max()) for p, r in zip(probabilities, reference))


def _per_image_from_batches(signature, images, to_input, max_batch, output="probabilities"):
    """Per-image `(1, ...)` `output`s of a signature called once per group of at most
    `max_batch` same-size images (one request holds one size)."""
    groups = {}
    for index, image in enumerate(images):
        groups.setdefault(image.shape[:2], []).append(index)
    answers = [None] * len(images)
    for group in groups.values():
        for start in range(0, len(group), max_batch):
            indices = group[start:start + max_batch]
            batch = signature(**to_input([images[i] for i in indices]))[output].numpy()
            for position, index in enumerate(indices):
                answers[index] = batch[position:position + 1]
    return answers


def minimal_png(width, height):
    """A PNG file whose header claims `width` x `height` RGB pixels, with almost no pixel data:
    what a decompression bomb looks like to a header check."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def check_bounds(loaded, limits, problems):
    """Sends every signature a request one pixel and one image over `limits`; each must be
    refused with InvalidArgumentError naming the bound and the size sent. Returns the refusals
    seen, one line each."""
    import tensorflow as tf

    over_pixels = limits.max_image_pixels + 1  # a 1-row image, cheap to build
    png = tf.constant([minimal_png(over_pixels, 1)])
    one_pixel_png = tf.io.encode_png(np.zeros((1, 1, 3), np.uint8))
    seen = []
    for signature in SERVING_SIGNATURES:
        if signature.dtype == "string":
            requests = {"pixels": png, "batch": tf.stack([one_pixel_png] * (limits.max_batch + 1))}
        else:
            requests = {"pixels": tf.zeros((1, 1, over_pixels, 3), signature.dtype),
                        "batch": tf.zeros((limits.max_batch + 1, 1, 1, 3), signature.dtype)}
        expected = {"pixels": ("max_image_pixels", f"{over_pixels}x1"),
                    "batch": ("max_batch", f"holds {limits.max_batch + 1} images")}
        for bound, request in requests.items():
            try:
                loaded.signatures[signature.name](**{signature.input_name: request})
            except tf.errors.InvalidArgumentError as error:
                if all(text in error.message for text in expected[bound]):
                    seen.append(f"{signature.name}: {expected[bound][1]} refused ({expected[bound][0]})")
                    continue
                problems.append(f"{signature.name} refused a request over {expected[bound][0]} without naming "
                                f"it and the size sent: {error.message.splitlines()[0][:200]}")
            else:
                problems.append(f"{signature.name} answered a request over {expected[bound][0]}")
    return seen


def _signature_input(signature, images):
    """The batch tensor `signature` takes for same-size uint8 RGB `images`."""
    import tensorflow as tf

    if signature.dtype == "string":
        return tf.stack([tf.io.encode_png(image) for image in images])
    return tf.constant(np.stack(images), signature.dtype)


def _saved_model_cli(*args, timeout=300):
    executable = Path(sys.executable).with_name("saved_model_cli")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m",
                                                             "tensorflow.python.tools.saved_model_cli"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise ExportVerificationError(
            f"saved_model_cli {args[0]} failed (exit {done.returncode}): {clean_stderr(done.stderr)}"
        )
    return done.stdout


def verify_saved_model(saved_model_dir, model, images, reference=None, limits=None):
    """Checks a served SavedModel against `reseg predict` with `tf.saved_model.load` and
    `saved_model_cli`.

    Args:
        saved_model_dir: the SavedModel version folder.
        model: the Keras model it was exported from.
        images: uint8 RGB `(H, W, 3)` arrays, each at its own size.
        reference: `reference_probabilities(model, images)`, computed if not given.
        limits: the `signatures.ServingLimits` it was exported with (default: the defaults).

    Returns:
        A report row (dict) with the worst probability difference over all signatures
        (`signatures.SERVING_SIGNATURES`, each fed the same images in its own input type), the
        argmax agreement and latency per image of the default signature, whether the PNG masks
        of `serving_mask` are the `classes` of `serving_bytes`, the refusals of requests just
        over the limits (`check_bounds`), and the graph's op check.
    """
    import tensorflow as tf

    saved_model_dir = Path(saved_model_dir)
    reference = reference_probabilities(model, images) if reference is None else reference
    limits = limits or ServingLimits()
    problems = []
    too_large = [f"{image.shape[1]}x{image.shape[0]}" for image in images
                 if image.shape[0] * image.shape[1] > limits.max_image_pixels]
    if too_large:
        raise ExportVerificationError(
            f"verification images of {', '.join(too_large)} pixels are larger than max_image_pixels "
            f"{limits.max_image_pixels} (--max-image-pixels): the SavedModel refuses them; verify on "
            "smaller images (--representative-data) or raise the limit.")
    cudnn_ops = sorted(op for op in saved_model_op_types(saved_model_dir) if "Cudnn" in op)
    if cudnn_ops:
        problems.append(f"graph contains GPU-only ops {cudnn_ops}")

    loaded = tf.saved_model.load(str(saved_model_dir))
    missing = [name for name in SIGNATURES if name not in loaded.signatures]
    if missing:
        raise ExportVerificationError(f"SavedModel {str(saved_model_dir)!r} lacks signatures {missing}.")
    default = loaded.signatures[DEFAULT_SIGNATURE.name]
    outputs, latency = _timed(
        lambda x: default(**{DEFAULT_SIGNATURE.input_name: tf.constant(x[np.newaxis], tf.float32)}), images)
    probabilities = [o["probabilities"].numpy() for o in outputs]
    if not all(np.array_equal(o["classes"].numpy(), np.argmax(p, -1)) for o, p in zip(outputs, probabilities)):
        problems.append(f"{DEFAULT_SIGNATURE.name} `classes` is not the argmax of `probabilities`")
    diffs = {DEFAULT_SIGNATURE.name: _max_diff(DEFAULT_SIGNATURE.name, probabilities, reference, problems)}
    for signature in SERVING_SIGNATURES:
        if signature not in (DEFAULT_SIGNATURE, MASK_SIGNATURE):
            answers = _per_image_from_batches(loaded.signatures[signature.name], images,
                                              lambda batch, s=signature: {s.input_name: _signature_input(s, batch)},
                                              limits.max_batch)
            diffs[signature.name] = _max_diff(signature.name, answers, reference, problems)
    encode = lambda batch: {MASK_SIGNATURE.input_name: _signature_input(MASK_SIGNATURE, batch)}  # noqa: E731
    classes = _per_image_from_batches(loaded.signatures[BYTES_SIGNATURE.name], images, encode, limits.max_batch,
                                      "classes")
    masks = [tf.io.decode_png(png[0]).numpy()[np.newaxis, ..., 0] for png in _per_image_from_batches(
        loaded.signatures[MASK_SIGNATURE.name], images, encode, limits.max_batch, MASK_SIGNATURE.outputs[0])]
    if not all(np.array_equal(mask, expected) for mask, expected in zip(masks, classes)):
        problems.append(f"{MASK_SIGNATURE.name} masks differ from the `classes` of {BYTES_SIGNATURE.name}")
    refusals = check_bounds(loaded, limits, problems)

    shown = _saved_model_cli("show", "--dir", str(saved_model_dir), "--all")
    for name in (*SIGNATURES, *{output for signature in SERVING_SIGNATURES for output in signature.outputs}):
        if name not in shown:
            problems.append(f"`saved_model_cli show --all` does not list {name!r}")
    with tempfile.TemporaryDirectory(prefix="reseg-verify-") as scratch:
        np.save(Path(scratch) / "images.npy", images[0][np.newaxis].astype(np.float32))
        _saved_model_cli("run", "--dir", str(saved_model_dir), "--tag_set", "serve",
                         "--signature_def", DEFAULT_SIGNATURE.name,
                         "--inputs", f"{DEFAULT_SIGNATURE.input_name}={Path(scratch) / 'images.npy'}",
                         "--outdir", str(Path(scratch) / "out"))
        cli_probabilities = np.load(Path(scratch) / "out" / "probabilities.npy")
    diffs["saved_model_cli_run"] = _max_diff("saved_model_cli run", [cli_probabilities], reference[:1], problems)

    max_diff = max((diff for diff in diffs.values() if diff is not None), default=None)
    if max_diff is not None and max_diff >= FP32_MAX_PROB_DIFF:
        problems.append(f"max |prob diff| {max_diff:.2e} >= {FP32_MAX_PROB_DIFF:g} ({diffs})")
    return {
        "artifact": "saved_model",
        "path": str(saved_model_dir),
        "size_bytes": sum(p.stat().st_size for p in saved_model_dir.rglob("*") if p.is_file()),
        "latency_ms": latency * 1000,
        "max_prob_diff": max_diff,
        "prob_diff_by_signature": diffs,
        "agreement": _agreement(probabilities, reference) if diffs[DEFAULT_SIGNATURE.name] is not None else None,
        "mask_agreement": _mask_agreement(masks, reference) if diffs[DEFAULT_SIGNATURE.name] is not None else None,
        "serving_limits": limits.as_dict(),
        "refusals_over_limits": refusals,
        "passed": not problems,
        "problems": problems,
    }


def verify_tflite(path, variant, images, reference, image_size, num_threads=None, resizes_inside=False):
    """Runs a `.tflite` with `ai_edge_litert` through the contract and compares it with `reference`.

    Args:
        path: the `.tflite` file.
        variant: its variant (one of `tflite.TFLITE_VARIANTS`), which sets the bounds.
        images: uint8 RGB `(H, W, 3)` arrays, each at its own size.
        reference: `reference_probabilities(model, images, image_size)`.
        image_size: the `(h, w)` the model must take.
        num_threads: interpreter threads for the latency (default: all CPUs, as Keras).
        resizes_inside: the model resizes its input to the working size itself (matrix products):
            `fp32` is then held to `RESIZED_MIN_AGREEMENT`, not to `FP32_MAX_PROB_DIFF`.

    Returns:
        A report row (dict); latency is per image, resizes included.
    """
    num_threads = num_threads or os.cpu_count()
    interpreter = load_tflite(path, num_threads=num_threads)
    input_shape = tuple(int(v) for v in interpreter.get_input_details()[0]["shape"])
    expected_shape = (1, *image_size, 3)
    problems = []
    if input_shape != expected_shape:
        problems.append(f"input shape {input_shape} != {expected_shape}")
        probabilities, latency = None, float("nan")
    else:
        probabilities, latency = _timed(tflite_image_probabilities(interpreter), images)
    row = {
        "artifact": f"tflite_{variant}",
        "path": str(path),
        "size_bytes": Path(path).stat().st_size,
        "latency_ms": latency * 1000,
        "max_prob_diff": None,
        "agreement": None,
        "input_dtype": np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        "num_threads": num_threads,
    }
    if probabilities is not None:
        row["max_prob_diff"] = _max_diff(row["artifact"], probabilities, reference, problems)
    if row["max_prob_diff"] is not None:
        row["agreement"] = _agreement(probabilities, reference)
        if variant == "fp32" and resizes_inside:
            if row["agreement"] < RESIZED_MIN_AGREEMENT:
                problems.append(f"argmax agreement {row['agreement']:.2%} < {RESIZED_MIN_AGREEMENT:.1%}")
        elif variant == "fp32" and row["max_prob_diff"] >= FP32_MAX_PROB_DIFF:
            problems.append(f"max |prob diff| {row['max_prob_diff']:.2e} >= {FP32_MAX_PROB_DIFF:g}")
        if variant in MIN_AGREEMENT and row["agreement"] < MIN_AGREEMENT[variant]:
            problems.append(f"argmax agreement {row['agreement']:.2%} < {MIN_AGREEMENT[variant]:.1%}")
    row.update(passed=not problems, problems=problems)
    return row


def verify_onnx(path, images, reference):
    """Runs an exported `.onnx` in onnxruntime on `images` (any size) and compares it with
    `reference` (`reference_probabilities` with the export's `tta`); returns a report row."""
    from reseg_tf.export.onnx import onnx_probabilities, onnx_session

    session = onnx_session(path)
    probabilities, latency = _timed(lambda image: onnx_probabilities(session, image), images)
    problems = []
    row = {"artifact": "onnx", "path": str(path), "size_bytes": Path(path).stat().st_size,
           "latency_ms": latency * 1000, "max_prob_diff": _max_diff("onnx", probabilities, reference, problems),
           "agreement": None}
    if row["max_prob_diff"] is not None:
        row["agreement"] = _agreement(probabilities, reference)
        if row["agreement"] < ONNX_MIN_AGREEMENT:
            problems.append(f"argmax agreement {row['agreement']:.2%} < {ONNX_MIN_AGREEMENT:.1%}")
    row.update(passed=not problems, problems=problems)
    return row


def format_report_table(rows):
    """A plain-text table of size, latency per image, max prob diff and argmax agreement."""
    lines = [f"{'artifact':<16} {'size MB':>8} {'ms/image':>9} {'max|dp|':>9} {'agree':>8}  check"]
    for row in rows:
        diff = "-" if row.get("max_prob_diff") is None else f"{row['max_prob_diff']:.1e}"
        agreement = "-" if row.get("agreement") is None else f"{row['agreement']:.2%}"
        check = "ok" if row["passed"] else "FAIL: " + "; ".join(row["problems"])
        lines.append(f"{row['artifact']:<16} {row['size_bytes'] / 2**20:>8.2f} {row['latency_ms']:>9.1f} "
                     f"{diff:>9} {agreement:>8}  {check}")
    return "\n".join(lines)
