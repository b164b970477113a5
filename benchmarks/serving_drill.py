"""Serving drill: valid and hostile requests from several threads against an exported SavedModel.

Exports the model (`reseg export` without TFLite, into a temporary folder) unless `--saved-model`
names an export, loads the SavedModel in-process as a server does (`tf.saved_model.load`, each
request a tensor fed to a signature) and checks:

- every valid request (PNG, JPEG, BMP, WebP, animated GIF, 1x1, 16-bit, palette, gray, RGBA,
  CMYK JPEG, batches, pixels, a request at the bounds) answered from several threads at once
  equals the same request sent alone;
- every hostile request (decompression bombs in PNG and JPEG, alone and in a batch; truncated,
  zero-byte, text and random files; animated WebP; mixed sizes in one batch; batches and pixel
  arrays over the bounds; wrong dtypes and ranks; empty batches) is refused with
  `InvalidArgumentError`, nothing else, within the timeout;
- peak resident memory while bombs are sent from every thread, and while a request at the bounds
  (`max_batch` images of `max_image_pixels` pixels) is answered;
- the 187 KB PNG of 8000x8000 black pixels alone: time to refusal and memory growth;
- the compact answer (`serving_mask`) of a 360x480 CamVid image: its size and whether its pixels
  equal `reseg predict`'s mask;
- requests per second and p50 / p99 latency of `serving_mask` at 1, 2 and 4 concurrent clients.

Prints a table per request and one of the figures, then one JSON line; exits 0 only when every
check passes.

    python benchmarks/serving_drill.py --model camvid [--quick] [--saved-model DIR] [--image FILE]
"""
import argparse
import concurrent.futures
import io
import json
import os
import random
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from bad_input_drill import huge_png_bytes  # noqa: E402
from reseg_tf.export.signatures import SERVING_SIGNATURES  # noqa: E402

SIGNATURE = {signature.name: signature for signature in SERVING_SIGNATURES}
BOUNDS_PEAK_LIMIT_MIB = 2e9 / 2 ** 20  # 2 GB
BOMB_SECONDS_LIMIT, BOMB_GROWTH_LIMIT_MIB = 1.0, 300e6 / 2 ** 20  # 1 s, 300 MB
MASK_BYTES_LIMIT = 50_000


# ----------------------------------------------------------------------------------- files


