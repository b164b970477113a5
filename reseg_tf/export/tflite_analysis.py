"""What a `.tflite` file runs: its operators, and whether TFLite's GPU delegate can take them.

`analyze_tflite(path)` returns the operator count, a histogram of operators, and a static GPU
delegate check: every operator must be one the delegate has a kernel for (`GPU_DELEGATE_OPS`),
with the constraints the delegate states for the operators ReSeg models use, on tensors of at
most 4 dimensions. It also records the verdict of TensorFlow's own
`tf.lite.experimental.Analyzer.analyze(..., gpu_compatibility=True)`, but does not rely on it:
since TensorFlow 2.19 that analyzer no longer checks operators and says "looks compatible" of
any model (here, of one with an int64 ARG_MAX and of one with a WHILE loop and a Flex op; upstream
tensorflow/tensorflow#77042).

Neither is a run on a device: the delegate runs in fp16 by default, may reject an operator at
run time for a shape the static check does not see, and puts unsupported operators (and, by
default, every partition but the largest) on the CPU.
"""
import collections
import contextlib
import io
import os
import sys
import tempfile

# Builtin operators TFLite's GPU delegate has kernels for (float tensors; QUANTIZE/DEQUANTIZE
# only around quantized models), from its documented operator table.
GPU_DELEGATE_OPS = frozenset({
    "ABS", "ADD", "ADD_N", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CAST", "CEIL", "CONCATENATION",
    "CONV_2D", "COS", "CUMSUM", "DENSIFY", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "DEQUANTIZE",
    "DIV", "ELU", "EQUAL", "EXP", "FLOOR", "FLOOR_DIV", "FLOOR_MOD", "FULLY_CONNECTED", "GATHER",
    "GELU", "GREATER", "GREATER_EQUAL", "HARD_SWISH", "LEAKY_RELU", "LESS", "LESS_EQUAL", "LOG",
    "LOGICAL_AND", "LOGISTIC", "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MIRROR_PAD", "MUL",
    "NEG", "NOT_EQUAL", "ONE_HOT", "PACK", "PAD", "PADV2", "POW", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "REDUCE_PROD", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SELECT", "SELECT_V2", "SIGN", "SIN", "SLICE", "SOFTMAX",
    "SPACE_TO_DEPTH", "SPLIT", "SPLIT_V", "SQRT", "SQUARE", "SQUARED_DIFFERENCE", "STRIDED_SLICE",
    "SUB", "SUM", "TANH", "TILE", "TRANSPOSE", "TRANSPOSE_CONV",
})
MAX_GPU_RANK = 4  # the delegate's tensors are BHWC


def _op_names(model):
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    codes = []
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        codes.append(f"CUSTOM {custom}" if builtin == schema.BuiltinOperator.CUSTOM else names[builtin])
    return codes


def _operator_problem(name, operator, subgraph, constant):
    """Why the GPU delegate would not take this operator, or None (`constant`: the indices of
    the subgraph's constant tensors)."""
    if name not in GPU_DELEGATE_OPS:
        return "not a GPU delegate operator"
    shapes = [subgraph.tensors[i].shape for i in [*operator.inputs, *operator.outputs] if i >= 0]
    rank = max((len(shape) for shape in shapes if shape is not None), default=0)
    if rank > MAX_GPU_RANK:
        return f"{rank}-D tensor (the delegate takes at most {MAX_GPU_RANK}-D)"
    options = operator.builtinOptions
    if name == "STRIDED_SLICE" and (options.ellipsisMask or options.newAxisMask or options.shrinkAxisMask):
        return "ellipsis, new-axis or shrink-axis mask"
    if name == "FULLY_CONNECTED" and operator.inputs[0] in constant:
        return "constant input"
    if name == "GATHER" and len(subgraph.tensors[operator.inputs[1]].shape) != 1:
        return "indices not 1-D"
    return None


def gpu_delegate_check(model):
    """`{gpu_compatible, unsupported_ops}` of a flatbuffer model object: `unsupported_ops` maps
    `"OP: reason"` to the number of such operators."""
    names = _op_names(model)
    unsupported = collections.Counter()
    for subgraph in model.subgraphs:
        constant = {index for index, tensor in enumerate(subgraph.tensors)
                    if tensor.buffer > 0 and model.buffers[tensor.buffer].data is not None}
        for operator in subgraph.operators:
            name = names[operator.opcodeIndex]
            problem = _operator_problem(name, operator, subgraph, constant)
            if problem:
                unsupported[f"{name}: {problem}"] += 1
    return {"gpu_compatible": not unsupported, "unsupported_ops": dict(unsupported.most_common())}


@contextlib.contextmanager
def _captured_stdout(collected):
    """Appends to the list `collected` what is written to stdout inside the block, by Python and
    by native code (file descriptor 1)."""
    sys.stdout.flush()
    saved = os.dup(1)
    python_text = io.StringIO()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            with contextlib.redirect_stdout(python_text):
                yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            collected.append(python_text.getvalue() + sink.read().decode(errors="replace"))


def analyzer_verdict(path):
    """TensorFlow's Analyzer with `gpu_compatibility=True` on `path`: `{analyzer_verdict,
    analyzer_warnings}` (the line that gives its verdict, or None when it gives none; its GPU
    warnings)."""
    import tensorflow as tf

    collected = []
    with _captured_stdout(collected):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    text = collected[0]
    verdict = next((line.strip() for line in text.splitlines()
                    if "compatible with GPU delegate" in line or "compatibility issues" in line), None)
    warnings = sorted({line.strip() for line in text.splitlines() if "GPU COMPATIBILITY WARNING" in line})
    return {"analyzer_verdict": verdict, "analyzer_warnings": warnings}


def analyze_tflite(path, top=12):
    """Operators of the `.tflite` file at `path` and its GPU delegate check: `{operators,
    top_ops ({op: count}, the `top` most frequent), gpu_compatible, unsupported_ops,
    analyzer_verdict, analyzer_warnings}`."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = _op_names(model)
    histogram = collections.Counter(names[op.opcodeIndex] for sg in model.subgraphs for op in sg.operators)
    return {"operators": sum(histogram.values()), "top_ops": dict(histogram.most_common(top)),
            **gpu_delegate_check(model), **analyzer_verdict(path)}


def tflite_operators_and_gpu_check(path):
    """`analyze_tflite(path)`, with one line about it in the export log."""
    analysis = analyze_tflite(path)
    if analysis["gpu_compatible"]:
        verdict = "every one a GPU delegate operator"
    else:
        verdict = "NOT all GPU delegate operators: " + ", ".join(
            f"{op} (x{count})" for op, count in analysis["unsupported_ops"].items())
    print(f"{os.path.basename(path)}: {analysis['operators']} operators, {verdict}")
    return analysis

