"""The TF Serving SavedModel: signatures through the image-to-model contract, versions, publishing.

Every signature computes `reseg_tf.inference.image_probabilities` in-graph: images of any size
are resized to the model's working size exactly as training resizes them, run through the
model, and the probabilities resized back, so the answers have the size of the images sent
and match `reseg predict`. A model that accepts any size runs at each image's own size.

Every SavedModel is traced from a twin (same weights) whose Keras RNNs have `use_cudnn=False`:
Keras bakes the GPU-only `CudnnRNNV3` op into the graph whenever a GPU is visible, even under
`tf.device("/CPU:0")`, and such a SavedModel fails on CPU serving and in the TFLite converter.
"""
import os
import shutil
import tempfile
from pathlib import Path

from reseg_tf.model_io import load_reseg_model

from reseg_tf.export.signatures import (BYTES_SIGNATURE, DEFAULT_SIGNATURE, MASK_SIGNATURE, OUTPUT_KEYS,  # noqa: F401
                                        SERVING_SIGNATURES, SIGNATURES, ServingLimits)


def export_twin(model, input_shape=None, unroll_rnns=False):
    """A copy of `model` with the same weights, to trace into a portable SavedModel.

    Keras picks the cuDNN GRU kernel (`CudnnRNNV3`, GPU only) whenever a GPU is visible,
    whatever `tf.device` says, so the twin's RNNs get `use_cudnn=False`: the graph then runs on
    CPU serving and in the TFLite converter.

    Args:
        model: a ReSeg model.
        input_shape: `(H, W, 3)` of the twin; default the model's own.
        unroll_rnns: unroll every recurrence (needs a static input shape): the int8
            quantizer crashes on while-loops but handles unrolled steps. GRU ReNet layers run
            on `implementation="unrolled"` (11 ops per step for both directions, see
            `reseg_tf.layers.unrolled_rnn`); LSTM and SimpleRNN ones on their Keras layers
            with `unroll=True`.

    Returns:
        The twin and the number of RNN layers unrolled.
    """
    import keras

    from reseg_tf.layers import ReNetLayer
    from reseg_tf.layers.renet import UNROLLED
    from reseg_tf.models import with_input_size

    input_shape = tuple(input_shape or model.input_shape[1:])
    twin = with_input_size(model, input_shape[:2])
    # Keras has no public recursive layer walk; `_flatten_layers` is what Model.summary uses.
    layers = list(twin._flatten_layers(include_self=False, recursive=True))
    hand_unrolled = set()  # the RNNs of ReNet layers that run their own unrolled GRU
    for layer in layers:
        if unroll_rnns and isinstance(layer, ReNetLayer) and layer.rnn == "gru":
            layer.implementation = UNROLLED
            hand_unrolled.update(id(rnn) for pair in layer.sweeps for rnn in pair)
        elif unroll_rnns and isinstance(layer, ReNetLayer):
            layer.implementation = "keras"  # its Keras RNN layers are unrolled below
    unrolled = len(hand_unrolled)
    for layer in layers:
        if isinstance(layer, keras.layers.RNN) and id(layer) not in hand_unrolled:
            if hasattr(layer, "use_cudnn"):
                layer.use_cudnn = False
            if unroll_rnns:
                layer.unroll = True
                unrolled += 1
    return twin, unrolled


