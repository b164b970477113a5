"""Export to TF Serving SavedModel and TFLite, verified against `reseg predict` on a tiny trained model."""
import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import reseg_tf
from reseg_tf import cli, export
from reseg_tf.export.onnx import onnx_available, onnx_probabilities, onnx_session
from reseg_tf.inference import Predictor
from reseg_tf.models import with_input_size
from helpers import tiny_model

SIZE = (32, 32)
PARITY_BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "parity_bench.py"
PALETTE = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], np.float32)


def block_images(count, size=SIZE, block=8, seed=0):
    """Images of 8x8 blocks whose color (noisy red / green / blue) is the pixel's class."""
    rng = np.random.default_rng(seed)
    grid = (size[0] // block, size[1] // block)
    labels = rng.integers(0, 3, (count, *grid))
    images = PALETTE[labels] + rng.normal(0, 25, (count, *grid, 3))
    images = np.repeat(np.repeat(images, block, 1), block, 2) + rng.normal(0, 10, (count, *size, 3))
    masks = np.repeat(np.repeat(labels, block, 1), block, 2).astype(np.int32)
    return np.clip(images, 0, 255).astype(np.uint8), masks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained until its probabilities are confident, its file, and image folders."""
    keras.utils.set_random_seed(1)
    root = tmp_path_factory.mktemp("export")
    model = tiny_model()
    images, masks = block_images(32)
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    model.fit(images.astype(np.float32), masks, epochs=15, batch_size=8, verbose=0)
    model_path = root / "tiny.keras"
    model.save(model_path)
    representative = root / "representative"
    representative.mkdir()
    for i, image in enumerate(block_images(12, seed=1)[0]):
        Image.fromarray(image).save(representative / f"{i:02d}.png")
    return model, model_path, representative


@pytest.fixture(scope="module")
def fixed_size(trained):
    """The trained model as a fixed-size (32x32) model: its working size is not the images'."""
    model, _, _ = trained
    return with_input_size(model, SIZE)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    _, model_path, representative = trained
    output = tmp_path_factory.mktemp("export_out") / "tiny"
    return export.export_model(model_path, output, image_size=SIZE, representative_data=representative)


def test_model_is_trained(trained):
    model, _, _ = trained
    images, masks = block_images(4, seed=5)
    probabilities = model.predict(images.astype(np.float32), verbose=0)
    assert np.mean(probabilities.argmax(-1) == masks) > 0.95
    assert probabilities.max(-1).mean() > 0.6  # far from uniform (1/3)


def test_verification_fails_on_artifacts_whose_probabilities_drift(fixed_size, tmp_path):
    """A corrupted copy: the model with its classifier's bias moved a little, exported and
    verified against the unchanged model; both checks must see the drift and its size."""
    drifted = with_input_size(fixed_size, SIZE)  # a copy
    classifier = next(layer for layer in reversed(drifted.layers) if layer.weights)
    kernel, bias = classifier.get_weights()
    classifier.set_weights([kernel, bias + np.array([0.02, 0.0, -0.02], np.float32)])
    images = list(block_images(3, seed=11)[0])
    reference = export.reference_probabilities(fixed_size, images)
    drift = max(float(np.abs(d - r).max()) for d, r in
                zip(export.reference_probabilities(drifted, images), reference))
    assert drift > 10 * export.FP32_MAX_PROB_DIFF
    result = export.export_model(drifted, tmp_path / "drifted", image_size=SIZE, tflite="fp32", verify=False)

    served = export.verify_saved_model(result.saved_model_dir, fixed_size, images, reference)
    assert not served["passed"] and "max |prob diff|" in " ".join(served["problems"])
    assert served["max_prob_diff"] == pytest.approx(drift, abs=1e-5)
    assert served["prob_diff_by_signature"]["serving_default"] == pytest.approx(drift, abs=1e-5)
    lite = export.verify_tflite(result.tflite_paths["fp32"], "fp32", images, reference, SIZE)
    assert not lite["passed"] and lite["max_prob_diff"] == pytest.approx(drift, abs=1e-5)
    # The unchanged model's own artifacts pass the same checks.
    assert export.verify_saved_model(result.saved_model_dir, drifted, images)["passed"]


def test_layout_report_and_serving_doc(exported):
    output = exported.output_dir
    assert exported.version == 1
    assert exported.saved_model_dir == output / "saved_model" / "1"
    assert (exported.saved_model_dir / "saved_model.pb").is_file()
    assert sorted(exported.tflite_paths) == sorted(export.TFLITE_VARIANTS)
    assert all(path.parent == output / "tflite" / "1" for path in exported.tflite_paths.values())
    assert not [p for p in (output / "saved_model").iterdir() if p.name.startswith(".")]

    report = json.loads((output / "export_report.json").read_text())
    assert report == json.loads(json.dumps(exported.report))
    rows = {row["artifact"]: row for row in report["rows"]}
    from reseg_tf.export.mediapipe_segmenter import mediapipe_installed

    # With the mediapipe extra (CI installs it), each TFLite variant also runs in MediaPipe.
    mediapipe_rows = {f"mediapipe_{v}" for v in export.TFLITE_VARIANTS} if mediapipe_installed() else set()
    assert set(rows) == {"saved_model", *(f"tflite_{v}" for v in export.TFLITE_VARIANTS), *mediapipe_rows}
    assert all(row["passed"] and row["size_bytes"] > 0 and row["latency_ms"] > 0 for row in rows.values())
    assert rows["saved_model"]["max_prob_diff"] < 1e-4
    assert set(rows["saved_model"]["prob_diff_by_signature"]) == {
        "serving_default", "serving_uint8", "serving_bytes", "saved_model_cli_run"}
    assert rows["tflite_fp32"]["max_prob_diff"] < 1e-4
    assert rows["tflite_fp16"]["agreement"] >= 0.995
    assert rows["tflite_int8"]["agreement"] >= 0.97
    for variant in export.TFLITE_VARIANTS:  # operators and the GPU delegate check, per variant
        row = rows[f"tflite_{variant}"]
        assert row["operators"] >= sum(row["top_ops"].values()) > 0
        assert row["gpu_compatible"] == (not row["unsupported_ops"]) and "analyzer_verdict" in row
    assert report["verification_images"] == "real"

    serving = (output / "serving.md").read_text()
    assert "docker run" in serving and "-e MODEL_NAME=tiny" in serving
    assert str((output / "saved_model").resolve()) in serving
    assert '"b64"' in serving and "serving_bytes" in serving and "image_bytes" in serving
    assert "/v1/models/tiny:predict" in serving


def test_saved_model_has_no_gpu_only_ops(exported):
    ops = export.saved_model_op_types(exported.saved_model_dir)
    assert "DecodeImage" in ops or "DecodePng" in ops  # the op walk sees inside functions
    assert not [op for op in ops if "Cudnn" in op]


def test_export_twin_avoids_cudnn_even_where_a_gpu_is_visible(trained, tmp_path, monkeypatch):
    # Keras (and ReNetLayer's "auto" implementation) choose cuDNN from the visible devices, not
    # from tf.device; pretend a GPU is visible to show the hazard and that the twin avoids it.
    model, _, _ = trained
    list_devices = tf.config.list_logical_devices

    def with_fake_gpu(device_type=None):
        if device_type == "GPU":
            return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
        return list_devices(device_type)

    monkeypatch.setattr(tf.config, "list_logical_devices", with_fake_gpu)
    export.write_archive(model, tmp_path / "plain", export.serving_functions(model))
    twin, _ = export.export_twin(model)
    export.write_archive(twin, tmp_path / "twin", export.serving_functions(twin))
    assert "CudnnRNNV3" in export.saved_model_op_types(tmp_path / "plain")
    assert not [op for op in export.saved_model_op_types(tmp_path / "twin") if "Cudnn" in op]


def test_signatures_answer_and_match_keras(trained, exported):
    model, _, _ = trained
    loaded = tf.saved_model.load(str(exported.saved_model_dir))
    images = block_images(2, size=(24, 40), seed=3)[0]  # the model accepts any size
    expected = model.predict(images.astype(np.float32), verbose=0)

    default = loaded.signatures["serving_default"]
    assert default.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 3]
    outputs = default(images=tf.constant(images, tf.float32))
    assert set(outputs) == {"probabilities", "classes"}
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-4)
    assert outputs["classes"].dtype == tf.int32
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(-1))

    from_uint8 = loaded.signatures["serving_uint8"](images=tf.constant(images, tf.uint8))
    np.testing.assert_allclose(from_uint8["probabilities"].numpy(), expected, atol=1e-4)

    encoded = tf.stack([tf.io.encode_png(images[0]), tf.io.encode_png(images[1])])
    from_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(from_bytes["classes"].numpy(), expected.argmax(-1))

    jpeg = loaded.signatures["serving_bytes"](image_bytes=tf.stack([tf.io.encode_jpeg(images[0])]))
    assert jpeg["classes"].shape == (1, 24, 40)

    mixed = tf.stack([tf.io.encode_png(images[0]), tf.io.encode_png(block_images(1)[0][0])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same height and width"):
        loaded.signatures["serving_bytes"](image_bytes=mixed)


def test_fixed_size_model_answers_at_the_size_of_the_images_sent(trained, fixed_size, tmp_path):
    model, _, _ = trained
    loaded = tf.saved_model.load(str(export.export_saved_model(fixed_size, tmp_path / "serving")))
    images = block_images(2, size=(24, 40), seed=3)[0]
    expected = Predictor(fixed_size).probabilities(images).numpy()  # what reseg predict computes
    assert expected.shape == (2, 24, 40, 3)
    # Run at 24x40 instead of the working size, the same weights answer differently.
    assert np.abs(model.predict(images.astype(np.float32), verbose=0) - expected).max() > 1e-3

    default = loaded.signatures["serving_default"]
    assert default.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 3]
    outputs = default(images=tf.constant(images, tf.float32))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-4)
    assert outputs["classes"].dtype == tf.int32
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(-1))

    from_uint8 = loaded.signatures["serving_uint8"](images=tf.constant(images, tf.uint8))
    np.testing.assert_allclose(from_uint8["probabilities"].numpy(), expected, atol=1e-4)

    serving_bytes = loaded.signatures["serving_bytes"]
    from_bytes = serving_bytes(image_bytes=tf.stack([tf.io.encode_png(image) for image in images]))
    np.testing.assert_allclose(from_bytes["probabilities"].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(from_bytes["classes"].numpy(), expected.argmax(-1))
    larger = block_images(1, size=(48, 64), seed=4)[0]
    assert serving_bytes(image_bytes=tf.stack([tf.io.encode_png(larger[0])]))["classes"].shape == (1, 48, 64)

    mixed = tf.stack([tf.io.encode_png(images[0]), tf.io.encode_png(larger[0])])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same height and width"):
        serving_bytes(image_bytes=mixed)


def write_images(folder, images):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    return sorted(folder.glob("*.png"))


@pytest.mark.slow
def test_fixed_size_export_is_verified_at_the_images_own_size(fixed_size, tmp_path):
    representative = tmp_path / "representative"
    write_images(representative, block_images(4, size=(40, 56), seed=8)[0])
    result = export.export_model(fixed_size, tmp_path / "out", tflite="fp32", representative_data=representative)
    assert result.image_size == SIZE
    assert result.report["verification_image_sizes"] == ["40x56"]
    rows = {row["artifact"]: row for row in result.report["rows"]}
    assert all(row["passed"] for row in rows.values())
    assert set(rows["saved_model"]["prob_diff_by_signature"]) == {
        "serving_default", "serving_uint8", "serving_bytes", "saved_model_cli_run"}
    assert rows["saved_model"]["max_prob_diff"] < 1e-4
    assert rows["tflite_fp32"]["max_prob_diff"] < 1e-4
    assert "runs at 32x32" in (result.output_dir / "serving.md").read_text()


@pytest.mark.slow
def test_export_bakes_the_flip_average_in(fixed_size, tmp_path):
    representative = tmp_path / "representative"
    write_images(representative, block_images(3, size=(40, 56), seed=10)[0])
    # Checked here against Predictor directly (the verification itself is tested above).
    result = export.export_model(fixed_size, tmp_path / "out", tflite="fp32", representative_data=representative,
                                 tta="flip", verify=False)
    assert result.report["tta"] == "flip"
    image = block_images(1, size=(40, 56), seed=11)[0][0]
    served = tf.saved_model.load(str(result.saved_model_dir)).signatures["serving_default"](
        images=tf.constant(image[None], tf.float32))["probabilities"].numpy()
    flip = Predictor(fixed_size, tta="flip").probabilities(image[None]).numpy()
    single = Predictor(fixed_size).probabilities(image[None]).numpy()
    assert np.abs(served - flip).max() < 1e-4
    assert np.abs(served - single).max() > 1e-3
    interpreter = export.load_tflite(result.tflite_paths["fp32"])
    on_phone = export.tflite_image_probabilities(interpreter)(image)
    assert np.abs(on_phone - flip).max() < 1e-4
    assert "horizontal mirror" in (result.output_dir / "serving.md").read_text()


@pytest.mark.slow
def test_every_exported_path_segments_like_reseg_predict(fixed_size, tmp_path):
    spec = importlib.util.spec_from_file_location("parity_bench", PARITY_BENCH)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)

    files = write_images(tmp_path / "images", block_images(3, size=(40, 56), seed=9)[0])
    agreement = parity.agreement_with_predict(fixed_size, files, tmp_path / "work", variants=("fp32",))
    assert set(agreement) == {"savedmodel_bytes", "savedmodel_default", "tflite_fp32"}
    assert agreement["savedmodel_bytes"] >= 0.999
    assert agreement["savedmodel_default"] >= 0.999
    assert agreement["tflite_fp32"] >= 0.99


