"""TFLite: static builtin-ops-only models converted from an unrolled twin, and running them.

A `.tflite` model takes one `(1, h, w, 3)` image at the working size and returns float32
probabilities at that size (with a variable batch the GRU loop needs Flex ops, which the
standard interpreter cannot run). `tflite_image_probabilities` runs one through the image-to-
model contract: an image of any size is resized to the working size as training resizes it,
and the probabilities are resized back to the image's size.

Variants: `fp32`, `fp16` (float16 weights), `dynamic` (dynamic-range int8 weights) take float32
raw pixels; `int8` (full integer, calibrated on real images) takes uint8 pixels quantized with
the input tensor's scale / zero point (1.0 / 0: the raw pixels, see `with_raw_pixels`) and returns float32
probabilities. The converter crashes (SIGSEGV) quantizing a GRU while-loop, which is why the
source SavedModel's RNNs are unrolled; `int8` is also converted in a subprocess so that a
crash becomes an error message. Every variant carries MediaPipe ImageSegmenter metadata
(`reseg_tf.export.mediapipe_metadata`), so MediaPipe Tasks apps load it as it is.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from reseg_tf.export.errors import ExportVerificationError, TFLiteConversionError, clean_stderr
from reseg_tf.export.saved_model import write_static_saved_model
from reseg_tf.options import TFLITE_VARIANTS


def parse_variants(tflite):
    """A tuple of variants from a list or a comma-separated string; ValueError for unknown ones."""
    if tflite is None:
        return ()
    if isinstance(tflite, str):
        tflite = [v for v in tflite.split(",") if v.strip()]
    variants = tuple(dict.fromkeys(v.strip().lower() for v in tflite))
    unknown = [v for v in variants if v not in TFLITE_VARIANTS]
    if unknown:
        raise ValueError(f"unknown TFLite variant(s) {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
    return variants


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


def _content_key(value):
    """A hashable key equal for equal flatbuffer objects (object-API `...T` instances)."""
    if isinstance(value, np.ndarray):
        return value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, (list, tuple)):
        return tuple(_content_key(item) for item in value)
    if hasattr(value, "__dict__"):
        return type(value).__name__, tuple(sorted((k, _content_key(v)) for k, v in vars(value).items()))
    return value


class _SharedTable:
    """Stands in for an object-API table: packs it once per distinct content and returns the
    same offset for every equal one (flatbuffers lets any number of parents refer to a table)."""

    def __init__(self, table, packed):
        self.table, self.packed = table, packed

    def Pack(self, builder):  # noqa: N802 (the flatbuffers object API's name)
        key = _content_key(self.table)
        if key not in self.packed:
            self.packed[key] = self.table.Pack(builder)
        return self.packed[key]


def _sharing_builder():
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        """A builder that writes each distinct numeric vector once (tensor shapes, quantization
        scales and zero points, operator input lists); byte vectors (constant buffers, custom
        options) are written as they come."""

        def __init__(self):
            super().__init__(1024)
            self.vectors = {}

        def CreateNumpyVector(self, x):  # noqa: N802 (overrides flatbuffers' name)
            if x.dtype == np.uint8:
                return super().CreateNumpyVector(x)
            key = _content_key(x)
            if key not in self.vectors:
                self.vectors[key] = super().CreateNumpyVector(x)
            return self.vectors[key]

    return SharingBuilder()


def compact_tflite(content):
    """`.tflite` bytes that run exactly like `content` in a smaller file.

    An unrolled recurrence has thousands of tensors and operators, and their metadata can
    outweigh the weights (in int8 it made the file larger than the float one). Here:

    - internal tensor names are dropped (the converter names every tensor after the TF ops it
      came from, tens of bytes each); the model's inputs' and outputs' names and the signatures
      are kept, so interpreters and signature runners see the same model;
    - equal vectors (tensor shapes, quantization scales and zero points: per-channel zero points
      are all-zero arrays) and equal tables (quantization parameters, operator options) are
      stored once and referred to from every tensor or operator that has them, as the flatbuffer
      format allows. Constant buffers and every field's value are unchanged.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    packed = {}
    for subgraph in model.subgraphs:
        keep = set(subgraph.inputs) | set(subgraph.outputs)
        for index, tensor in enumerate(subgraph.tensors):
            if index not in keep:
                tensor.name = None
            # As numpy arrays, the object API writes them through `CreateNumpyVector`.
            for field in ("shape", "shapeSignature"):
                if getattr(tensor, field) is not None:
                    setattr(tensor, field, np.asarray(getattr(tensor, field), np.int32))
            if tensor.quantization is not None:
                tensor.quantization = _SharedTable(tensor.quantization, packed)
        for operator in subgraph.operators:
            for field in ("inputs", "outputs"):
                if getattr(operator, field) is not None:
                    setattr(operator, field, np.asarray(getattr(operator, field), np.int32))
            for field in ("builtinOptions", "builtinOptions2"):
                if getattr(operator, field, None) is not None:
                    setattr(operator, field, _SharedTable(getattr(operator, field), packed))
    builder = _sharing_builder()
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _convert(saved_model_dir, variant, representative_images):
    return compact_tflite(_converter_for(saved_model_dir, variant, representative_images).convert())


