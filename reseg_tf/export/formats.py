"""Export formats behind one interface: each writes its artifacts, verifies them, and is
published as `DIR/<folder>/<version>/`.

`export_model` (`orchestrate.py`) builds the formats asked for, then loops over them three
times: every format writes into a scratch folder, every artifact is verified against
`reseg predict`, and only when all pass is each scratch folder renamed into place. Adding a
format (say Core ML) is one `ExportFormat` subclass here and one line in `requested_formats`;
the loops, the version numbering (over every subclass's folder), the never-overwrite rule and
the report are shared.
"""
import dataclasses
from pathlib import Path


@dataclasses.dataclass
class ExportContext:
    """What every format needs: the model and the images that check it.

    Attributes:
        model: the ReSeg Keras model being exported.
        config: its `ReSegConfig`.
        image_size: `(H, W)` the static (TFLite) models run the model at: its working size.
        tta: the test-time augmentation baked into every artifact (`"none"` or `"flip"`).
        calibration: images at the TFLite models' input size that calibrate int8, or None.
        verification: uint8 RGB images at their own sizes, or None without verification.
        limits: the serving signatures' `signatures.ServingLimits` (None: the defaults).
    """

    model: object
    config: object
    image_size: tuple
    tta: str = "none"
    calibration: object = None
    verification: list = None
    limits: object = None
    _references: dict = dataclasses.field(default_factory=dict, repr=False)

    def reference(self, image_size=None):
        """`reseg predict`'s probabilities of the verification images (at `image_size` as
        `--image-size` sets it, default the model's own working size), computed once."""
        from reseg_tf.export.verify import reference_probabilities
        from reseg_tf.inference import model_input_size

        if image_size is not None and tuple(image_size) == model_input_size(self.model):
            image_size = None
        key = None if image_size is None else tuple(image_size)
        if key not in self._references:
            self._references[key] = reference_probabilities(self.model, self.verification, key, self.tta)
        return self._references[key]


class ExportFormat:
    """One export format.

    Subclasses set `folder` (published as `DIR/<folder>/<version>/`) and `label` (for messages),
    and implement `write` and `verify`; `check` runs before anything is written.
    """

    folder = None
    label = None

    def check(self):
        """Raises a clear error when the format cannot be written here (a missing extra)."""

    def write(self, context, folder):
        """Writes the artifacts into `folder` (which it creates; its parent is the export's
        scratch folder); returns `{artifact: path}`."""
        raise NotImplementedError

    def verify(self, context, artifacts):
        """Report rows (dicts with `artifact`, `path`, `passed`, `problems`, ...) of `artifacts`."""
        raise NotImplementedError


class SavedModelFormat(ExportFormat):
    """The TF Serving SavedModel (`saved_model.py`): its version folder is the SavedModel."""

    folder = "saved_model"
    label = "SavedModel"

    def write(self, context, folder):
        from reseg_tf.export.saved_model import write_serving_saved_model

        write_serving_saved_model(context.model, folder, context.tta, context.limits)
        return {"saved_model": Path(folder)}

    def verify(self, context, artifacts):
        from reseg_tf.export.verify import verify_saved_model

        return [verify_saved_model(artifacts["saved_model"], context.model, context.verification,
                                   context.reference(), context.limits)]


class TFLiteFormat(ExportFormat):
    """Static-size TFLite models (`tflite.py`), one file per variant; verified in `ai_edge_litert`
    and, with the `mediapipe` extra, in MediaPipe's ImageSegmenter; each row also gives the
    file's operators and its GPU delegate check (`tflite_analysis.py`).

    `input_size`: the size of the images the models take (an app's camera frames), default the
    working size; with another size the training resize and the resize back are in the graph
    (`saved_model.write_static_saved_model`), and the models are verified on the verification
    images resized to that size, the frames such an app feeds them.
    """

    folder = "tflite"
    label = "TFLite"

    def __init__(self, variants, input_size=None):
        self.variants = tuple(variants)
        self.input_size = None if input_size is None else tuple(int(side) for side in input_size)

    def write(self, context, folder):
        from reseg_tf.export.tflite import convert_variants

        Path(folder).mkdir()
        # The static SavedModel they convert from goes beside `folder`, in the export's scratch.
        return convert_variants(context.model, self.variants, context.image_size, context.calibration,
                                Path(folder).parent, folder, context.tta, self.input_size)

    def verify(self, context, artifacts):
        from reseg_tf.export.mediapipe_segmenter import mediapipe_installed, verify_mediapipe
        from reseg_tf.export.tflite_analysis import tflite_operators_and_gpu_check
        from reseg_tf.export.verify import reference_probabilities, verify_tflite
        from reseg_tf.inference import to_working_size

        input_size = self.input_size or tuple(context.image_size)
        resizes_inside = input_size != tuple(context.image_size)
        if resizes_inside:  # checked on the frames such an app sends: the images at the input size
            images = [to_working_size(image.astype("float32"), input_size).numpy().astype("uint8")
                      for image in context.verification]
            reference = reference_probabilities(context.model, images, context.image_size, context.tta)
        else:
            images = context.verification
            # A model that accepts any size answers `reseg predict --image-size` at the static size.
            reference = context.reference(context.image_size)
        rows = [verify_tflite(path, variant, images, reference, input_size, resizes_inside=resizes_inside)
                for variant, path in artifacts.items()]
        for row, path in zip(rows, artifacts.values()):
            row.update(tflite_operators_and_gpu_check(path))
        if mediapipe_installed():  # the `mediapipe` extra
            rows += [verify_mediapipe(path, variant, images, reference, context.config.class_names)
                     for variant, path in artifacts.items()]
        if resizes_inside:
            for row in rows:
                row["verified_on_images_resized_to"] = list(input_size)
        return rows


class OnnxFormat(ExportFormat):
    """One ONNX file that takes images of any size (`onnx.py`), verified in onnxruntime."""

    folder = "onnx"
    label = "ONNX"

    def check(self):
        from reseg_tf.export.onnx import require_onnx

        require_onnx()

    def write(self, context, folder):
        from reseg_tf.export.onnx import write_onnx

        return {"onnx": write_onnx(context.model, Path(folder) / f"{context.model.name}.onnx", context.tta)}

    def verify(self, context, artifacts):
        from reseg_tf.export.verify import verify_onnx

        return [verify_onnx(artifacts["onnx"], context.verification, context.reference())]


def requested_formats(tflite_variants=(), onnx=False, tflite_input_size=None):
    """The formats of one export, in the order they are written: the SavedModel always, TFLite
    when variants are asked for (taking images of `tflite_input_size`), ONNX when asked for."""
    formats = [SavedModelFormat()]
    if tflite_variants:
        formats.append(TFLiteFormat(tflite_variants, tflite_input_size))
    if onnx:
        formats.append(OnnxFormat())
    return formats