def encode(array, fmt, **options):
    buffer = io.BytesIO()
    (array if isinstance(array, Image.Image) else Image.fromarray(array)).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def black_png(width, height):
    """A real PNG of `width` x `height` black RGB pixels (8000x8000: 187 KB), compressed row by row."""
    compressor, row = zlib.compressobj(9), b"\x00" * (1 + 3 * width)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def jpeg_claiming(width, height):
    """A small JPEG whose frame header (SOF0) is patched to claim `width` x `height`."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def square_near(pixels):
    """`(height, width)` of a 3:4 image of at most `pixels` pixels."""
    height = int((pixels * 3 / 4) ** 0.5)
    return height, min(pixels // height, height * 4 // 3)


# -------------------------------------------------------------------------------- requests


class Request:
    """One request: a signature and its input tensor; `valid` ones must be answered."""

    def __init__(self, name, signature, value, valid):
        self.name, self.signature, self.value, self.valid = name, signature, value, valid
        self.alone = None  # the answer (or error class) when sent alone

    def send(self, loaded):
        return {key: tensor.numpy() for key, tensor in
                loaded.signatures[self.signature](**{SIGNATURE[self.signature].input_name: self.value}).items()}


def build_requests(image, limits, quick):
    """Valid and hostile requests around `image` (uint8 RGB `(H, W, 3)`)."""
    height, width = image.shape[:2]
    png, jpeg = encode(image, "PNG"), encode(image, "JPEG", quality=95)
    small = image[:32, :48]
    frames = [Image.fromarray(image).convert("P"), Image.fromarray(image[::-1]).convert("P")]
    animated_gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:] * 3)
    max_pixels, max_batch = limits["max_image_pixels"], limits["max_batch"]
    strings = lambda *files: tf.constant(list(files))  # noqa: E731
    valid = {
        "png_rgb": ("serving_bytes", strings(png)),
        "jpeg": ("serving_bytes", strings(jpeg)),
        "bmp": ("serving_bytes", strings(encode(image, "BMP"))),
        "webp": ("serving_bytes", strings(encode(image, "WEBP", lossless=True))),
        "gif_animated": ("serving_bytes", strings(animated_gif)),
        "png_1x1": ("serving_bytes", strings(encode(image[:1, :1], "PNG"))),
        "png_16bit": ("serving_bytes", strings(tf.io.encode_png(image.astype(np.uint16) * 257).numpy())),
        "png_palette": ("serving_bytes", strings(encode(frames[0], "PNG"))),
        "png_gray": ("serving_bytes", strings(encode(image[..., 0], "PNG"))),
        "png_rgba": ("serving_bytes", strings(encode(np.dstack([image, image[..., :1]]), "PNG"))),
        "jpeg_cmyk": ("serving_bytes", strings(encode(Image.fromarray(image).convert("CMYK"), "JPEG"))),
        "batch_png_jpeg": ("serving_bytes", strings(png, jpeg)),
        "mask_png": ("serving_mask", strings(png)),
        "mask_batch": ("serving_mask", strings(*[png] * max_batch)),
        "pixels_float32": ("serving_default", tf.constant(image[np.newaxis], tf.float32)),
        "pixels_uint8_batch": ("serving_uint8", tf.constant(np.stack([image] * 2), tf.uint8)),
        "pixels_uint8_1x1": ("serving_uint8", tf.constant(image[np.newaxis, :1, :1], tf.uint8)),
    }
    bomb = black_png(8000, 8000)
    hostile = {
        "png_bomb_8000x8000_187kb": ("serving_bytes", strings(bomb)),
        "png_bomb_header_20000x20000": ("serving_mask", strings(huge_png_bytes(20000, 20000))),
        "jpeg_bomb_65000x65000": ("serving_bytes", strings(jpeg_claiming(65000, 65000))),
        "png_bomb_batch": ("serving_mask", strings(*[bomb] * max_batch)),
        "jpeg_bomb_in_valid_batch": ("serving_bytes", strings(png, jpeg_claiming(60000, 60000))),
        "png_one_pixel_over": ("serving_bytes", strings(huge_png_bytes(max_pixels + 1, 1))),
        "png_truncated": ("serving_bytes", strings(png[:len(png) // 2])),
        "jpeg_truncated": ("serving_bytes", strings(jpeg[:len(jpeg) // 2])),
        "gif_truncated": ("serving_bytes", strings(animated_gif[:200])),
        "bmp_truncated": ("serving_bytes", strings(encode(small, "BMP")[:300])),
        "zero_bytes": ("serving_mask", strings(b"")),
        "text": ("serving_bytes", strings(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")),
        "random_bytes": ("serving_bytes", strings(np.random.default_rng(0).bytes(4096))),
        "webp_animated": ("serving_bytes", strings(encode(
            Image.fromarray(small), "WEBP", save_all=True, append_images=[Image.fromarray(small[::-1])]))),
        "mixed_sizes_batch": ("serving_bytes", strings(png, encode(small, "PNG"))),
        "batch_over_max": ("serving_bytes", strings(*[encode(small, "PNG")] * (max_batch + 1))),
        "empty_batch_bytes": ("serving_mask", tf.constant([], tf.string)),
        "bytes_rank_2": ("serving_bytes", tf.constant([[png]])),
        "bytes_scalar": ("serving_bytes", tf.constant(png)),
        "pixels_over_max": ("serving_uint8", tf.zeros((1, 1, max_pixels + 1, 3), tf.uint8)),
        "pixels_batch_over_max": ("serving_default", tf.zeros((max_batch + 1, 4, 4, 3))),
        "pixels_empty_batch": ("serving_default", tf.zeros((0, 4, 4, 3))),
        "pixels_zero_height": ("serving_uint8", tf.zeros((1, 0, 4, 3), tf.uint8)),
        "pixels_rank_3": ("serving_default", tf.constant(image, tf.float32)),
        "pixels_rank_5": ("serving_default", tf.constant(image[np.newaxis, np.newaxis], tf.float32)),
        "pixels_4_channels": ("serving_default", tf.zeros((1, height, width, 4))),
        "pixels_wrong_dtype_int32": ("serving_default", tf.constant(image[np.newaxis], tf.int32)),
        "pixels_wrong_dtype_float64": ("serving_uint8", tf.constant(image[np.newaxis], tf.float64)),
        "bytes_wrong_dtype": ("serving_mask", tf.constant(image[np.newaxis], tf.uint8)),
    }
    requests = [Request(name, *spec, True) for name, spec in valid.items()]
    requests += [Request(name, *spec, False) for name, spec in hostile.items()]
    return requests, bomb


def outcome(request, loaded):
    """("answer", outputs) or ("error", exception class name, message's first line)."""
    try:
        return ("answer", request.send(loaded))
    except tf.errors.InvalidArgumentError as error:
        return ("InvalidArgumentError", error.message.split("assertion failed:")[-1].strip().splitlines()[0][:140])
    except Exception as error:  # noqa: BLE001 - any other error is a failure to report
        return (type(error).__name__, str(error).strip().splitlines()[0][:140] if str(error).strip() else "")


def same_answer(first, second):
    return first.keys() == second.keys() and all(np.array_equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------------------------- memory


def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


class PeakRss:
    """Peak resident memory (MiB) of the process while the block runs, sampled every 2 ms."""

    def __enter__(self):
        self.start = self.peak = rss_mib()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            self.peak = max(self.peak, rss_mib())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, rss_mib())
        self.growth = self.peak - self.start


# ------------------------------------------------------------------------------------ drill


def export_for_drill(model_name, limits, work, quick):
    """Exports `model_name` (a pretrained name or a .keras file; with `quick` and no model, a tiny
    untrained model) with `limits` into `work` by `reseg export` in a child process, so this
    process holds what a server holds: TensorFlow and the SavedModel. Returns (SavedModel
    version folder, model file)."""
    import subprocess

    if model_name is None:
        import reseg_tf
        from reseg_tf.models import CAMVID_CLASSES

        config = reseg_tf.ReSegConfig(num_classes=len(CAMVID_CLASSES), class_names=CAMVID_CLASSES, front_end="none",
                                      renet=((4, (2, 2)),), upsampling=((4, (2, 2)),))
        model_name = str(work / "tiny.keras")
        reseg_tf.build_model(config, input_shape=(64, 96, 3), name="tiny").save(model_name)
    elif not Path(model_name).exists():
        from reseg_tf import pretrained

        model_name = str(pretrained.pretrained_path(pretrained.resolve_name(model_name)))
    command = [sys.executable, "-m", "reseg_tf.cli", "export", "--model", model_name, "--output", str(work / "export"),
               "--tflite", "none", "--max-image-pixels", str(limits["max_image_pixels"]),
               "--max-batch", str(limits["max_batch"]), *(["--no-verify"] if quick else [])]
    subprocess.run(command, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return work / "export" / "saved_model" / "1", model_name


def timed_clients(loaded, request, clients, count):
    """requests/s and latencies (s) of `count` requests sent by `clients` threads."""
    latencies = []

    def client(share):
        for _ in range(share):
            start = time.perf_counter()
            request.send(loaded)
            latencies.append(time.perf_counter() - start)

    shares = [count // clients + (i < count % clients) for i in range(clients)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, shares))
    return count / (time.perf_counter() - start), latencies


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def drill(args, work):
    from reseg_tf.export.signatures import ServingLimits
    from reseg_tf.inference import Predictor, read_image_file

    limits = ServingLimits(**{k: v for k, v in (("max_image_pixels", args.max_image_pixels),
                                                ("max_batch", args.max_batch)) if v is not None}).as_dict()
    model_file = None
    if args.saved_model:
        saved_model = Path(args.saved_model)
        report = saved_model.parent.parent / "export_report.json"
        if report.exists():
            limits = json.loads(report.read_text()).get("serving_limits", limits)
    else:
        saved_model, model_file = export_for_drill(None if args.quick and not args.model else args.model, limits,
                                                   work, args.quick)
    print(f"SavedModel {saved_model}, limits {limits}", flush=True)
    loaded = tf.saved_model.load(str(saved_model))
    image_path = Path(args.image) if args.image else sorted((ROOT / "pipelines/data/camvid_sample/val").glob("*.png"))[0]
    image = read_image_file(image_path)
    requests, bomb = build_requests(image, limits, args.quick)
    figures, failures = {**limits, "image": f"{image.shape[1]}x{image.shape[0]}"}, []

    # Every request alone (which also warms every signature up, as a server's warm-up requests do).
    for request in requests:
        request.alone = outcome(request, loaded)
    figures["rss_after_warm_up_mib"] = round(rss_mib())

    # The 187 KB bomb alone: time to refusal and memory growth.
    bomb_request = next(r for r in requests if r.name == "png_bomb_8000x8000_187kb")
    with PeakRss() as memory:
        start = time.perf_counter()
        refused = outcome(bomb_request, loaded)[0] == "InvalidArgumentError"
        seconds = time.perf_counter() - start
    figures.update(bomb_png_bytes=len(bomb), bomb_png_refused=refused, bomb_png_seconds=round(seconds, 3),
                   bomb_png_rss_growth_mib=round(memory.growth, 1))
    if not (refused and seconds < BOMB_SECONDS_LIMIT and memory.growth < BOMB_GROWTH_LIMIT_MIB):
        failures.append(f"8000x8000 PNG: refused {refused} in {seconds:.2f} s, +{memory.growth:.0f} MiB")

    # A request at the bounds: max_batch images of max_image_pixels pixels.
    bound_height, bound_width = square_near(limits["max_image_pixels"])
    at_bounds = tf.constant([encode(np.asarray(Image.fromarray(image).resize((bound_width, bound_height))), "PNG")]
                            * limits["max_batch"])
    for signature in ("serving_bytes", "serving_mask"):
        bounds_request = Request(f"at_bounds_{signature}", signature, at_bounds, True)
        with PeakRss() as memory:
            start = time.perf_counter()
            answer = outcome(bounds_request, loaded)
        figures["at_bounds_request"] = f"{limits['max_batch']} x {bound_width}x{bound_height}"
        figures[f"at_bounds_{signature}_seconds"] = round(time.perf_counter() - start, 2)
        figures[f"at_bounds_{signature}_peak_rss_mib"] = round(memory.peak)
        figures[f"at_bounds_{signature}_rss_growth_mib"] = round(memory.growth)
        if answer[0] != "answer":
            failures.append(f"{bounds_request.name}: not answered ({answer[0]}: {answer[1]})")
        if memory.peak > BOUNDS_PEAK_LIMIT_MIB:
            failures.append(f"{bounds_request.name}: peak resident memory {memory.peak:.0f} MiB > 2 GB")

    # Everything again, shuffled, from several threads at once, bombs included.
    mixed = [request for request in requests for _ in range(1 if args.quick else 2)]
    random.Random(0).shuffle(mixed)
    with PeakRss() as memory, concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        futures = [(request, pool.submit(outcome, request, loaded)) for request in mixed]
        concurrent.futures.wait([future for _, future in futures], timeout=args.timeout)
    figures.update(concurrent_threads=args.threads, concurrent_requests=len(mixed),
                   concurrent_peak_rss_mib=round(memory.peak), concurrent_rss_growth_mib=round(memory.growth))
    rows = []
    for request in requests:
        results = [future for r, future in futures if r is request]
        verdicts = []
        for future in results:
            if not future.done():
                verdicts.append(f"hung (no answer within {args.timeout} s)")
                continue
            kind, detail = future.result()
            if request.valid and (request.alone[0] != "answer" or kind != "answer"):
                verdicts.append(f"not answered: {kind if kind != 'answer' else request.alone[0]}")
            elif request.valid and not same_answer(detail, request.alone[1]):
                verdicts.append("answer differs from the request sent alone")
            elif not request.valid and (kind != "InvalidArgumentError" or request.alone[0] != "InvalidArgumentError"):
                verdicts.append(f"not refused cleanly: {kind if kind != 'InvalidArgumentError' else request.alone[0]}")
        verdict = "; ".join(verdicts) or ("answered, equal alone and concurrent" if request.valid else "refused")
        if verdicts:
            failures.append(f"{request.name}: {verdict}")
        message = "" if request.valid else request.alone[1]
        rows.append((request.name, request.signature, "valid" if request.valid else "hostile",
                     "ok" if not verdicts else "FAIL", verdict if verdicts else message or verdict))
    figures["valid_requests"] = sum(r.valid for r in requests)
    figures["hostile_requests"] = sum(not r.valid for r in requests)

    mask_request = next(r for r in requests if r.name == "mask_png")
    # Throughput and latency of the compact answer.
    for clients in (1, 2, 4):
        rate, latencies = timed_clients(loaded, mask_request, clients, args.requests)
        figures[f"clients_{clients}"] = {"requests_per_s": round(rate, 2), "p50_ms": round(percentile(latencies, 50), 1),
                                         "p99_ms": round(percentile(latencies, 99), 1)}

    # The compact answer of the image, against reseg predict.
    if mask_request.alone[0] == "answer":
        mask_png = mask_request.alone[1]["mask_bytes"][0]
        mask = tf.io.decode_png(mask_png).numpy()[..., 0]
        figures["mask_png_bytes"] = len(mask_png)
        figures["probabilities_float32_bytes"] = int(np.prod(image.shape[:2])) * 4 * int(
            requests[0].alone[1]["probabilities"].shape[-1]) if requests[0].alone[0] == "answer" else None
        if len(mask_png) > MASK_BYTES_LIMIT:
            failures.append(f"mask PNG of {len(mask_png)} bytes > {MASK_BYTES_LIMIT}")
        if model_file is not None:  # loaded last: a server holds no Keras model
            from reseg_tf.model_io import load_reseg_model

            expected = Predictor(load_reseg_model(model_file)).classes(image[np.newaxis]).numpy()[0]
            figures["mask_pixels_equal_predict"] = float(np.mean(mask == expected))
            if not np.array_equal(mask, expected):
                failures.append(f"mask equals reseg predict on {np.mean(mask == expected):.4%} of the pixels only")

    return rows, figures, failures


def format_tables(rows, figures):
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{'request':{widths[0]}}  {'signature':{widths[1]}}  {'kind':{widths[2]}}  {'check':{widths[3]}}  outcome"]
    lines += [f"{r[0]:{widths[0]}}  {r[1]:{widths[1]}}  {r[2]:{widths[2]}}  {r[3]:{widths[3]}}  {r[4]}" for r in rows]
    lines += ["", f"{'clients':>7}  {'requests/s':>10}  {'p50 ms':>8}  {'p99 ms':>8}"]
    for clients in (1, 2, 4):
        timing = figures[f"clients_{clients}"]
        lines.append(f"{clients:>7}  {timing['requests_per_s']:>10}  {timing['p50_ms']:>8}  {timing['p99_ms']:>8}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None,
                        help="pretrained model name (e.g. camvid) or .keras file to export and serve; "
                        "default: camvid (with --quick: a tiny untrained model)")
    parser.add_argument("--saved-model", default=None, help="serve this SavedModel version folder instead of exporting")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: one concurrent pass, fewer timed requests, no export verification")
    parser.add_argument("--image", default=None,
                        help="the valid image (default: the first image of the embedded CamVid sample's val/)")
    parser.add_argument("--max-image-pixels", type=int, default=None, help="export bound (default: reseg export's)")
    parser.add_argument("--max-batch", type=int, default=None, help="export bound (default: reseg export's)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent senders of the mixed requests")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per client count (default 24, quick 6)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds before an unanswered request counts as hung")
    args = parser.parse_args(argv)
    if args.model is None and not args.quick and not args.saved_model:
        args.model = "camvid"
    args.requests = args.requests or (6 if args.quick else 24)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="serving_drill-") as work:
        rows, figures, failures = drill(args, Path(work))
    print(format_tables(rows, figures))
    summary = {"tried": len(rows), "passed": sum(row[3] == "ok" for row in rows), **figures,
               "failures": failures, "seconds": round(time.monotonic() - start, 1)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    sys.exit(0 if not main()["failures"] else 1)
