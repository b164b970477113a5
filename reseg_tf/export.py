"""Export a trained ReSeg model for TF Serving (SavedModel) and TFLite, and verify the result.

Layout written by `export_model` (default `output_dir`: `saved_models/<model name>/`):

```
DIR/saved_model/<version>/        TF Serving model base path is DIR/saved_model
DIR/tflite/<version>/<name>_<variant>.tflite
DIR/serving.md                    docker command + REST examples for the latest export
DIR/export_report.json            sizes, latencies and agreement of the latest export
```

SavedModel signatures (see `serving.md` for REST examples):

- `serving_default`: `images` float32 `(B, H, W, 3)`, raw 0..255 RGB.
- `serving_uint8`: `images` uint8 `(B, H, W, 3)`; the same model, for clients that send bytes-
  sized pixels (TF Serving casts JSON numbers to the signature's dtype).
- `serving_bytes`: `image_bytes` string `(B,)` of encoded JPEG/PNG/BMP/GIF files. For a model
  that accepts any size, the outputs have the images' own size and all images of one request
  must share it (an error says so otherwise). For a fixed-size model, every image is resized
  (bilinear) to the model's size and the outputs have that size.

Every signature returns `probabilities` float32 `(B, H, W, num_classes)` and `classes` int32
`(B, H, W)`. `H`, `W` are `None` when the model accepts any size.

TFLite models have a static `(1, H, W, 3)` input and builtin ops only (no Flex), and are
converted from a twin of the model whose RNNs are unrolled (same weights; see
`write_static_saved_model` for why):
`fp32`, `fp16` (float16 weights), `dynamic` (dynamic-range int8 weights) take float32 raw
pixels; `int8` (full integer, calibrated on real images) takes uint8 pixels quantized with the
input tensor's scale / zero point (about 1.0 / 0, i.e. the raw pixels) and returns float32
probabilities. The TFLite converter crashes (SIGSEGV) quantizing a GRU while-loop, which is one
reason for unrolling; `int8` is also converted in a subprocess so that a crash becomes an error
message.

Every SavedModel is traced from a twin (same weights) whose Keras RNNs have `use_cudnn=False`:
Keras bakes the GPU-only `CudnnRNNV3` op into the graph whenever a GPU is visible, even under
`tf.device("/CPU:0")`, and such a SavedModel fails on CPU serving and in the TFLite converter.
"""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from reseg_tf.model_io import load_reseg_model

TFLITE_VARIANTS = ("fp32", "fp16", "dynamic", "int8")
SIGNATURES = ("serving_default", "serving_uint8", "serving_bytes")
OUTPUT_KEYS = ("probabilities", "classes")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
# Sub-folders searched for images when a representative-data folder has none at its top level
# (CamVid's SegNet layout keeps images in train/ val/ test/ and labels in *annot/).
IMAGE_SUBDIRS = ("train", "val", "test", "images", "rgb", "jpg")
# Verification bounds from the export spec.
FP32_MAX_PROB_DIFF = 1e-4
MIN_AGREEMENT = {"fp16": 0.995, "dynamic": 0.97, "int8": 0.97}
DEFAULT_EXPORT_ROOT = "saved_models"


class ExportVerificationError(ValueError):
    """An exported artifact does not reproduce the Keras model within the documented bounds."""


class TFLiteConversionError(RuntimeError):
    """The TFLite converter failed or crashed."""


@dataclasses.dataclass
class ExportResult:
    """What `export_model` wrote and measured.

    Attributes:
        output_dir: the export folder.
        version: the SavedModel version number written.
        saved_model_dir: `output_dir/saved_model/<version>`.
        tflite_paths: `{variant: path}` of the `.tflite` files.
        image_size: `(H, W)` of the TFLite models and of the verification images.
        report: the verification report (also in `export_report.json`), or `None` without
            verification.
    """

    output_dir: Path
    version: int
    saved_model_dir: Path
    tflite_paths: dict
    image_size: tuple
    report: dict = None


# --------------------------------------------------------------------------- model + arguments


def _model_image_shape(model):
    height, width = model.input_shape[1:3]
    return height, width