def test_size_breakdown_accounts_for_the_weights(trained, exported):
    model, _, _ = trained
    fp32 = export.tflite_size_breakdown(exported.tflite_paths["fp32"])
    int8 = export.tflite_size_breakdown(exported.tflite_paths["int8"])
    assert fp32["constant_bytes"] >= 4 * model.count_params()
    assert int8["constant_bytes"] < fp32["constant_bytes"] / 2  # weights stored in 8 bits
    assert int8["quantization_bytes"] > 0 == fp32["quantization_bytes"]
    assert fp32["file_bytes"] > fp32["constant_bytes"] and fp32["operators"] > 0 and fp32["tensors"] > 0
    # Internal tensor names are stripped (only the input's and the output's are left).
    assert fp32["tensor_name_bytes"] < 200 and int8["tensor_name_bytes"] < 200, (fp32, int8)



@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_exported_tflite_shares_equal_metadata_and_runs_the_same(exported, variant, tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils
    from reseg_tf.export.mediapipe_metadata import strip_appended_archive
    from reseg_tf.export.tflite import compact_tflite

    compact = exported.tflite_paths[variant].read_bytes()
    # The plain flatbuffer writer stores every shape, quantization table and option table per
    # tensor / operator again: the same model, unshared.
    unshared = bytes(flatbuffer_utils.convert_object_to_bytearray(
        flatbuffer_utils.read_model_from_bytearray(bytearray(compact))))
    (tmp_path / "unshared.tflite").write_bytes(unshared)
    assert len(compact) < 0.97 * len(unshared), (len(compact), len(unshared))
    assert len(compact_tflite(unshared)) == len(strip_appended_archive(compact))  # labels.txt follows the model
    same = export.tflite_size_breakdown(tmp_path / "unshared.tflite")
    assert {**same, "file_bytes": 0} == {**export.tflite_size_breakdown(exported.tflite_paths[variant]), "file_bytes": 0}

    images, _ = block_images(2, seed=5)
    outputs = []
    for path in (exported.tflite_paths[variant], tmp_path / "unshared.tflite"):
        predict = export.tflite_predict_fn(export.load_tflite(path))
        outputs.append(np.concatenate([predict(image) for image in images]))
    np.testing.assert_array_equal(outputs[0], outputs[1])

@pytest.mark.parametrize("variant", export.TFLITE_VARIANTS)
def test_tflite_variant_loads_without_flex_and_agrees(trained, exported, variant):
    model, _, _ = trained
    interpreter = export.load_tflite(exported.tflite_paths[variant])
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [op for op in ops if op.startswith("Flex")]
    assert tuple(interpreter.get_input_details()[0]["shape"]) == (1, *SIZE, 3)
    expected_input = np.uint8 if variant == "int8" else np.float32
    assert interpreter.get_input_details()[0]["dtype"] == expected_input
    if variant == "int8":  # raw pixels, as MediaPipe and apps copy them in
        assert interpreter.get_input_details()[0]["quantization"] == (1.0, 0)

    images, _ = block_images(4, seed=7)
    predict = export.tflite_predict_fn(interpreter)
    probabilities = np.concatenate([predict(image) for image in images])
    expected = model.predict(images.astype(np.float32), verbose=0)
    agreement = np.mean(probabilities.argmax(-1) == expected.argmax(-1))
    if variant == "fp32":
        assert np.abs(probabilities - expected).max() < 1e-4
    bound = {"fp32": 1.0, "fp16": 0.995, "dynamic": 0.97, "int8": 0.97}[variant]
    assert agreement >= bound


def test_export_again_makes_new_version_and_never_overwrites(trained, exported):
    _, model_path, _ = trained
    first_pb = (exported.saved_model_dir / "saved_model.pb").read_bytes()
    second = export.export_model(model_path, exported.output_dir, image_size=SIZE, tflite="fp32", verify=False)
    assert second.version == 2
    assert (exported.output_dir / "saved_model" / "2" / "saved_model.pb").is_file()
    assert (exported.saved_model_dir / "saved_model.pb").read_bytes() == first_pb
    assert exported.tflite_paths["int8"].is_file()  # version 1's files are untouched
    with pytest.raises(FileExistsError, match="saved_model/1"):
        export.export_model(model_path, exported.output_dir, image_size=SIZE, tflite=(), version=1)


def test_a_version_left_by_any_format_is_never_reused(trained, tmp_path):
    """A version whose SavedModel was deleted but whose TFLite folder remains is skipped."""
    _, model_path, _ = trained
    output = tmp_path / "out"
    (output / "tflite" / "1").mkdir(parents=True)
    (output / "tflite" / "1" / "mine.tflite").write_bytes(b"keep")
    result = export.export_model(model_path, output, image_size=SIZE, tflite="fp32", verify=False)
    assert result.version == 2 and (output / "tflite" / "1" / "mine.tflite").read_bytes() == b"keep"
    with pytest.raises(FileExistsError, match="TFLite folder"):
        export.export_model(model_path, output, image_size=SIZE, tflite="fp32", verify=False, version=1)
    assert not (output / "saved_model" / "1").exists()


def test_export_saved_model_alone_numbers_versions(trained, tmp_path):
    model, _, _ = trained
    first = export.export_saved_model(model, tmp_path / "serving")
    second = export.export_saved_model(model, tmp_path / "serving")
    assert (first.name, second.name) == ("1", "2")
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["1", "2"]
    loaded = tf.saved_model.load(str(second))
    assert set(loaded.signatures) == set(export.SIGNATURES)


def test_tflite_at_the_working_size_is_held_to_the_fp32_probability_bound(trained, tmp_path, monkeypatch):
    """Without --tflite-input-size nothing is resized inside, so fp32 must match predict's
    probabilities (not merely its classes)."""
    from reseg_tf.export import verify

    _, model_path, representative = trained
    monkeypatch.setattr(verify, "FP32_MAX_PROB_DIFF", 0.0)
    with pytest.raises(export.ExportVerificationError, match=r"tflite_fp32 \(max \|prob diff\|"):
        export.export_model(model_path, tmp_path / "out", image_size=SIZE, tflite="fp32",
                            representative_data=representative)


def test_failed_verification_publishes_nothing(trained, tmp_path, monkeypatch):
    _, model_path, representative = trained
    monkeypatch.setitem(export.MIN_AGREEMENT, "fp16", 1.01)
    with pytest.raises(export.ExportVerificationError, match="tflite_fp16"):
        export.export_model(model_path, tmp_path / "out", image_size=SIZE, tflite="fp16",
                            representative_data=representative)
    assert list((tmp_path / "out" / "saved_model").iterdir()) == []
    assert not (tmp_path / "out" / "tflite").exists()
    assert not (tmp_path / "out" / "export_report.json").exists()


def test_converter_crash_or_failure_in_subprocess_is_a_clear_error(tmp_path):
    with pytest.raises(export.TFLiteConversionError, match="TFLite converter .*fp32"):
        export.convert_tflite(tmp_path / "no_such_saved_model", "fp32", tmp_path / "x.tflite", isolate=True)
    assert not (tmp_path / "x.tflite").exists()


def test_bad_model_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export.load_reseg_model(tmp_path / "missing.keras")
    with pytest.raises(IsADirectoryError, match="is a directory without a model"):  # a model folder loads
        export.load_reseg_model(tmp_path)
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="corrupt.keras"):
        export.load_reseg_model(corrupt)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match="dense.keras.*not a ReSeg model"):
        export.load_reseg_model(tmp_path / "dense.keras")


