"""Segmenting image files: `reseg_tf.predict(...)` and `reseg predict`.

For each input image `NAME.ext` it writes `NAME.png` (uint8 class indices, same size as the
image) and, with `overlay=True`, `NAME_overlay.png` (the image blended with the class colors:
the CamVid palette for CamVid's 11 classes, black/white for two classes, generated colors
otherwise). Images that cannot be read are skipped with a message naming the file; the rest
are still segmented. Skipped too: files whose header claims more than
`pipelines.files.MAX_IMAGE_PIXELS` pixels, and file names that are not valid UTF-8.
Conversions: gray, gray+alpha, palette and RGBA images become RGB; 16-bit ones are scaled to 8 bits.

Averaged inference (`tta="flip"`, `mc_samples=N`, see `reseg_tf.averaging`) changes the
probabilities every output is made from. `uncertainty=True` adds `NAME_confidence.png` and
`NAME_entropy.png` (and `NAME_mutual_information.png` with `mc_samples`), 8-bit colour heat maps
at the image's size whose scale is written once per folder (`uncertainty_scale.png` / `.json`);
`probabilities=True` adds `NAME_probabilities.npz` (compressed: `probabilities`, float32
`(H, W, num_classes)`, and `class_names`).
"""
import io
import os

import keras
import numpy as np

from reseg_tf.inference import Predictor, list_image_files
from reseg_tf.model_io import load_reseg_model
from reseg_tf.models import config_from_model
from reseg_tf.inference import read_image_file
from reseg_tf.run_files import atomic_write_bytes, atomic_write_png
from reseg_tf.video import check_every, is_video, segment_video
from reseg_tf.visualize import (UNCERTAINTY_MAPS, heat_map, overlay_painter, uncertainty_ranges,
                                write_uncertainty_scale)


def _output_stem(path, used):
    stem = os.path.splitext(os.path.basename(path))[0]
    candidate, suffix = stem, 1
    while candidate in used:  # same names from different input folders
        candidate, suffix = f"{stem}_{suffix}", suffix + 1
    used.add(candidate)
    return candidate


def _write_probabilities(path, probabilities, class_names):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, probabilities=np.asarray(probabilities, np.float32),
                        class_names=np.asarray(class_names))
    atomic_write_bytes(path, buffer.getvalue())


def _split_videos(inputs):
    """`(video files, other inputs)`: videos given as files or found in given folders."""
    from pipelines.files import IMAGE_SUFFIXES

    videos, others = [], []
    for entry in map(os.fspath, inputs):
        if os.path.isfile(entry) and is_video(entry):
            videos.append(entry)
        elif os.path.isdir(entry):
            names = sorted(name for name in os.listdir(entry) if not name.startswith("."))
            found = [os.path.join(entry, name) for name in names if is_video(name)]
            videos.extend(found)
            if not found or any(name.lower().endswith(IMAGE_SUFFIXES) for name in names):
                others.append(entry)  # a folder of videos only has no images to complain about
        else:
            others.append(entry)
    return videos, others


