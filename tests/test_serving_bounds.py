"""The SavedModel's bounded inputs (sizes read from file headers before decoding, batch, rank) and
its compact answer `serving_mask`, on a tiny fixed-size model exported with small limits."""
import io
import json
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from reseg_tf import cli, export
from reseg_tf.export.image_headers import gif_first_frame
from reseg_tf.export.verify import minimal_png
from reseg_tf.inference import Predictor, read_image_file
from helpers import tiny_model

MAX_PIXELS, MAX_BATCH = 2000, 3
UNDER, OVER = (40, 48), (50, 48)  # (height, width): 1920 and 2400 pixels


def encoded(array, fmt, **options):
    buffer = io.BytesIO()
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def image(size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3)).astype(np.uint8)


def top_down_bmp(array):
    """A BMP whose height field is negative: rows stored top to bottom."""
    data = bytearray(encoded(np.ascontiguousarray(array[::-1]), "BMP"))
    height = struct.unpack("<i", data[22:26])[0]
    data[22:26] = struct.pack("<i", -height)
    return bytes(data)


def animated_gif(array):
    frames = [Image.fromarray(np.roll(array, shift, axis=1)).convert("P") for shift in range(4)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])


ENCODERS = {
    "png": lambda a: encoded(a, "PNG"),
    "jpeg": lambda a: encoded(a, "JPEG"),
    "gif": animated_gif,
    "bmp": lambda a: encoded(a, "BMP"),
    "bmp_top_down": top_down_bmp,
    "webp": lambda a: encoded(a, "WEBP", lossless=True),
    "webp_lossy": lambda a: encoded(a, "WEBP"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The tiny model at a fixed 16x16 working size (the signatures resize), its SavedModel
    exported with MAX_PIXELS / MAX_BATCH, loaded."""
    model = tiny_model(input_shape=(16, 16, 3))
    path = tmp_path_factory.mktemp("bounds") / "saved_model"
    export.write_serving_saved_model(model, path, limits=export.ServingLimits(MAX_PIXELS, MAX_BATCH))
    return model, tf.saved_model.load(str(path))


def refusal(signature, **inputs):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        signature(**inputs)
    return error.value.message


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
def test_every_format_is_sized_from_its_header(served, fmt):
    """Under the limit a file is answered at its size (as decoded); one row of pixels more and it
    is refused naming the limit and its size."""
    _, loaded = served
    signature = loaded.signatures["serving_bytes"]
    under = ENCODERS[fmt](image(UNDER))
    answer = signature(image_bytes=tf.constant([under]))["classes"]
    assert answer.shape == (1, *UNDER)
    message = refusal(signature, image_bytes=tf.constant([ENCODERS[fmt](image(OVER))]))
    assert f"is {OVER[1]}x{OVER[0]} (width x height) = {OVER[0] * OVER[1]} pixels" in message
    assert f"1 to {MAX_PIXELS} pixels (max_image_pixels" in message


def test_a_top_down_bmp_answers_like_its_pixels(served):
    _, loaded = served
    pixels = image(UNDER, seed=3)
    from_bmp = loaded.signatures["serving_bytes"](image_bytes=tf.constant([top_down_bmp(pixels)]))
    from_pixels = loaded.signatures["serving_uint8"](images=tf.constant(pixels[np.newaxis]))
    np.testing.assert_array_equal(from_bmp["classes"].numpy(), from_pixels["classes"].numpy())


def test_an_animated_gif_costs_and_answers_its_first_frame(served):
    _, loaded = served
    pixels = image(UNDER, seed=4)
    data = animated_gif(pixels)
    assert tf.io.decode_image(data, expand_animations=True).shape[0] == 4  # every frame is in the file
    first, size = gif_first_frame(tf.constant(data))
    assert tf.io.decode_image(first, expand_animations=True).shape[0] == 1  # what is decoded: one frame
    assert size.numpy().tolist() == list(UNDER)
    expected = tf.io.decode_image(data, channels=3, expand_animations=False)  # `reseg predict`'s pixels
    from_gif = loaded.signatures["serving_bytes"](image_bytes=tf.constant([data]))
    from_pixels = loaded.signatures["serving_uint8"](images=expected[tf.newaxis])
    np.testing.assert_array_equal(from_gif["classes"].numpy(), from_pixels["classes"].numpy())


@pytest.mark.parametrize("name, data, needle", [
    ("decompression bomb", minimal_png(8000, 8000), "8000x8000 (width x height) = 64000000 pixels"),
    ("JPEG over the limit", None, "65000x60000 (width x height) = 3900000000 pixels"),
    ("zero bytes", b"", "(0 bytes) is not a JPEG, PNG, GIF, BMP or WebP file"),
    ("text", b"hello, server", "(13 bytes) is not a JPEG, PNG, GIF, BMP or WebP file"),
    ("TIFF", None, "is not a JPEG, PNG, GIF, BMP or WebP file"),
    ("truncated GIF", None, "is a GIF file whose header gives no image size"),
    ("PNG without IHDR", b"\x89PNG\r\n\x1a\n" + bytes(24), "is a PNG file whose header gives no image size"),
    ("animated WebP", None, "is a WebP file whose header gives no image size"),
])
def test_hostile_files_are_refused_before_decoding(served, name, data, needle):
    _, loaded = served
    if name == "JPEG over the limit":
        data = bytearray(encoded(image((8, 8)), "JPEG"))
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 65000)
    elif name == "TIFF":
        data = encoded(image(UNDER), "TIFF")
    elif name == "truncated GIF":
        data = animated_gif(image(UNDER))[:100]
    elif name == "animated WebP":
        frames = [Image.fromarray(image(UNDER, seed)) for seed in (0, 1)]
        data = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    for signature in ("serving_bytes", "serving_mask"):
        good = encoded(image((4, 4)), "PNG")
        message = refusal(loaded.signatures[signature], image_bytes=tf.constant([good, bytes(data)]))
        assert f"{signature}: image 1 of the request" in message and needle in message, name


def test_batches_are_bounded_and_hold_one_size(served):
    _, loaded = served
    png = encoded(image((4, 6)), "PNG")
    for name in ("serving_bytes", "serving_mask"):
        signature = loaded.signatures[name]
        assert "holds 4 images; this model takes 1 to 3 per request (max_batch" in refusal(
            signature, image_bytes=tf.constant([png] * 4))
        assert "holds 0 images" in refusal(signature, image_bytes=tf.constant([], tf.string))
        assert "image 1 is 5x4, image 0 is 6x4" in refusal(
            signature, image_bytes=tf.constant([png, encoded(image((4, 5)), "PNG")]))
        assert "not compatible with expected shape [?]" in refusal(signature, image_bytes=tf.constant([[png]]))
        assert signature(image_bytes=tf.constant([png] * 3))
    for name, dtype in (("serving_default", tf.float32), ("serving_uint8", tf.uint8)):
        signature = loaded.signatures[name]
        assert "holds 4 images" in refusal(signature, images=tf.zeros((4, 2, 2, 3), dtype))
        assert f"the images are {OVER[1]}x{OVER[0]} (width x height) = 2400 pixels" in refusal(
            signature, images=tf.zeros((1, *OVER, 3), dtype))
        assert "the images are 4x0" in refusal(signature, images=tf.zeros((1, 0, 4, 3), dtype))
        assert "not compatible with expected shape [?,?,?,3]" in refusal(signature, images=tf.zeros((*UNDER, 3), dtype))
        assert "not compatible with expected shape [?,?,?,3]" in refusal(signature, images=tf.zeros((1, *UNDER, 4), dtype))
        assert "expected to be a" in refusal(signature, images=tf.zeros((1, *UNDER, 3), tf.int32))
        assert signature(images=tf.zeros((3, *UNDER, 3), dtype))["classes"].shape == (3, *UNDER)


def test_the_mask_png_is_reseg_predicts_mask(served, tmp_path):
    model, loaded = served
    path = tmp_path / "photo.png"
    Image.fromarray(image((36, 44), seed=7)).save(path)
    expected = Predictor(model).classes(read_image_file(path)[np.newaxis]).numpy()[0]
    answer = loaded.signatures["serving_mask"](image_bytes=tf.constant([path.read_bytes()] * 2))
    assert list(answer) == ["mask_bytes"] and answer["mask_bytes"].shape == (2,)
    mask = tf.io.decode_png(answer["mask_bytes"][0], dtype=tf.uint8)
    assert mask.shape == (36, 44, 1) and len(np.unique(expected)) > 1
    np.testing.assert_array_equal(mask.numpy()[..., 0], expected)
    assert answer["mask_bytes"][0].numpy() == answer["mask_bytes"][1].numpy()


def test_export_records_its_bounds_and_verification_checks_them(tmp_path, capsys):
    model = tiny_model(input_shape=(16, 16, 3))
    model_path = tmp_path / "tiny.keras"
    model.save(model_path)
    folder = tmp_path / "images"
    folder.mkdir()
    for seed in range(2):
        Image.fromarray(image(UNDER, seed)).save(folder / f"{seed}.png")
    output = tmp_path / "out"
    assert cli.main(["export", "--model", str(model_path), "--output", str(output), "--tflite", "none",
                     "--representative-data", str(folder), "--max-image-pixels", "5000", "--max-batch", "2"]) == 0
    report = json.loads((output / "export_report.json").read_text())
    assert report["serving_limits"] == {"max_image_pixels": 5000, "max_batch": 2}
    row = report["rows"][0]
    assert row["passed"] and row["serving_limits"] == report["serving_limits"] and row["mask_agreement"] == 1.0
    assert sorted(row["refusals_over_limits"]) == sorted(
        f"{name}: {what}" for name in export.SIGNATURES
        for what in ("5001x1 refused (max_image_pixels)", "holds 3 images refused (max_batch)"))
    serving = (output / "serving.md").read_text()
    assert "**5,000 pixels**" in serving and "**2 images**" in serving and "serving_mask" in serving
    assert "request.json \\\n  | python" in serving and "> mask.png" in serving

    # A SavedModel looser than the limits it is verified against fails its verification.
    images = [image((20, 30))]
    loose = export.verify_saved_model(output / "saved_model" / "1", model, images,
                                      limits=export.ServingLimits(1000, 1))
    assert not loose["passed"]
    problems = " | ".join(loose["problems"])
    assert "serving_default answered a request over max_image_pixels" in problems
    assert "serving_mask refused a request over max_image_pixels without naming it" in problems  # not decodable
    assert "serving_mask answered a request over max_batch" in problems

    assert cli.main(["export", "--model", str(model_path), "--output", str(tmp_path / "bad"), "--tflite", "none",
                     "--no-verify", "--max-batch", "0"]) == 2
    assert "`max_batch` must be a positive int, got 0" in capsys.readouterr().err