def test_image_size_must_be_allowed_by_the_model():
    fixed = tiny_model(input_shape=(32, 32, 3), name="fixed")
    assert export.resolve_image_size(fixed) == (32, 32)
    with pytest.raises(ValueError, match="64x64 is not allowed.*fixed at 32"):
        export.resolve_image_size(fixed, (64, 64))
    any_size = tiny_model()
    assert export.resolve_image_size(any_size, (48, 64)) == (48, 64)
    with pytest.raises(ValueError, match="1x1 is not allowed.*at least 2x2"):
        export.resolve_image_size(any_size, (1, 1))
    with pytest.raises(ValueError, match="accepts any image size; pass image_size"):
        export.resolve_image_size(any_size)
    assert export.resolve_image_size(reseg_tf.build_model("demo")) == (180, 240)


def test_bad_representative_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        export.find_images(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty.*has no images"):
        export.find_images(empty)
    (empty / "broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.png: not a readable image"):
        export.load_images(export.find_images(empty), SIZE)
    camvid = tmp_path / "camvid"
    (camvid / "train").mkdir(parents=True)
    (camvid / "trainannot").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(camvid / "train" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(camvid / "trainannot" / "a.png")
    assert export.find_images(camvid) == [camvid / "train" / "a.png"]


def test_int8_without_images_is_a_clear_error(trained, tmp_path, monkeypatch):
    _, model_path, _ = trained
    monkeypatch.setattr(export.images, "sample_data_dir", lambda: None)
    with pytest.raises(ValueError, match="int8 TFLite needs real images"):
        export.export_model(model_path, tmp_path / "out", image_size=SIZE, tflite="int8")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out" / "saved_model").glob("[0-9]*"))


@pytest.mark.skipif(not onnx_available(), reason='the onnx extra is not installed: pip install -e ".[onnx]"')
def test_onnx_export_answers_like_reseg_predict_at_any_size(fixed_size, tmp_path):
    result = export.export_model(fixed_size, tmp_path / "out", tflite=(), onnx=True, tta="flip", verify=False)
    path = result.onnx_path
    assert path == tmp_path / "out" / "onnx" / "1" / "tiny.onnx" and path.is_file()
    images = list(block_images(2, size=(40, 56), seed=12)[0]) + list(block_images(1, size=(24, 40), seed=13)[0])
    flip = export.reference_probabilities(fixed_size, images, tta="flip")
    row = export.verify_onnx(path, images, flip)
    assert row["passed"] and row["agreement"] >= 0.995, row
    # The flip average is in the graph: far closer to predict --tta flip than to a single pass.
    session = onnx_session(path)
    answers = [onnx_probabilities(session, image) for image in images]
    single = export.reference_probabilities(fixed_size, images)
    to_flip = np.mean([np.abs(a - r).mean() for a, r in zip(answers, flip)])
    to_single = np.mean([np.abs(a - r).mean() for a, r in zip(answers, single)])
    assert to_flip < to_single / 10, (to_flip, to_single)


def test_cli_export(trained, tmp_path, capsys):
    _, model_path, _ = trained
    output = tmp_path / "cli_out"
    code = cli.main(["export", "--model", str(model_path), "--output", str(output),
                     "--image-size", "32", "32", "--tflite", "fp32", "--no-verify"])
    assert code == 0
    assert (output / "saved_model" / "1" / "saved_model.pb").is_file()
    assert (output / "tflite" / "1" / "tiny_fp32.tflite").is_file()

    assert cli.main(["export", "--model", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(model_path), "--output", str(output),
                     "--image-size", "32", "32", "--tflite", "fp64"]) == 2
    assert "unknown TFLite variant" in capsys.readouterr().err

    parser = cli.build_parser()
    export_parser = next(action for action in parser._subparsers._group_actions).choices["export"]
    assert all(action.help for action in export_parser._actions)


class _TextFormat(export.ExportFormat):
    """A stand-in for a new format: one text file of the model's class names, whose check passes
    or fails as asked."""

    folder = "text"
    label = "text"

    def __init__(self, passes):
        self.passes = passes
        self.verified_with = None

    def write(self, context, folder):
        folder.mkdir()
        path = folder / f"{context.model.name}.txt"
        path.write_text(",".join(context.config.class_names))
        return {"text": path}

    def verify(self, context, artifacts):
        self.verified_with = len(context.verification)
        problems = [] if self.passes else ["answers differ"]
        return [{"artifact": "text", "path": str(artifacts["text"]), "size_bytes": 1, "latency_ms": 1.0,
                 "passed": self.passes, "problems": problems}]


@pytest.mark.parametrize("passes", [True, False])
def test_a_new_format_is_written_verified_and_published_through_the_one_loop(trained, tmp_path, monkeypatch, passes):
    """A format added to `requested_formats` needs no other change: it is verified on the same
    images, published as DIR/<folder>/<version>/ beside the others, and its failed check stops
    every format from being published."""
    from reseg_tf.export import orchestrate

    _, model_path, representative = trained
    added = _TextFormat(passes)
    monkeypatch.setattr(orchestrate, "requested_formats",
                        lambda *args: export.requested_formats(*args) + [added])
    output = tmp_path / "out"
    if passes:
        result = export.export_model(model_path, output, image_size=SIZE, tflite="fp32",
                                     representative_data=representative, num_verification_images=3)
        assert (output / "text" / "1" / "tiny.txt").read_text() == ",".join(result.report["class_names"])
        assert added.verified_with == 3
        rows = {row["artifact"]: row for row in result.report["rows"]}
        assert rows["text"]["path"] == str(output / "text" / "1" / "tiny.txt")
        assert {"saved_model", "tflite_fp32", "text"} <= set(rows)
        assert result.tflite_paths["fp32"] == output / "tflite" / "1" / "tiny_fp32.tflite"
    else:
        with pytest.raises(export.ExportVerificationError, match="text \\(answers differ\\)"):
            export.export_model(model_path, output, image_size=SIZE, tflite="fp32",
                                representative_data=representative, num_verification_images=3)
        published = [path for folder in ("saved_model", "tflite", "text") for path in (output / folder).glob("[0-9]*")]
        assert published == []
        assert not [p for p in (output / "saved_model").iterdir()]  # no scratch left behind


def test_serving_doc_and_saved_model_follow_the_one_signature_table(exported):
    """Every signature of `SERVING_SIGNATURES` is in the SavedModel with its input name and dtype,
    and in serving.md's table."""
    loaded = tf.saved_model.load(str(exported.saved_model_dir))
    serving = (exported.output_dir / "serving.md").read_text()
    for signature in export.SERVING_SIGNATURES:
        _, inputs = loaded.signatures[signature.name].structured_input_signature
        assert list(inputs) == [signature.input_name]
        assert inputs[signature.input_name].dtype.name == signature.dtype
        assert f"| `{signature.name}` | `{signature.input_name}` {signature.dtype}" in serving


def test_tflite_for_camera_frames_resizes_inside_and_answers_like_predict(fixed_size, trained, tmp_path):
    """--tflite-input-size: the files take frames of that size, run the model at its own size
    with the training resize inside, and answer at the frame's size as `reseg predict` does."""
    _, _, representative = trained
    frame = (40, 56)
    result = export.export_model(fixed_size, tmp_path / "out", tflite="fp32,int8", tflite_input_size=frame,
                                 representative_data=representative)
    rows = {row["artifact"]: row for row in result.report["rows"]}
    assert rows["tflite_fp32"]["passed"] and rows["tflite_int8"]["passed"], rows
    assert result.report["tflite_input_size"] == list(frame) and result.report["image_size"] == list(SIZE)
    frames = list(block_images(3, size=frame, seed=21)[0])
    expected = Predictor(fixed_size).probabilities(np.stack(frames)).numpy()
    for variant in ("fp32", "int8"):
        interpreter = export.load_tflite(result.tflite_paths[variant])
        assert tuple(interpreter.get_input_details()[0]["shape"]) == (1, *frame, 3)
        assert tuple(interpreter.get_output_details()[0]["shape"]) == (1, *frame, 3)
        predict = export.tflite_predict_fn(interpreter)
        answers = np.concatenate([predict(image) for image in frames])
        agreement = np.mean(answers.argmax(-1) == expected.argmax(-1))
        if variant == "fp32":  # a pixel value rounded one apart by the in-graph resize moves a few
            assert np.abs(answers - expected).mean() < 1e-5 and np.abs(answers - expected).max() < 1e-2
        assert agreement >= (0.999 if variant == "fp32" else 0.97), (variant, agreement)
    serving = (result.output_dir / "serving.md").read_text()
    assert f"take one `(1, {frame[0]}, {frame[1]}, 3)` image" in serving and "inside the file" in serving
    assert result.tflite_input_size == frame and result.image_size == SIZE
    assert rows["tflite_fp32"]["verified_on_images_resized_to"] == list(frame)
    with pytest.raises(ValueError, match="tflite_input_size must be positive"):
        export.export_model(fixed_size, tmp_path / "bad", tflite="fp32", tflite_input_size=(0, 56), verify=False)
    with pytest.raises(ValueError, match="no TFLite variant"):
        export.export_model(fixed_size, tmp_path / "bad", tflite=(), tflite_input_size=frame, verify=False)
