"""Segmenting videos: `reseg predict clip.mp4` writes `clip_overlay.mp4`.

Frames are read with OpenCV, segmented one by one through `reseg_tf.inference.Predictor` (the
same contract as images) and written as class-colour overlays (MPEG-4, `mp4v`) at the source
size. With `every=N` one frame in N is segmented and the output runs at the source frame rate
divided by N, so it lasts as long as the source.

The output is written to a hidden temporary file beside it and renamed into place when the
video ends; a video that ends before the frame count its header claims (a cut download, a
damaged tail) or an interrupted run keeps the frames written so far.
"""
import os
import time

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
OUTPUT_FOURCC = "mp4v"


def is_video(path):
    return os.fspath(path).lower().endswith(VIDEO_SUFFIXES)


def check_every(every):
    """ValueError unless `every` (segment one frame in `every`) is a whole number >= 1."""
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"--every must be a whole number >= 1, got {every!r}.")


def _open_capture(path):
    import cv2

    return cv2.VideoCapture(os.fspath(path))


def _properties(capture):
    import cv2

    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return max(count, 0), fps


def segment_video(predictor, path, output_path, paint_overlay, every=1, verbose=1):
    """Writes the overlay video of `path` to `output_path` (see the module docstring).

    Args:
        predictor: a `reseg_tf.inference.Predictor`.
        path: the video file.
        output_path: the `.mp4` to write.
        paint_overlay: `(uint8 RGB frame, class map) -> uint8 RGB overlay`.
        every: segment one frame in `every`.
        verbose: show a progress bar (in frames).

    Returns:
        A dict: `frames` (written), `source_frames` (read), `expected_frames` (the header's
        count), `ended_early`, `fps` (frames segmented and written per second of wall time,
        from the second frame on: the first also traces the graph).

    Raises:
        ValueError naming the file if it cannot be opened or has no readable frame.
    """
    import cv2

    from pipelines.progress import progress_bar

    check_every(every)
    capture = _open_capture(path)
    if not capture.isOpened():
        raise ValueError(f"{path}: cannot open the video (not a video OpenCV can decode, or damaged)")
    expected, source_fps = _properties(capture)
    source_fps = source_fps if source_fps > 0 else 25.0
    directory = os.path.dirname(os.path.abspath(output_path))
    temporary = os.path.join(directory, f".{os.path.basename(output_path)}.tmp{os.getpid()}.mp4")
    writer, written, read, started = None, 0, 0, None
    progress = progress_bar(-(-expected // every) if expected else None, unit_name="frame", enabled=verbose == 1)
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            read += 1
            if (read - 1) % every:
                continue
            rgb = np.ascontiguousarray(frame[..., ::-1])
            if writer is None:
                height, width = rgb.shape[:2]
                writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*OUTPUT_FOURCC), source_fps / every,
                                         (width, height))
                if not writer.isOpened():
                    raise ValueError(f"{output_path}: OpenCV cannot write an {OUTPUT_FOURCC} video here")
            classes = predictor.classes(rgb[None])[0].numpy()
            writer.write(np.ascontiguousarray(paint_overlay(rgb, classes)[..., ::-1]))
            written += 1
            if written == 1:  # the first frame also traces the graph: timed from the second on
                started = time.perf_counter()
            progress.update(written)
    finally:
        capture.release()
        if writer is not None:
            writer.release()
            os.replace(temporary, output_path)  # what was written is kept, even when interrupted
    if writer is None:
        raise ValueError(f"{path}: no frame could be read (an empty or damaged video)")
    seconds = time.perf_counter() - started
    return {"frames": written, "source_frames": read, "expected_frames": expected,
            "ended_early": bool(expected) and read < expected,
            "fps": (written - 1) / seconds if written > 1 and seconds > 0 else 0.0}