def resolve_image_size(model, image_size=None):
    """Returns the static `(H, W)` used for TFLite and verification.

    A fixed-size model only allows its own size. A model that accepts any size needs an
    `image_size`, or is exported at its preset's training size when its config is a preset's.
    """
    from reseg_tf.models import PRESETS, ReSegConfig, config_from_model

    config = config_from_model(model)
    fixed = _model_image_shape(model)
    if image_size is not None:
        try:
            height, width = (int(v) for v in image_size)
        except (TypeError, ValueError):
            raise ValueError(f"image size must be two ints (H, W), got {image_size!r}.") from None
        stride_h, stride_w = config.input_stride
        if height < stride_h or width < stride_w:
            raise ValueError(
                f"image size {height}x{width} is not allowed by model {model.name!r}: it must be at "
                f"least {stride_h}x{stride_w} (the model's total stride)."
            )
        for given, allowed, axis in ((height, fixed[0], "height"), (width, fixed[1], "width")):
            if allowed is not None and given != allowed:
                raise ValueError(
                    f"image size {height}x{width} is not allowed by model {model.name!r}, whose "
                    f"input {axis} is fixed at {allowed}; omit --image-size or rebuild the model "
                    "with input_shape=(None, None, 3)."
                )
        return height, width
    if None not in fixed:
        return tuple(fixed)
    for preset in PRESETS.values():
        if ReSegConfig(**preset["config"]) == config:
            return tuple(preset["image_size"])
    raise ValueError(
        f"model {model.name!r} accepts any image size; pass image_size=(H, W) (--image-size H W) "
        "for the static TFLite models and the verification images."
    )