def predict(model, inputs, output_dir, overlay=False, image_size=None, verbose=1, tta="none",
            mc_samples=0, seed=0, uncertainty=False, probabilities=False, legend=False, every=1, tile=False,
            scale=None):
    """Segments image files and writes class-index PNGs (and overlays) to `output_dir`.

    Args:
        model: a ReSeg Keras model or the path of its `.keras` file.
        inputs: image and video files and/or directories (their images and videos, not
            recursive). A video `NAME.mp4` (`.avi`, `.mov`, `.mkv`) gives `NAME_overlay.mp4`.
        output_dir: where `NAME.png` / `NAME_overlay.png` go (created if needed).
        overlay: also write color overlays.
        image_size: `(height, width)` to run the model at (default: its input size); outputs
            always have each image's own size.
        verbose: print one line per image.
        tta: `"flip"`: average with the mirrored image's probabilities.
        mc_samples: average this many dropout sub-networks (a model trained with dropout).
        seed: seed of the sub-networks' dropout masks.
        uncertainty: also write confidence / entropy (/ mutual information) heat maps.
        probabilities: also write the class probabilities as `NAME_probabilities.npz`.
        legend: draw a class legend (names from the model's config) on every overlay.
        every: videos: segment one frame in `every` (see `reseg_tf.video`).
        tile: segment images in overlapping windows at the model's training pixel scale,
            blended (`reseg_tf.tiling`), instead of resizing each image to the working size.
        scale: with `tile`, resize images by this factor first (default: the training scale
            recorded beside the model file, else 1.0).

    Returns:
        A dict: `written` (paths), `skipped` (`(path, reason)` pairs), `segmented` (the
        number of images segmented) and `videos` (`reseg_tf.video.segment_video`'s dict per
        video, with its `path` and `output`). The CLI exits non-zero if anything was skipped.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(model, keras.Model):
        model = load_reseg_model(model)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(f"output folder {os.fspath(output_dir)} is an existing file; give a folder")
    config = config_from_model(model)
    paint_overlay = overlay_painter(config, legend)
    predictor = Predictor(model, image_size, tta=tta, mc_samples=mc_samples, seed=seed, tile=tile, scale=scale,
                          progress=bool(verbose))
    if tile and verbose:
        print(f"tiles: {predictor.image_size[0]}x{predictor.image_size[1]} windows, images scaled by "
              f"{predictor.scale:.4g} first, {predictor.tile_overlap:.0%} overlap", flush=True)
    maps = [name for name in UNCERTAINTY_MAPS if uncertainty and (name != "mutual_information" or mc_samples)]
    ranges = uncertainty_ranges(config.num_classes)
    check_every(every)  # up front: segment_video's errors only skip one video
    videos, others = _split_videos(inputs)
    if legend and not overlay and not videos:
        raise ValueError("--legend is drawn on overlays: add --overlay")
    if videos and (maps or probabilities):
        print("note: --uncertainty and --probabilities apply to images; videos get overlay videos", flush=True)
    files, skipped = list_image_files(others) if others else ([], [])
    for path, reason in skipped:
        print(f"skipped: {path}: {reason}", flush=True)
    os.makedirs(output_dir, exist_ok=True)
    written, used_stems, segmented = [], set(), 0
    if maps:
        written.extend(write_uncertainty_scale(output_dir, config.num_classes, maps))
    for path in files:
        try:
            image = read_image_file(path)
            if maps:
                results = {key: value[0].numpy() for key, value in predictor.uncertainty(image[None]).items()}
                classes = results["probabilities"].argmax(axis=-1).astype(np.uint8)
            elif probabilities:
                results = {"probabilities": predictor.probabilities(image[None])[0].numpy()}
                classes = results["probabilities"].argmax(axis=-1).astype(np.uint8)
            else:
                results, classes = {}, predictor.classes(image[None])[0].numpy()
        except ValueError as error:
            skipped.append((path, str(error)))
            print(f"skipped: {error}", flush=True)
            continue
        stem = _output_stem(path, used_stems)
        outputs = [os.path.join(output_dir, f"{stem}.png")]
        atomic_write_png(outputs[0], classes)
        if overlay:
            outputs.append(os.path.join(output_dir, f"{stem}_overlay.png"))
            atomic_write_png(outputs[-1], paint_overlay(image, classes))
        for name in maps:
            outputs.append(os.path.join(output_dir, stem + UNCERTAINTY_MAPS[name][0]))
            atomic_write_png(outputs[-1], heat_map(results[name], *ranges[name]))
        if probabilities:
            outputs.append(os.path.join(output_dir, f"{stem}_probabilities.npz"))
            _write_probabilities(outputs[-1], results["probabilities"], config.class_names)
        written.extend(outputs)
        if verbose:
            print(f"{path} -> {', '.join(outputs)}", flush=True)
        segmented += 1
    video_reports = []
    for path in videos:
        output = os.path.join(output_dir, f"{_output_stem(path, used_stems)}_overlay.mp4")
        try:
            report = segment_video(predictor, path, output, paint_overlay, every=every, verbose=verbose)
        except ValueError as error:
            skipped.append((path, str(error)))
            print(f"skipped: {error}", flush=True)
            continue
        report.update(path=path, output=output)
        video_reports.append(report)
        written.append(output)
        if verbose:
            early = (f"; the video ended after {report['source_frames']} of the {report['expected_frames']} "
                     "frames its header announces: the frames written are kept" if report["ended_early"] else "")
            print(f"{path} -> {output}: {report['frames']} frames, {report['fps']:.1f} frames/s{early}", flush=True)
    return {"written": written, "skipped": skipped, "segmented": segmented, "videos": video_reports}