def _convert_worker_main():
    """Subprocess entry: argv = saved_model_dir variant output_path [images.npy]."""
    saved_model_dir, variant, output_path = sys.argv[1:4]
    images = np.load(sys.argv[4]) if len(sys.argv) > 4 else None
    Path(output_path).write_bytes(_convert(saved_model_dir, variant, images))


def convert_tflite(saved_model_dir, variant, output_path, representative_images=None,
                   isolate=None, timeout=None):
    """Converts a static-signature SavedModel to a builtin-ops-only `.tflite` file.

    Args:
        saved_model_dir: a SavedModel whose `serving_default` has a static input shape.
        variant: one of `TFLITE_VARIANTS`.
        output_path: the `.tflite` file to write.
        representative_images: uint8/float `(N, H, W, 3)` calibration images at the model's
            input size, for `int8`.
        isolate: convert in a subprocess, so a converter crash becomes a `TFLiteConversionError`
            (default: for `int8`, where the converter is known to crash on RNN while-loops).
        timeout: seconds before an isolated conversion is abandoned.

    Returns:
        The size of the written file in bytes.
    """
    if variant not in TFLITE_VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose from {', '.join(TFLITE_VARIANTS)}.")
    if variant == "int8" and (representative_images is None or len(representative_images) == 0):
        raise ValueError("int8 TFLite conversion needs representative images.")
    output_path = Path(output_path)
    isolate = variant == "int8" if isolate is None else isolate
    if not isolate:
        try:
            content = _convert(saved_model_dir, variant, representative_images)
        except Exception as error:
            raise TFLiteConversionError(f"TFLite {variant} conversion failed: {error}") from error
        output_path.write_bytes(content)
        return len(content)
    with tempfile.TemporaryDirectory(prefix=".tmp-convert-", dir=output_path.parent) as scratch:
        command = [sys.executable, "-c", "from reseg_tf.export.tflite import _convert_worker_main as m; m()",
                   str(saved_model_dir), variant, str(output_path)]
        if representative_images is not None:
            np.save(Path(scratch) / "images.npy", np.asarray(representative_images))
            command.append(str(Path(scratch) / "images.npy"))
        package_parent = str(Path(__file__).resolve().parents[2])
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
        detail = clean_stderr(done.stderr, last_lines=3)
        raise TFLiteConversionError(
            f"the TFLite converter {crash} converting {str(saved_model_dir)!r} to {variant}"
            + (f": {detail}" if detail else "")
        )
    return output_path.stat().st_size


def convert_variants(model, variants, image_size, calibration, scratch, tflite_dir, tta="none", input_size=None):
    """Converts every variant from one static SavedModel of the unrolled twin running at
    `image_size` (written under `scratch`, with the `tta` average baked in, taking images of
    `input_size`, default `image_size`: see `write_static_saved_model`) into `tflite_dir`;
    returns `{variant: path}`. `calibration`: images at `input_size` for `int8`."""
    paths = {}
    if not variants:
        return paths
    static = Path(scratch) / "static_unrolled"
    unrolled = write_static_saved_model(model, static, image_size, tta=tta, input_size=input_size)
    taking = f", taking {input_size[0]}x{input_size[1]} images" if input_size and tuple(input_size) != tuple(image_size) else ""
    print(f"TFLite source: static {image_size[0]}x{image_size[1]} SavedModel{taking}, {unrolled} RNNs unrolled")
    for variant in variants:
        path = Path(tflite_dir) / f"{model.name}_{variant}.tflite"
        calibration_note = f" on {len(calibration)} calibration images" if variant == "int8" else ""
        print(f"converting TFLite {variant}{calibration_note} ...")
        convert_tflite(static, variant, path, representative_images=calibration if variant == "int8" else None)
        write_segmenter_metadata(path, model, variant)
        paths[variant] = path
    return paths