def serving_functions(model, tta="none", limits=None):
    """`{signature: (tf.function body, input_signature)}` of the serving signatures of `model`
    (`signatures.SERVING_SIGNATURES`).

    The working size is `model`'s fixed input size (None: any size); every signature takes
    images of any size within `limits` (`signatures.ServingLimits`, default its defaults),
    checked in the graph before anything image-sized is allocated (`image_headers`), and answers
    at their size. `tta="flip"` bakes the flip average in (`reseg_tf.averaging`).
    """
    import tensorflow as tf

    from reseg_tf.export.image_headers import bounded_decode, bounded_pixels
    from reseg_tf.inference import image_probabilities, model_input_size

    limits = limits or ServingLimits()
    working_size = model_input_size(model)
    num_classes = int(model.output_shape[-1])
    mask_dtype = tf.uint8 if num_classes <= 256 else tf.uint16

    def classes_of(images):
        probabilities = image_probabilities(model, images, working_size, tta=tta)
        return probabilities, tf.argmax(probabilities, axis=-1, output_type=tf.int32)

    def outputs(images):
        return dict(zip(OUTPUT_KEYS, classes_of(images)))

    def masks(images):
        classes = tf.cast(classes_of(images)[1], mask_dtype)[..., tf.newaxis]
        encoded = tf.map_fn(tf.io.encode_png, classes, fn_output_signature=tf.TensorSpec([], tf.string))
        return {MASK_SIGNATURE.outputs[0]: encoded}

    def endpoint(signature):
        bounds = (limits.max_image_pixels, limits.max_batch, signature.name)
        answer = masks if signature is MASK_SIGNATURE else outputs
        if signature.dtype == "string":
            spec = tf.TensorSpec([None], tf.string, name=signature.input_name)
            return (lambda encoded: answer(bounded_decode(encoded, *bounds))), [spec]
        spec = tf.TensorSpec([None, None, None, 3], signature.dtype, name=signature.input_name)
        return (lambda images: answer(bounded_pixels(images, *bounds))), [spec]

    return {signature.name: endpoint(signature) for signature in SERVING_SIGNATURES}


def write_archive(model, path, endpoints):
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


def write_serving_saved_model(model, path, tta="none", limits=None):
    """Writes the serving signatures of `model`'s CPU twin, bounded by `limits`
    (`signatures.ServingLimits`), as a SavedModel at `path`."""
    twin, _ = export_twin(model)
    write_archive(twin, path, serving_functions(twin, tta, limits))


def write_static_saved_model(model, path, image_size, unroll_rnns=True, tta="none", input_size=None):
    """Writes a SavedModel whose `serving_default` takes float32 `(1, H, W, 3)`: the TFLite source.

    The model runs at `image_size`. With an `input_size` other than it, the graph takes images of
    `input_size` (an app's camera frames), resizes them to `image_size` as training does (the
    antialiased resize written as two matrix products, builtin TFLite ops) and returns the
    probabilities resized back to `input_size`: a runtime that feeds frames of that size (e.g.
    MediaPipe) resizes nothing itself and gets `reseg predict`'s answers. With `unroll_rnns`
    (see `export_twin`) every variant converts, int8 included. `tta="flip"` averages the image's
    and its mirror's probabilities in the graph. Returns the number of RNN layers unrolled.
    """
    import tensorflow as tf

    from pipelines.image_ops import resize_image_by_matmul
    from reseg_tf.averaging import averaged_probabilities
    from reseg_tf.inference import to_image_size

    image_size = tuple(image_size)
    input_size = tuple(input_size or image_size)
    twin, unrolled = export_twin(model, (*image_size, 3), unroll_rnns)

    def probabilities(images):
        if input_size == image_size:
            return averaged_probabilities(twin, images, tta)
        working = averaged_probabilities(twin, resize_image_by_matmul(images, image_size), tta)
        return to_image_size(working, input_size)

    signature = [tf.TensorSpec([1, *input_size, 3], tf.float32, name="images")]
    write_archive(twin, path, {DEFAULT_SIGNATURE.name: (probabilities, signature)})
    return unrolled


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


def check_version(root, version):
    """`version`, or the next free one if None; refuses a version folder that already exists."""
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


def publish(temporary_dir, final_dir):
    """Renames a finished temp dir into place; never replaces an existing one."""
    if final_dir.exists():
        raise FileExistsError(f"{str(final_dir)!r} already exists; refusing to overwrite it.")
    os.rename(temporary_dir, final_dir)


def export_saved_model(model_or_path, saved_model_root, version=None, limits=None):
    """Writes the TF Serving SavedModel at `saved_model_root/<version>` and returns that path.

    `version` defaults to the next free integer. The SavedModel is written to a hidden temp
    folder beside it (TF Serving ignores non-numeric names) and renamed into place, so a failed
    export never leaves a half-written version. `limits`: the inputs' `signatures.ServingLimits`.
    """
    model = load_reseg_model(model_or_path)
    root = Path(saved_model_root)
    root.mkdir(parents=True, exist_ok=True)
    version = check_version(root, version)
    temporary = Path(tempfile.mkdtemp(prefix=".tmp-saved-model-", dir=root))
    try:
        write_serving_saved_model(model, temporary / "model", limits=limits)
        publish(temporary / "model", root / str(version))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root / str(version)
