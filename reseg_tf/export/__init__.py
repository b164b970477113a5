"""Export a trained ReSeg model for TF Serving (SavedModel), TFLite and ONNX, and verify the result.

Layout written by `export_model` (default `output_dir`: `saved_models/<model name>/`):

```
DIR/saved_model/<version>/        TF Serving model base path is DIR/saved_model
DIR/tflite/<version>/<name>_<variant>.tflite
DIR/onnx/<version>/<name>.onnx    with `onnx=True`
DIR/serving.md                    docker command + REST examples for the latest export
DIR/export_report.json            sizes, latencies and agreement of the latest export
```

Every artifact goes through the image-to-model contract of `reseg_tf.inference`, so it answers
like `reseg predict`: images are resized to the model's working size exactly as training
resizes them and the probabilities are resized back to the images' own size.

Formats (`formats.py`): each writes its artifacts, verifies them and is published as
`DIR/<folder>/<version>/` through one interface that `export_model` loops over.

SavedModel signatures (`saved_model.py`; defined once in `signatures.py`, with REST examples
in `serving.md`), all taking images of any size up to the export's `ServingLimits` (pixels per
image, images per request; encoded files are checked from their headers before decoding,
`image_headers.py`): float32 pixels (the default signature), uint8 pixels, and encoded image
files (all images of one request must share a size).

They return `probabilities` float32 `(B, H, W, num_classes)` and `classes` int32 `(B, H, W)` at
the size of the images sent; `serving_mask` returns each class-index mask as a PNG file. The model inside runs at its fixed input size, or
at the images' own size for a model that accepts any size.

TFLite models (`tflite.py`) have a static `(1, h, w, 3)` input at the working size and builtin
ops only; clients resize as the contract does (`tflite.tflite_image_probabilities`).
Verification (`verify.py`) compares every artifact with `reseg_tf.inference.Predictor` on real
images at their own size.
"""
from reseg_tf.lazy_exports import lazy_exports

# The public names load on first use (`reseg_tf.lazy_exports`): `reseg export --help` reads the
# signature names without importing TensorFlow.
__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "reseg_tf.export.errors": ("ExportVerificationError", "TFLiteConversionError"),
    "reseg_tf.export.formats": ("ExportContext", "ExportFormat", "OnnxFormat", "SavedModelFormat",
        "TFLiteFormat", "requested_formats"),
    "reseg_tf.export.images": ("IMAGE_SUBDIRS", "find_images", "load_images", "read_images",
        "representative_files", "sample_data_dir", "spread_files", "synthetic_images"),
    "reseg_tf.export.orchestrate": ("DEFAULT_EXPORT_ROOT", "ExportResult", "default_output_dir",
        "export_model", "resolve_image_size"),
    "reseg_tf.export.signatures": ("DEFAULT_MAX_BATCH", "DEFAULT_MAX_IMAGE_PIXELS", "OUTPUT_KEYS",
        "SERVING_SIGNATURES", "SIGNATURES", "ServingLimits", "ServingSignature"),
    "reseg_tf.export.saved_model": ("check_version", "export_saved_model", "export_twin", "next_version",
        "publish", "saved_model_op_types", "serving_functions", "write_archive", "write_serving_saved_model",
        "write_static_saved_model"),
    "reseg_tf.export.serving_doc": ("write_serving_doc",),
    "reseg_tf.export.tflite": ("TFLITE_VARIANTS", "convert_tflite", "convert_variants", "load_tflite",
        "parse_variants", "tflite_image_probabilities", "tflite_predict_fn", "tflite_size_breakdown"),
    "reseg_tf.export.onnx": ("onnx_available", "write_onnx"),
    "reseg_tf.export.verify": ("FP32_MAX_PROB_DIFF", "MIN_AGREEMENT", "format_report_table",
        "reference_probabilities", "verify_onnx", "verify_saved_model", "verify_tflite"),
    "reseg_tf.model_io": ("load_reseg_model",),
})
