"""`reseg predict` on videos, and class legends on overlays and dataset grids."""
import cv2
import numpy as np
import pytest
from PIL import Image

import pipelines
import reseg_tf
from pipelines.palettes import draw_legend
from reseg_tf import cli, video
from helpers import tiny_model
from pipelines_layouts import write_folder

SIZE = (24, 32)


def _model(tmp_path):
    path = tmp_path / "model.keras"
    tiny_model(class_names=("sky", "road", "car")).save(path)
    return path


def _write_video(path, frames=9, size=SIZE, fps=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    writer.release()
    return path


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    count, shape = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count, shape = count + 1, frame.shape
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return count, shape, fps


def test_predict_writes_an_overlay_video_with_every_frame(tmp_path, capsys):
    model = _model(tmp_path)
    clip = _write_video(tmp_path / "clip.avi")
    assert cli.main(["predict", str(clip), "--model", str(model), "--output", str(tmp_path / "out")]) == 0
    count, shape, fps = _frames(tmp_path / "out" / "clip_overlay.mp4")
    assert (count, shape[:2]) == (9, SIZE) and fps == pytest.approx(12)
    printed = capsys.readouterr().out
    assert "9 frames" in printed and "frames/s" in printed and "1 video(s)" in printed


def test_a_video_frame_segments_exactly_like_the_frame_saved_as_a_png(tmp_path, monkeypatch):
    from reseg_tf.inference import Predictor

    model = _model(tmp_path)
    clip = tmp_path / "colours.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12, (SIZE[1], SIZE[0]))
    rgb = np.zeros((*SIZE, 3), np.uint8)
    rgb[:, : SIZE[1] // 2] = (230, 30, 20)  # red | blue: a channel swap changes every pixel
    rgb[:, SIZE[1] // 2:] = (20, 40, 220)
    writer.write(np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV writes BGR
    writer.release()
    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()  # the decoded frame, as OpenCV gives it (BGR)
    capture.release()
    assert ok and cv2.imwrite(str(tmp_path / "frame.png"), frame)
    assert cli.main(["predict", str(tmp_path / "frame.png"), "--model", str(model), "--overlay",
                     "--output", str(tmp_path / "png_out")]) == 0
    png_classes = np.asarray(Image.open(tmp_path / "png_out" / "frame.png"))

    seen = []
    classes = Predictor.classes

    def recording(self, images):
        result = classes(self, images)
        seen.append((np.asarray(images)[0], np.asarray(result)[0]))
        return result

    monkeypatch.setattr(Predictor, "classes", recording)
    assert cli.main(["predict", str(clip), "--model", str(model), "--output", str(tmp_path / "video_out")]) == 0
    (frame_input, frame_classes), = seen
    np.testing.assert_array_equal(frame_input, np.asarray(Image.open(tmp_path / "frame.png").convert("RGB")))
    assert np.abs(frame_input.astype(int) - rgb).max() < 40  # RGB order, up to the JPEG coding
    np.testing.assert_array_equal(frame_classes, png_classes)
    # The overlay video shows that frame's overlay, in its colours (MPEG-4 coding aside).
    capture = cv2.VideoCapture(str(tmp_path / "video_out" / "colours_overlay.mp4"))
    ok, written = capture.read()
    capture.release()
    overlay = np.asarray(Image.open(tmp_path / "png_out" / "frame_overlay.png")).astype(int)
    assert ok

    def half_colours(image):  # the mean colour of the left and the right half
        return np.array([image[:, : SIZE[1] // 2].mean((0, 1)), image[:, SIZE[1] // 2:].mean((0, 1))])

    expected = half_colours(overlay)
    assert np.abs(half_colours(written[..., ::-1]) - expected).max() < 12
    assert np.abs(half_colours(written) - expected).max() > 40  # what a channel swap would show


def test_every_n_frames_and_a_folder_of_videos_and_images(tmp_path):
    model = _model(tmp_path)
    folder = tmp_path / "inputs"
    folder.mkdir()
    _write_video(folder / "a.avi", frames=10)
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(folder / "still.png")
    report = reseg_tf.predict(str(model), folder, tmp_path / "out", every=3, verbose=0)
    assert report["segmented"] == 1 and len(report["videos"]) == 1
    count, _, fps = _frames(tmp_path / "out" / "a_overlay.mp4")
    assert count == 4 and fps == pytest.approx(12 / 3)  # frames 0, 3, 6, 9


def test_unreadable_video_is_skipped_naming_it(tmp_path, capsys):
    model = _model(tmp_path)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    code = cli.main(["predict", str(tmp_path / "broken.mp4"), "--model", str(model), "--output", str(tmp_path / "o")])
    assert code == 1
    assert "broken.mp4: cannot open the video" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--every must be"):
        reseg_tf.predict(str(model), _write_video(tmp_path / "ok.avi"), tmp_path / "o2", every=0, verbose=0)


def test_a_video_that_ends_early_keeps_what_was_written(tmp_path, monkeypatch, capsys):
    model = _model(tmp_path)
    clip = _write_video(tmp_path / "cut.avi", frames=9)
    real_open = video._open_capture

    class EndsAfterFour:  # a header announcing 9 frames, a stream that stops after 4
        def __init__(self, path):
            self.capture, self.reads = real_open(path), 0

        def read(self):
            self.reads += 1
            return self.capture.read() if self.reads <= 4 else (False, None)

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(video, "_open_capture", EndsAfterFour)
    report = reseg_tf.predict(str(model), clip, tmp_path / "out")
    assert report["videos"][0]["ended_early"] and report["videos"][0]["expected_frames"] == 9
    assert _frames(tmp_path / "out" / "cut_overlay.mp4")[0] == 4
    assert "ended after 4 of the 9 frames" in capsys.readouterr().out
    assert not list((tmp_path / "out").glob(".*"))  # no temporary file left


def test_legend_is_drawn_on_image_and_video_overlays(tmp_path):
    model = _model(tmp_path)
    image = np.full((120, 160, 3), 200, np.uint8)
    Image.fromarray(image).save(tmp_path / "im.png")
    reseg_tf.predict(str(model), tmp_path / "im.png", tmp_path / "plain", overlay=True, verbose=0)
    reseg_tf.predict(str(model), tmp_path / "im.png", tmp_path / "legend", overlay=True, legend=True, verbose=0)
    plain = np.asarray(Image.open(tmp_path / "plain" / "im_overlay.png"))
    legend = np.asarray(Image.open(tmp_path / "legend" / "im_overlay.png"))
    assert legend.shape == plain.shape
    changed = np.any(legend != plain, axis=-1)
    rows, columns = np.nonzero(changed)
    assert rows.min() > 60 and columns.max() < 100  # the bottom-left corner only
    with pytest.raises(ValueError, match="add --overlay"):
        reseg_tf.predict(str(model), tmp_path / "im.png", tmp_path / "x", legend=True, verbose=0)


def test_draw_legend_shows_every_class_colour():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    drawn = draw_legend(np.full((200, 300, 3), 128, np.uint8), ["a", "b", "c"], palette)
    for color in palette:
        assert np.all(drawn == color, axis=-1).sum() > 20


def test_show_dataset_legend_can_be_left_out(tmp_path):
    data = write_folder(tmp_path / "data", count=4, size=(16, 20), num_classes=3)
    with_legend = pipelines.show_dataset("folder", "all", str(tmp_path / "a.png"), data_dir=data, num_classes=3)
    without = pipelines.show_dataset("folder", "all", str(tmp_path / "b.png"), data_dir=data, num_classes=3,
                                     legend=False)
    taller = np.asarray(Image.open(with_legend)).shape[0] - np.asarray(Image.open(without)).shape[0]
    assert taller == 20
