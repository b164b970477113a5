"""`export_model`: write every requested format, verify every artifact, then publish them all
(the formats themselves are in `formats.py`)."""
import dataclasses
import shutil
import tempfile
from pathlib import Path

from reseg_tf.export.errors import ExportVerificationError
from reseg_tf.export.images import (load_images, read_images, representative_files, spread_files,
                                    synthetic_images)
from reseg_tf.export.formats import (ExportContext, ExportFormat, OnnxFormat, SavedModelFormat, TFLiteFormat,
                                     requested_formats)
from reseg_tf.export.saved_model import check_version, next_version, publish
from reseg_tf.export.serving_doc import write_serving_doc
from reseg_tf.export.signatures import ServingLimits
from reseg_tf.export.tflite import TFLITE_VARIANTS, parse_variants
from reseg_tf.export.tflite_analysis import tflite_operators_and_gpu_check
from reseg_tf.export.verify import format_report_table
from reseg_tf.inference import model_input_size
from reseg_tf.model_io import load_reseg_model
from reseg_tf.run_files import atomic_write_json

DEFAULT_EXPORT_ROOT = "saved_models"


@dataclasses.dataclass
class ExportResult:
    """What `export_model` wrote and measured.

    Attributes:
        output_dir: the export folder.
        version: the SavedModel version number written.
        saved_model_dir: `output_dir/saved_model/<version>`.
        tflite_paths: `{variant: path}` of the `.tflite` files.
        onnx_path: the `.onnx` file, or None.
        image_size: `(H, W)` the TFLite models run the model at (its working size).
        report: the verification report (also in `export_report.json`), or `None` without
            verification.
    """

    output_dir: Path
    version: int
    saved_model_dir: Path
    tflite_paths: dict
    image_size: tuple
    report: dict = None
    onnx_path: Path = None
    tflite_input_size: tuple = None  # `(H, W)` of the images the TFLite models take


def resolve_image_size(model, image_size=None):
    """Returns the static `(H, W)` of the TFLite models.

    A fixed-size model only allows its own size. A model that accepts any size needs an
    `image_size`, or is exported at its preset's training size when its config is a preset's.
    """
    from reseg_tf.models import PRESETS, ReSegConfig, config_from_model

    config = config_from_model(model)
    fixed = model.input_shape[1:3]
    if image_size is not None:
        height, width = _two_ints(image_size, "image size")
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
        "for the static TFLite models."
    )


def _two_ints(value, name):
    """`(H, W)` as ints; ValueError naming `name` otherwise."""
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two ints (H, W), got {value!r}.") from None
    return height, width


def _positive_size(value, name):
    """`(H, W)` of two positive ints; ValueError naming `name` otherwise."""
    height, width = _two_ints(value, name)
    if height < 1 or width < 1:
        raise ValueError(f"{name} must be positive, got {height}x{width}.")
    return height, width


def default_output_dir(model):
    return Path(DEFAULT_EXPORT_ROOT) / model.name