def _parse_variants(tflite):
    if tflite is None:
        return ()
    if isinstance(tflite, str):
        tflite = [v for v in tflite.split(",") if v.strip()]
    variants = tuple(dict.fromkeys(v.strip().lower() for v in tflite))
    unknown = [v for v in variants if v not in TFLITE_VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLite variant(s) {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
    return variants


# ------------------------------------------------------------------------------ images


def find_images(directory):
    """Image files in `directory`, or in its train/ val/ ... sub-folders if it has none itself."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"representative-data folder {str(directory)!r} does not exist.")
    if not directory.is_dir():
        raise NotADirectoryError(f"representative data {str(directory)!r} is not a folder of images.")

    def images_in(folder):
        try:
            return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        except PermissionError:
            raise PermissionError(f"cannot read representative-data folder {str(folder)!r}.") from None

    files = images_in(directory)
    if not files:
        for name in IMAGE_SUBDIRS:
            if (directory / name).is_dir():
                files.extend(images_in(directory / name))
    if not files:
        raise ValueError(
            f"representative-data folder {str(directory)!r} has no images "
            f"({', '.join(IMAGE_EXTENSIONS)}) in it or in its {'/, '.join(IMAGE_SUBDIRS)}/ sub-folders."
        )
    return files


def load_images(files, image_size):
    """Decodes image files to a uint8 `(N, H, W, 3)` array, resized (bilinear) to `image_size`."""
    import tensorflow as tf

    from pipelines.files import BadFileError, inspect_image_file

    images = []
    for path in files:
        try:
            inspect_image_file(path)  # before decoding: a huge header would allocate gigabytes
        except BadFileError as error:
            raise ValueError(f"cannot read image {error}") from None
        try:
            image = tf.io.decode_image(Path(path).read_bytes(), channels=3, expand_animations=False)
        except (OSError, tf.errors.OpError) as error:
            message = getattr(error, "message", None) or str(error)
            raise ValueError(f"cannot read image {str(path)!r}: {message.splitlines()[0]}") from None
        resized = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
        images.append(np.clip(np.round(resized.numpy()), 0, 255).astype(np.uint8))
    return np.stack(images)


def _spread(files, count):
    """Up to `count` files spread evenly over the (sorted) list, so several scenes are covered."""
    if len(files) <= count:
        return list(files)
    picks = np.linspace(0, len(files) - 1, count).round().astype(int)
    return [files[i] for i in picks]


def _sample_data_dir():
    """The embedded CamVid sample of the `pipelines` package, or None while it does not exist."""
    try:
        from pipelines import sample_data_dir
    except ImportError:
        return None
    path = Path(sample_data_dir())
    return path if path.is_dir() else None


def _representative_files(representative_data, need_real_images):
    if representative_data is not None:
        return find_images(representative_data)
    sample = _sample_data_dir()
    if sample is None:
        if need_real_images:
            raise ValueError(
                "int8 TFLite needs real images to calibrate on: pass representative_data "
                "(--representative-data DIR); the embedded sample images are not available."
            )
        print("warning: no representative data and no embedded sample images; verifying on "
              "synthetic images, which says little about a trained model.", file=sys.stderr)
        return None
    print(f"warning: no --representative-data given; calibrating/verifying on the embedded sample "
          f"images in {sample}, which may not look like your data.", file=sys.stderr)
    return find_images(sample)


def _synthetic_images(count, image_size, seed=0):
    """Smooth random color fields: closer to photos than white noise."""
    import tensorflow as tf

    coarse = np.random.default_rng(seed).uniform(0, 255, (count, 4, 4, 3)).astype(np.float32)
    images = tf.image.resize(coarse, image_size, method="bilinear").numpy()
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- SavedModel


def _serving_functions(model):
    """The tf.functions behind the three signatures, for a model of `model`'s input shape."""
    import tensorflow as tf

    height, width = _model_image_shape(model)

    def outputs(images):
        probabilities = model(tf.cast(images, tf.float32), training=False)
        classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"probabilities": probabilities, "classes": classes}

    def decode(data):
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def decode_batch(image_bytes):
        if height is not None and width is not None:
            def decode_resized(data):
                resized = tf.image.resize(tf.cast(decode(data), tf.float32), (height, width))
                return tf.clip_by_value(tf.round(resized), 0.0, 255.0)

            return tf.map_fn(decode_resized, image_bytes,
                             fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))
        first_shape = tf.shape(decode(image_bytes[0]))

        def decode_same_size(data):
            image = decode(data)
            check = tf.debugging.assert_equal(
                tf.shape(image), first_shape,
                message="serving_bytes: all images of one request must have the same height and "
                "width (this model keeps each image's size); send differently sized images in "
                "separate requests",
            )
            with tf.control_dependencies([check]):
                return tf.identity(image)

        return tf.map_fn(decode_same_size, image_bytes,
                         fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

    image_shape = [None, height, width, 3]
    return {
        "serving_default": (outputs, [tf.TensorSpec(image_shape, tf.float32, name="images")]),
        "serving_uint8": (outputs, [tf.TensorSpec(image_shape, tf.uint8, name="images")]),
        "serving_bytes": (lambda image_bytes: outputs(decode_batch(image_bytes)),
                          [tf.TensorSpec([None], tf.string, name="image_bytes")]),
    }


def _write_archive(model, path, endpoints):
    """Writes `{name: (fn, input_signature)}` endpoints of `model` as a SavedModel at `path`."""
    import keras
    import tensorflow as tf

    # Variables and traced ops live on the CPU, so the SavedModel carries no GPU placement; the
    # GPU-only cuDNN GRU kernel is avoided by `export_twin` (Keras ignores the device scope).
    with tf.device("/CPU:0"):
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, (function, signature) in endpoints.items():
            archive.add_endpoint(name, function, input_signature=signature)
        archive.write_out(str(path), verbose=False)


def saved_model_op_types(saved_model_dir):
    """All op types in a SavedModel's graph, including those inside its functions."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def next_version(saved_model_root):
    """1 for a new TF Serving base path, else one more than the highest numeric version there."""
    root = Path(saved_model_root)
    versions = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    return max(versions, default=0) + 1


def _publish(temporary_dir, final_dir):
    """Renames a finished temp dir into place; never replaces an existing one."""
    if final_dir.exists():
        raise FileExistsError(f"{str(final_dir)!r} already exists; refusing to overwrite it.")
    os.rename(temporary_dir, final_dir)


def export_saved_model(model_or_path, saved_model_root, version=None):
    """Writes the TF Serving SavedModel at `saved_model_root/<version>` and returns that path.

    `version` defaults to the next free integer. The SavedModel is written to a hidden temp
    folder beside it (TF Serving ignores non-numeric names) and renamed into place, so a failed
    export never leaves a half-written version.
    """
    model = load_reseg_model(model_or_path)
    root = Path(saved_model_root)
    root.mkdir(parents=True, exist_ok=True)
    version = _check_version(root, version)
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-saved-model-", dir=root))
    try:
        twin, _ = export_twin(model)
        _write_archive(twin, temporary / "model", _serving_functions(twin))
        _publish(temporary / "model", root / str(version))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root / str(version)


def _check_version(root, version):
    if version is None:
        return next_version(root)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive int, got {version!r}.")
    if (root / str(version)).exists():
        raise FileExistsError(
            f"SavedModel version folder {str(root / str(version))!r} already exists; exports never "
            f"overwrite a version (the next free one is {next_version(root)})."
        )
    return version


# ---------------------------------------------------------------------------------- TFLite


def export_twin(model, input_shape=None, unroll_rnns=False):
    """A copy of `model` with the same weights, to trace into a portable SavedModel.

    Keras picks the cuDNN GRU kernel (`CudnnRNNV3`, GPU only) whenever a GPU is visible,
    whatever `tf.device` says, so the twin's RNNs get `use_cudnn=False`: the graph then runs on
    CPU serving and in the TFLite converter.

    Args:
        model: a ReSeg model.
        input_shape: `(H, W, 3)` of the twin; default the model's own.
        unroll_rnns: run every ReNet layer on its stock Keras RNN layers
            (`implementation="keras"`, not a CPU fast path's while-loop) and unroll every Keras
            RNN (needs a static input shape): the int8 quantizer crashes on while-loops but
            handles the unrolled steps.

    Returns:
        The twin and the number of RNN layers unrolled.
    """
    import keras

    from reseg_tf.layers import ReNetLayer
    from reseg_tf.models import with_input_size

    input_shape = tuple(input_shape or model.input_shape[1:])
    twin = with_input_size(model, input_shape[:2])
    unrolled = 0
    # Keras has no public recursive layer walk; `_flatten_layers` is what Model.summary uses.
    for layer in twin._flatten_layers(include_self=False, recursive=True):
        if unroll_rnns and isinstance(layer, ReNetLayer) and hasattr(layer, "implementation"):
            layer.implementation = "keras"
        if isinstance(layer, keras.layers.RNN):
            if hasattr(layer, "use_cudnn"):
                layer.use_cudnn = False
            if unroll_rnns:
                layer.unroll = True
                unrolled += 1
    return twin, unrolled


def write_static_saved_model(model, path, image_size, unroll_rnns=True):
    """Writes a SavedModel whose `serving_default` takes float32 `(1, H, W, 3)`: the TFLite source.

    With `unroll_rnns` (see `export_twin`) every variant converts, int8 included, and on the
    camvid preset at 360x480 the fp32 `.tflite` is 3.5x smaller (12 vs 43 MB) and 3.5x faster
    than one converted from the RNN while-loops. Returns the number of RNN layers unrolled.
    """
    import tensorflow as tf

    twin, unrolled = export_twin(model, (*image_size, 3), unroll_rnns)
    signature = [tf.TensorSpec([1, *image_size, 3], tf.float32, name="images")]
    _write_archive(twin, path, {"serving_default": (lambda images: twin(images, training=False), signature)})
    return unrolled


def _converter_for(saved_model_dir, variant, representative_images):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        images = np.asarray(representative_images, dtype=np.float32)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter


def _convert_worker_main():
    """Subprocess entry: argv = saved_model_dir variant output_path [images.npy]."""
    saved_model_dir, variant, output_path = sys.argv[1:4]
    images = np.load(sys.argv[4]) if len(sys.argv) > 4 else None
    Path(output_path).write_bytes(_converter_for(saved_model_dir, variant, images).convert())


def convert_tflite(saved_model_dir, variant, output_path, representative_images=None,
                   isolate=None, timeout=None):
    """Converts a static-signature SavedModel to a builtin-ops-only `.tflite` file.

    Args:
        saved_model_dir: a SavedModel whose `serving_default` has a static input shape.
        variant: one of `TFLITE_VARIANTS`.
        output_path: the `.tflite` file to write.
        representative_images: uint8/float `(N, H, W, 3)` calibration images, for `int8`.
        isolate: convert in a subprocess, so a converter crash becomes a `TFLiteConversionError`
            (default: for `int8`, where the converter is known to crash on RNN while-loops).
        timeout: seconds before an isolated conversion is abandoned.

    Returns:
        The size of the written file in bytes.
    """
    import tensorflow as tf

    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(TFLITE_VARIANTS)}.")
    if variant == "int8" and (representative_images is None or len(representative_images) == 0):
        raise ValueError("int8 TFLite conversion needs representative images.")
    output_path = Path(output_path)
    isolate = variant == "int8" if isolate is None else isolate
    if not isolate:
        try:
            content = _converter_for(saved_model_dir, variant, representative_images).convert()
        except Exception as error:
            raise TFLiteConversionError(f"TFLite {variant} conversion failed: {error}") from error
        output_path.write_bytes(content)
        return len(content)
    with tempfile.TemporaryDirectory(prefix=".tmp-convert-", dir=output_path.parent) as scratch:
        command = [sys.executable, "-c", "from reseg_tf.export import _convert_worker_main as m; m()",
                   str(saved_model_dir), variant, str(output_path)]
        if representative_images is not None:
            np.save(Path(scratch) / "images.npy", np.asarray(representative_images))
            command.append(str(Path(scratch) / "images.npy"))
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            filter(None, [package_parent, os.environ.get("PYTHONPATH")])), "TF_CPP_MIN_LOG_LEVEL": "2"}
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TFLiteConversionError(
                f"TFLite {variant} conversion did not finish in {timeout} s.") from None
    if done.returncode != 0:
        crash = (f"crashed with signal {-done.returncode}" if done.returncode < 0
                 else f"failed (exit {done.returncode})")
        detail = _clean_stderr(done.stderr, last_lines=3)
        raise TFLiteConversionError(
            f"the TFLite converter {crash} converting {str(saved_model_dir)!r} to {variant}"
            + (f": {detail}" if detail else "")
        )
    return output_path.stat().st_size


# ---------------------------------------------------------------------------- verification


def _timed(function, inputs, repeats=1):
    """Runs `function` on each input (after one warm-up call); returns outputs and s/image."""
    function(inputs[0])
    start = time.perf_counter()
    for _ in range(repeats):
        outputs = [function(x) for x in inputs]
    return outputs, (time.perf_counter() - start) / (repeats * len(inputs))


def keras_probabilities(model, images):
    """Keras probabilities for uint8 images, one image per call (the reference)."""
    return np.concatenate([model.predict(image[np.newaxis].astype(np.float32), verbose=0)
                           for image in images])


def _agreement(probabilities, reference):
    return float(np.mean(np.argmax(probabilities, -1) == np.argmax(reference, -1)))


def _clean_stderr(text, last_lines=6):
    """The last lines of a TF subprocess's stderr without its start-up log noise, on one line."""
    noise = re.compile(r"^(W|I|E)0000 |^WARNING: All log|^To enable the following")
    lines = [line for line in text.strip().splitlines() if not noise.match(line)]
    return " | ".join(lines[-last_lines:])[-600:]


def _saved_model_cli(*args, timeout=300):
    executable = Path(sys.executable).with_name("saved_model_cli")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m",
                                                             "tensorflow.python.tools.saved_model_cli"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise ExportVerificationError(
            f"saved_model_cli {args[0]} failed (exit {done.returncode}): {_clean_stderr(done.stderr)}"
        )
    return done.stdout


def verify_saved_model(saved_model_dir, model, images, reference=None):
    """Checks a served SavedModel against Keras with `tf.saved_model.load` and `saved_model_cli`.

    Returns a report row (dict) with the worst probability difference over all signatures, the
    argmax agreement, latency per image of `serving_default`, and the graph's op check.
    """
    import tensorflow as tf

    saved_model_dir = Path(saved_model_dir)
    reference = keras_probabilities(model, images) if reference is None else reference
    problems = []
    cudnn_ops = sorted(op for op in saved_model_op_types(saved_model_dir) if "Cudnn" in op)
    if cudnn_ops:
        problems.append(f"graph contains GPU-only ops {cudnn_ops}")

    loaded = tf.saved_model.load(str(saved_model_dir))
    missing = [name for name in SIGNATURES if name not in loaded.signatures]
    if missing:
        raise ExportVerificationError(f"SavedModel {str(saved_model_dir)!r} lacks signatures {missing}.")
    default = loaded.signatures["serving_default"]
    outputs, latency = _timed(lambda x: default(images=tf.constant(x[np.newaxis], tf.float32)), images)
    probabilities = np.concatenate([o["probabilities"].numpy() for o in outputs])
    classes = np.concatenate([o["classes"].numpy() for o in outputs])
    diffs = {"serving_default": float(np.abs(probabilities - reference).max())}
    if not np.array_equal(classes, np.argmax(probabilities, -1)):
        problems.append("serving_default `classes` is not the argmax of `probabilities`")
    batch = loaded.signatures["serving_uint8"](images=tf.constant(images, tf.uint8))
    diffs["serving_uint8"] = float(np.abs(batch["probabilities"].numpy() - reference).max())
    encoded = tf.stack([tf.io.encode_png(image) for image in images])
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)
    if from_bytes["probabilities"].shape == reference.shape:
        diffs["serving_bytes"] = float(np.abs(from_bytes["probabilities"].numpy() - reference).max())
    else:  # a fixed-size model resizes the images first; only the output layout can be checked.
        if from_bytes["probabilities"].shape[0] != len(images):
            problems.append(f"serving_bytes returned {from_bytes['probabilities'].shape[0]} results "
                            f"for {len(images)} images")

    shown = _saved_model_cli("show", "--dir", str(saved_model_dir), "--all")
    for name in (*SIGNATURES, *OUTPUT_KEYS):
        if name not in shown:
            problems.append(f"`saved_model_cli show --all` does not list {name!r}")
    with tempfile.TemporaryDirectory(prefix="reseg-verify-") as scratch:
        np.save(Path(scratch) / "images.npy", images[:1].astype(np.float32))
        _saved_model_cli("run", "--dir", str(saved_model_dir), "--tag_set", "serve",
                         "--signature_def", "serving_default",
                         "--inputs", f"images={Path(scratch) / 'images.npy'}",
                         "--outdir", str(Path(scratch) / "out"))
        cli_probabilities = np.load(Path(scratch) / "out" / "probabilities.npy")
    diffs["saved_model_cli_run"] = float(np.abs(cli_probabilities - reference[:1]).max())

    max_diff = max(diffs.values())
    if max_diff >= FP32_MAX_PROB_DIFF:
        problems.append(f"max |prob diff| {max_diff:.2e} >= {FP32_MAX_PROB_DIFF:g} ({diffs})")
    return {
        "artifact": "saved_model",
        "path": str(saved_model_dir),
        "size_bytes": sum(p.stat().st_size for p in saved_model_dir.rglob("*") if p.is_file()),
        "latency_ms": latency * 1000,
        "max_prob_diff": max_diff,
        "prob_diff_by_signature": diffs,
        "agreement": _agreement(probabilities, reference),
        "passed": not problems,
        "problems": problems,
    }


def load_tflite(path, num_threads=None):
    """An allocated `ai_edge_litert` interpreter; a clear error if the model needs Flex ops."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as error:
        needs_flex = any(word in str(error).lower() for word in ("flex", "select"))
        hint = " (it needs Flex / SELECT_TF_OPS ops)" if needs_flex else ""
        raise ExportVerificationError(f"ai_edge_litert cannot load {str(path)!r}{hint}: {error}") from error
    # A Flex op would already fail allocate_tensors without the Flex delegate; this names them
    # even where a delegate is linked in.
    ops = interpreter._get_ops_details()
    flex = sorted({op["op_name"] for op in ops if op["op_name"].startswith("Flex")})
    if flex:
        raise ExportVerificationError(
            f"TFLite model {str(path)!r} needs Flex ops {flex}; only builtin ops are allowed.")
    return interpreter


def tflite_predict_fn(interpreter):
    """A function mapping one uint8 `(H, W, 3)` image to float32 `(1, H, W, C)` probabilities."""
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]

    def predict(image):
        x = image[np.newaxis].astype(np.float32)
        if input_details["dtype"] != np.float32:
            scale, zero_point = input_details["quantization"]
            info = np.iinfo(input_details["dtype"])
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(input_details["dtype"])
        interpreter.set_tensor(input_details["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(output_details["index"])
        if output_details["dtype"] != np.float32:
            scale, zero_point = output_details["quantization"]
            y = (y.astype(np.float32) - zero_point) * scale
        return y

    return predict


def verify_tflite(path, variant, images, reference, num_threads=None):
    """Loads a `.tflite` with `ai_edge_litert` and compares it with the Keras `reference`.

    Latency is measured with `num_threads` interpreter threads (default: all CPUs, as Keras).
    """
    num_threads = num_threads or os.cpu_count()
    interpreter = load_tflite(path, num_threads=num_threads)
    input_shape = tuple(interpreter.get_input_details()[0]["shape"])
    expected_shape = (1, *images.shape[1:])
    problems = []
    if input_shape != expected_shape:
        problems.append(f"input shape {input_shape} != {expected_shape}")
        outputs, latency = [], float("nan")
    else:
        outputs, latency = _timed(tflite_predict_fn(interpreter), images)
    probabilities = np.concatenate(outputs) if outputs else None
    row = {
        "artifact": f"tflite_{variant}",
        "path": str(path),
        "size_bytes": Path(path).stat().st_size,
        "latency_ms": latency * 1000,
        "max_prob_diff": float(np.abs(probabilities - reference).max()) if outputs else None,
        "agreement": _agreement(probabilities, reference) if outputs else None,
        "input_dtype": np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        "num_threads": num_threads,
    }
    if outputs and variant == "fp32" and row["max_prob_diff"] >= FP32_MAX_PROB_DIFF:
        problems.append(f"max |prob diff| {row['max_prob_diff']:.2e} >= {FP32_MAX_PROB_DIFF:g}")
    if outputs and variant in MIN_AGREEMENT and row["agreement"] < MIN_AGREEMENT[variant]:
        problems.append(f"argmax agreement {row['agreement']:.2%} < {MIN_AGREEMENT[variant]:.1%}")
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


# ---------------------------------------------------------------------------- serving.md


def write_serving_doc(path, model_name, saved_model_root, config, image_size, fixed_size, version):
    """Writes `serving.md`: TF Serving docker command and REST requests matching the signatures."""
    root = Path(saved_model_root).resolve()
    height, width = image_size
    size_note = (f"The model only accepts {fixed_size[0]}x{fixed_size[1]} images; `serving_bytes` "
                 "resizes every image to that size (bilinear) and answers at that size."
                 if fixed_size else
                 "The model accepts any image size; `serving_bytes` answers at the images' own size, "
                 "and all images of one request must share it (send others separately).")
    classes = ", ".join(f"{i}={name}" for i, name in enumerate(config.class_names))
    text = f"""# Serving `{model_name}` with TF Serving

Latest export: version {version} in `{root}` (TF Serving loads the highest version).

```sh
docker run --rm -p 8501:8501 -p 8500:8500 \\
  --mount type=bind,source={root},target=/models/{model_name} \\
  -e MODEL_NAME={model_name} -t tensorflow/serving
```

## Signatures

| signature | input | outputs |
|---|---|---|
| `serving_default` | `images` float32 `(B, H, W, 3)`, raw RGB 0..255 | `probabilities` float32 `(B, H, W, {config.num_classes})`, `classes` int32 `(B, H, W)` |
| `serving_uint8` | `images` uint8 `(B, H, W, 3)` | same |
| `serving_bytes` | `image_bytes` string `(B,)`: JPEG/PNG files (base64 in REST) | same |

{size_note}
Classes: {classes}.

## REST: pixels (`serving_default`)

```sh
python - <<'EOF' > request.json
import json, numpy as np
from PIL import Image
image = np.asarray(Image.open("image.png").convert("RGB"), dtype=np.float32)
print(json.dumps({{"signature_name": "serving_default", "instances": [image.tolist()]}}))
EOF
curl -s -X POST http://localhost:8501/v1/models/{model_name}:predict -d @request.json
```

## REST: encoded images (`serving_bytes`)

```sh
echo '{{"signature_name": "serving_bytes", "instances": [{{"image_bytes": {{"b64": "'"$(base64 -w0 image.png)"'"}}}}]}}' > request.json
curl -s -X POST http://localhost:8501/v1/models/{model_name}:predict -d @request.json
```

The answer is `{{"predictions": [{{"probabilities": [...], "classes": [...]}}]}}`, one entry per
instance. Probabilities make large JSON answers; for big images prefer gRPC on port 8500
(`PredictRequest.output_filter` can ask for `classes` only).

## TFLite

`tflite/<version>/{model_name}_<variant>.tflite` take one `(1, {height}, {width}, 3)` image:
float32 raw pixels for `fp32`, `fp16`, `dynamic`; uint8 pixels for `int8`, quantized with the
input tensor's scale / zero point (about 1.0 / 0, so the raw pixels). All return float32
probabilities `(1, {height}, {width}, {config.num_classes})`.
"""
    _atomic_write_text(path, text)


def _atomic_write_text(path, text):
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(text)
    os.replace(file.name, path)


# ----------------------------------------------------------------------------- export_model


def default_output_dir(model):
    return Path(DEFAULT_EXPORT_ROOT) / model.name


def export_model(model_or_path, output_dir=None, *, image_size=None, tflite=TFLITE_VARIANTS,
                 representative_data=None, version=None, verify=True, fail_on_mismatch=True,
                 num_calibration_images=32, num_verification_images=4):
    """Exports a ReSeg model as a TF Serving SavedModel and TFLite files, and verifies them.

    Args:
        model_or_path: a ReSeg Keras model or the path of its `.keras` file.
        output_dir: export folder; default `saved_models/<model name>/`.
        image_size: `(H, W)` of the static TFLite models and the verification images; must be
            the model's own size for a fixed-size model. Default: the model's size, or its
            preset's training size. The SavedModel keeps the model's (possibly dynamic) size.
        tflite: variants to convert (subset of `TFLITE_VARIANTS`, or a comma-separated string);
            empty for none.
        representative_data: folder of real images (or a CamVid-layout folder) used to
            calibrate `int8` and to verify; default: the embedded sample images, with a warning.
        version: SavedModel version; default the next free integer. Never overwrites.
        verify: reload and compare every artifact with Keras (see module docstring).
        fail_on_mismatch: raise `ExportVerificationError` (publishing nothing) when an artifact
            misses the bounds; `False` only reports it.
        num_calibration_images: images used to calibrate `int8`.
        num_verification_images: images compared with Keras.

    Returns:
        An `ExportResult`.
    """
    import keras

    model = load_reseg_model(model_or_path)
    from reseg_tf.models import config_from_model

    config = config_from_model(model)
    variants = _parse_variants(tflite)
    size = resolve_image_size(model, image_size)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(model)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output {str(output_dir)!r} exists and is not a folder.")
    files = _representative_files(representative_data, need_real_images="int8" in variants) \
        if (verify or "int8" in variants) else None
    calibration = load_images(_spread(files, num_calibration_images), size) if files else None
    verification = (load_images(_spread(files[::-1], num_verification_images), size) if files
                    else _synthetic_images(num_verification_images, size))

    saved_model_root = output_dir / "saved_model"
    tflite_root = output_dir / "tflite"
    saved_model_root.mkdir(parents=True, exist_ok=True)
    version = _check_version(saved_model_root, version)
    if (tflite_root / str(version)).exists():
        raise FileExistsError(f"TFLite folder {str(tflite_root / str(version))!r} already exists; "
                              "refusing to overwrite it.")
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-export-{version}-", dir=saved_model_root))
    try:
        served = scratch / "saved_model"
        print(f"writing SavedModel version {version} ...")
        twin, _ = export_twin(model)
        _write_archive(twin, served, _serving_functions(twin))
        tflite_dir = scratch / "tflite"
        tflite_dir.mkdir()
        tflite_paths = _convert_all(model, variants, size, calibration, scratch, tflite_dir)

        report = None
        if verify:
            print(f"verifying on {len(verification)} {'real' if files else 'synthetic'} "
                  f"{size[0]}x{size[1]} images ...")
            reference = keras_probabilities(model, verification)
            rows = [verify_saved_model(served, model, verification, reference)]
            rows += [verify_tflite(path, variant, verification, reference)
                     for variant, path in tflite_paths.items()]
            for row in rows:  # report the published locations, not the scratch ones
                row["path"] = row["path"].replace(str(served), str(saved_model_root / str(version))).replace(
                    str(tflite_dir), str(tflite_root / str(version)))
            report = {
                "model": model.name, "version": version, "image_size": list(size),
                "num_classes": config.num_classes, "class_names": list(config.class_names),
                "verification_images": "real" if files else "synthetic",
                "num_verification_images": int(len(verification)),
                "keras_version": keras.__version__, "rows": rows,
            }
            table = format_report_table(rows)
            print(table)
            failed = [f"{row['artifact']} ({'; '.join(row['problems'])})" for row in rows if not row["passed"]]
            if failed and fail_on_mismatch:
                raise ExportVerificationError(
                    f"export verification failed for {', '.join(failed)}; nothing was published "
                    "(pass verify=False / --no-verify to export anyway).")

        _publish(served, saved_model_root / str(version))
        tflite_root.mkdir(exist_ok=True)
        _publish(tflite_dir, tflite_root / str(version))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    final_tflite = {variant: tflite_root / str(version) / path.name for variant, path in tflite_paths.items()}
    write_serving_doc(output_dir / "serving.md", model.name, saved_model_root, config, size,
                      fixed_size=None if None in _model_image_shape(model) else _model_image_shape(model),
                      version=version)
    if report is None:
        report = {"model": model.name, "version": version, "image_size": list(size), "rows": [
            {"artifact": f"tflite_{v}", "path": str(p), "size_bytes": p.stat().st_size} for v, p in final_tflite.items()]}
    _atomic_write_text(output_dir / "export_report.json", json.dumps(report, indent=2) + "\n")
    print(f"exported {model.name!r} version {version} to {output_dir}")
    return ExportResult(output_dir=output_dir, version=version,
                        saved_model_dir=saved_model_root / str(version),
                        tflite_paths=final_tflite, image_size=size, report=report)


def _convert_all(model, variants, size, calibration, scratch, tflite_dir):
    """Converts every variant from one static SavedModel of the unrolled twin (see module doc)."""
    paths = {}
    if not variants:
        return paths
    static = scratch / "static_unrolled"
    unrolled = write_static_saved_model(model, static, size)
    print(f"TFLite source: static {size[0]}x{size[1]} SavedModel, {unrolled} RNNs unrolled")
    for variant in variants:
        path = tflite_dir / f"{model.name}_{variant}.tflite"
        calibration_note = f" on {len(calibration)} calibration images" if variant == "int8" else ""
        print(f"converting TFLite {variant}{calibration_note} ...")
        convert_tflite(static, variant, path, representative_images=calibration if variant == "int8" else None)
        paths[variant] = path
    return paths