def with_raw_pixels(model):
    """Makes a uint8 input of a TFLite model object (flatbuffers object API) take raw pixels.

    The converter gives the `int8` variant's uint8 input the scale / zero point calibration saw
    at the first quantized tensor (e.g. 1.48 / 83), but MediaPipe and most apps copy the image's
    bytes into a uint8 input as they are. A builtin QUANTIZE operator in front, from a new
    input with scale 1 / zero point 0, requantizes those pixels to what the model expects.
    Models whose input already takes raw pixels (or floats) are left as they are.
    """
    import copy

    from ai_edge_litert import schema_py_generated as schema

    subgraph = model.subgraphs[0]
    old_index = subgraph.inputs[0]
    old = subgraph.tensors[old_index]
    quantization = old.quantization
    if old.type != schema.TensorType.UINT8 or quantization is None or (
            list(quantization.scale) == [1.0] and list(quantization.zeroPoint) == [0]):
        return model
    raw = copy.deepcopy(old)
    raw.quantization = schema.QuantizationParametersT()
    raw.quantization.scale, raw.quantization.zeroPoint = [1.0], [0]
    old.name = None  # the input's name goes to the new input
    subgraph.tensors.append(raw)
    raw_index = len(subgraph.tensors) - 1
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    if schema.BuiltinOperator.QUANTIZE not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
        code.version = 2  # requantization
        model.operatorCodes.append(code)
        codes.append(schema.BuiltinOperator.QUANTIZE)
    operator = schema.OperatorT()
    operator.opcodeIndex = codes.index(schema.BuiltinOperator.QUANTIZE)
    operator.inputs, operator.outputs = [raw_index], [old_index]
    subgraph.operators.insert(0, operator)
    subgraph.inputs = [raw_index] + list(subgraph.inputs[1:])
    for signature in model.signatureDefs or []:
        for tensor in signature.inputs:
            if tensor.tensorIndex == old_index:
                tensor.tensorIndex = raw_index
    return model


def write_segmenter_metadata(path, model, variant):
    """Adds MediaPipe ImageSegmenter metadata (normalization, class names, activation) to the
    `.tflite` file at `path` (`reseg_tf.export.mediapipe_metadata`)."""
    from reseg_tf.export.mediapipe_metadata import add_segmenter_metadata
    from reseg_tf.models import config_from_model
    from reseg_tf.run_files import atomic_write_bytes

    config = config_from_model(model)
    description = (f"ReSeg semantic segmentation ({variant}): {config.num_classes} classes; takes RGB pixel "
                   "values 0..255 and returns per-pixel class probabilities.")
    from ai_edge_litert.tools import flatbuffer_utils

    def pack(model_object):  # written compact, as the converted file was
        with_raw_pixels(model_object)
        return compact_tflite(bytes(flatbuffer_utils.convert_object_to_bytearray(model_object)))

    atomic_write_bytes(path, add_segmenter_metadata(Path(path).read_bytes(), config.class_names, model.name,
                                                    description, pack=pack))


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
    """A function mapping one `(h, w, 3)` image at the model's input size (values 0..255) to
    float32 `(1, h, w, C)` probabilities."""
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]

    def predict(image):
        x = np.asarray(image)[np.newaxis].astype(np.float32)
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


def tflite_image_probabilities(interpreter):
    """A function mapping one RGB `(H, W, 3)` image of any size to float32 `(1, H, W, C)`
    probabilities through the contract (resize to the input size, run, resize back)."""
    from reseg_tf.inference import to_image_size, to_working_size

    predict = tflite_predict_fn(interpreter)
    working_size = tuple(int(v) for v in interpreter.get_input_details()[0]["shape"][1:3])

    def probabilities(image):
        working = to_working_size(image, working_size).numpy()
        return to_image_size(predict(working), np.shape(image)[:2]).numpy()

    return probabilities


def tflite_size_breakdown(path):
    """Where the bytes of a `.tflite` file go: `{file_bytes, constant_bytes, operators, tensors,
    tensor_name_bytes, quantization_bytes, quantization_parameter_sets}` (constants: weights and
    other constant buffers; quantization: the scale and zero-point arrays of the distinct
    parameter sets, which `compact_tflite` stores once each). An unrolled recurrence adds
    operators and tensors per time step, whose metadata can outweigh the weights."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    tensors = [tensor for subgraph in model.subgraphs for tensor in subgraph.tensors]
    parameter_sets = {}
    for tensor in tensors:
        params = tensor.quantization
        if params is not None and (params.scale is not None or params.zeroPoint is not None):
            parameter_sets[_content_key(params)] = sum(
                len(values) * 8 for values in (params.scale, params.zeroPoint) if values is not None)
    return {
        "file_bytes": Path(path).stat().st_size,
        "constant_bytes": sum(len(buffer.data) for buffer in model.buffers if buffer.data is not None),
        "operators": sum(len(subgraph.operators) for subgraph in model.subgraphs),
        "tensors": len(tensors),
        "tensor_name_bytes": sum(len(tensor.name or b"") for tensor in tensors),
        "quantization_bytes": sum(parameter_sets.values()),
        "quantization_parameter_sets": len(parameter_sets),
    }