def export_model(model_or_path, output_dir=None, *, image_size=None, tflite=TFLITE_VARIANTS,
                 representative_data=None, version=None, verify=True, fail_on_mismatch=True,
                 num_calibration_images=32, num_verification_images=4, tta="none", mc_samples=0,
                 onnx=False, tflite_input_size=None, max_image_pixels=None, max_batch=None):
    """Exports a ReSeg model as a TF Serving SavedModel and TFLite files, and verifies them.

    Args:
        model_or_path: a ReSeg Keras model or the path of its `.keras` file.
        output_dir: export folder; default `saved_models/<model name>/`.
        image_size: `(H, W)` of the static TFLite models; must be the model's own size for a
            fixed-size model. Default: the model's size, or its preset's training size. The
            SavedModel takes images of any size.
        tflite: variants to convert (subset of `TFLITE_VARIANTS`, or a comma-separated string);
            empty for none.
        representative_data: folder of real images (or a CamVid-layout folder) used to
            calibrate `int8` and to verify; default: the embedded sample images, with a warning.
        version: SavedModel version; default the next free integer. Never overwrites.
        verify: reload every artifact and check that it answers like `reseg predict` on the
            verification images at their own size (see `reseg_tf.export.verify`).
        fail_on_mismatch: raise `ExportVerificationError` (publishing nothing) when an artifact
            misses the bounds; `False` only reports it.
        num_calibration_images: images used to calibrate `int8`.
        num_verification_images: images compared with `reseg predict`.
        tta: `"flip"` bakes the flip average (`reseg_tf.averaging`) into the SavedModel and every
            TFLite model: twice the work per image, the answers of `reseg predict --tta flip`.
        mc_samples: not exported (ValueError when > 0): the artifacts are deterministic, one
            answer per image; average sub-networks with `reseg predict --mc-samples`.
        onnx: also write `onnx/<version>/<name>.onnx` (`reseg_tf.export.onnx`; needs the `onnx`
            extra) and verify it in onnxruntime.
        tflite_input_size: `(H, W)` of the images the TFLite models take, e.g. an app's camera
            frames (default: `image_size`). The training resize to `image_size` and the resize
            of the probabilities back are then inside the models, so a runtime that feeds frames
            of that size (MediaPipe's ImageSegmenter) resizes nothing and answers as `reseg
            predict` does.
        max_image_pixels: most pixels of one image a serving signature takes (default
            `signatures.DEFAULT_MAX_IMAGE_PIXELS`); larger images are refused from their header.
        max_batch: most images of one serving request (default `signatures.DEFAULT_MAX_BATCH`).

    Returns:
        An `ExportResult`.
    """
    import keras

    from reseg_tf.models import config_from_model

    from reseg_tf.averaging import check_averaging

    model = load_reseg_model(model_or_path)
    config = config_from_model(model)
    tta, _ = check_averaging(model, tta)
    limits = ServingLimits(**{name: value for name, value in (("max_image_pixels", max_image_pixels),
                                                              ("max_batch", max_batch)) if value is not None})
    if mc_samples:
        raise ValueError(
            f"--mc-samples {mc_samples}: Monte Carlo dropout is not exported (the SavedModel and TFLite "
            "models give one deterministic answer per image, and N sub-networks cost N times the "
            "work on a phone); export with --tta flip and average sub-networks with "
            "`reseg predict --mc-samples N`.")
    variants = parse_variants(tflite)
    if tflite_input_size is not None:
        if not variants:
            raise ValueError("tflite_input_size (--tflite-input-size) sets the TFLite models' input, but no "
                             "TFLite variant is asked for (--tflite).")
        tflite_input_size = _positive_size(tflite_input_size, "tflite_input_size")
    formats = requested_formats(variants, onnx, tflite_input_size)
    for export_format in formats:
        export_format.check()
    size = resolve_image_size(model, image_size)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(model)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output {str(output_dir)!r} exists and is not a folder.")
    files = (representative_files(representative_data, need_real_images="int8" in variants)
             if verify or "int8" in variants else None)
    calibration = (load_images(spread_files(files, num_calibration_images), tflite_input_size or size)
                   if "int8" in variants else None)
    if verify:
        verification = (read_images(spread_files(files[::-1], num_verification_images)) if files
                        else list(synthetic_images(num_verification_images, size)))

    context = ExportContext(model, config, size, tta, calibration, verification if verify else None, limits)
    saved_model_root = output_dir / SavedModelFormat.folder
    saved_model_root.mkdir(parents=True, exist_ok=True)
    if version is None:  # one more than the highest version of any format, so none is reused
        version = max(next_version(output_dir / export_format.folder)
                      for export_format in ExportFormat.__subclasses__())
    version = check_version(saved_model_root, version)
    for export_format in formats:
        if (output_dir / export_format.folder / str(version)).exists():
            raise FileExistsError(f"{export_format.label} folder {str(output_dir / export_format.folder / str(version))!r} "
                                  "already exists; refusing to overwrite it.")
    report_header = {"model": model.name, "version": version, "image_size": list(size), "tta": tta,
                     "tflite_input_size": list(tflite_input_size or size), "serving_limits": limits.as_dict()}
    scratch = Path(tempfile.mkdtemp(prefix=f".tmp-export-{version}-", dir=saved_model_root))
    written = {}  # format -> {artifact: path in scratch}
    try:
        for export_format in formats:
            print(f"writing {export_format.label} (version {version}) ...")
            written[export_format] = export_format.write(context, scratch / export_format.folder)

        report = None
        if verify:
            sizes = sorted({f"{image.shape[0]}x{image.shape[1]}" for image in verification})
            print(f"verifying on {len(verification)} {'real' if files else 'synthetic'} images "
                  f"({', '.join(sizes)}) against reseg predict ...")
            rows = []
            for export_format in formats:
                format_rows = export_format.verify(context, written[export_format])
                for row in format_rows:  # report the published locations, not the scratch ones
                    row["path"] = row["path"].replace(str(scratch / export_format.folder),
                                                      str(output_dir / export_format.folder / str(version)))
                rows += format_rows
            report = {
                **report_header, "num_classes": config.num_classes, "class_names": list(config.class_names),
                "verification_images": "real" if files else "synthetic",
                "num_verification_images": len(verification),
                "verification_image_sizes": sizes,
                "keras_version": keras.__version__, "rows": rows,
            }
            print(format_report_table(rows))
            failed = [f"{row['artifact']} ({'; '.join(row['problems'])})" for row in rows if not row["passed"]]
            if failed and fail_on_mismatch:
                raise ExportVerificationError(
                    f"export verification failed for {', '.join(failed)}; nothing was published "
                    "(pass verify=False / --no-verify to export anyway).")

        published = {}
        for export_format in formats:
            final = output_dir / export_format.folder / str(version)
            final.parent.mkdir(exist_ok=True)
            publish(scratch / export_format.folder, final)
            published[export_format.folder] = {
                name: final / path.relative_to(scratch / export_format.folder)
                for name, path in written[export_format].items()}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    final_tflite = published.get(TFLiteFormat.folder, {})
    write_serving_doc(output_dir / "serving.md", model.name, saved_model_root, config, size,
                      fixed_size=model_input_size(model), version=version, tta=tta,
                      tflite_input_size=tflite_input_size, limits=limits)
    if report is None:
        report = {**report_header, "rows": [
            {"artifact": f"tflite_{v}", "path": str(p), "size_bytes": p.stat().st_size,
             **tflite_operators_and_gpu_check(p)} for v, p in final_tflite.items()]}
    atomic_write_json(output_dir / "export_report.json", report)
    print(f"exported {model.name!r} version {version} to {output_dir}")
    return ExportResult(output_dir=output_dir, version=version,
                        saved_model_dir=saved_model_root / str(version), tflite_paths=final_tflite,
                        image_size=size, report=report, onnx_path=published.get(OnnxFormat.folder, {}).get("onnx"),
                        tflite_input_size=tuple(tflite_input_size or size) if variants else None)
