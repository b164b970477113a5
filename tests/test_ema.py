"""`reseg train --ema`: the optimizer's weight average is what validation, `model.keras` and a
resumed run see."""
import keras
import numpy as np
import pytest

from pipelines_layouts import write_camvid
from reseg_tf import training
from reseg_tf.evaluation import load_reseg_model
from reseg_tf.training import trainer

SIZE = 32


class _RecordAverages(keras.callbacks.Callback):
    """Copies the optimizer's averages and the raw trainable weights (by variable path) when
    training begins and at the end of every epoch, after every other callback."""

    def __init__(self, interrupt_before_epoch=None):
        super().__init__()
        self.interrupt_before_epoch = interrupt_before_epoch
        self.at_start = None
        self.per_epoch = {}

    def _snapshot(self):
        optimizer = self.model.optimizer
        if not optimizer.built:
            return None
        averages = {variable.path: np.array(average) for variable, average in
                    zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)}
        raw = {variable.path: np.array(variable) for variable in self.model.trainable_variables}
        return {"average": averages, "raw": raw, "iterations": int(optimizer.iterations)}

    def on_train_begin(self, logs=None):
        self.at_start = self._snapshot()

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.interrupt_before_epoch:
            raise KeyboardInterrupt("test interrupt")

    def on_epoch_end(self, epoch, logs=None):
        self.per_epoch[epoch + 1] = self._snapshot()


_MAKE_CALLBACKS = trainer.make_callbacks


def _train_recording(monkeypatch, recorder, **settings):
    monkeypatch.setattr(trainer, "make_callbacks",
                        lambda *args, **kwargs: _MAKE_CALLBACKS(*args, **kwargs) + [recorder])
    return training.train(**settings)


@pytest.fixture
def settings(tmp_path):
    data_dir = write_camvid(tmp_path / "camvid", splits=(("train", 4), ("val", 2)), size=(SIZE, SIZE))
    return dict(preset="demo", dataset="camvid", data_dir=str(data_dir), output=str(tmp_path / "run"),
                image_size=(SIZE, SIZE), batch_size=2, augment=False, optimizer="adam",
                learning_rate=1e-2, ema=True, ema_momentum=0.5, patience=10, num_examples=0, verbose=0)


def test_saved_model_holds_the_average_of_its_epoch(settings, monkeypatch):
    recorder = _RecordAverages()
    result = _train_recording(monkeypatch, recorder, epochs=3, **settings)
    snapshot = recorder.per_epoch[result["best_epoch"]]
    saved = load_reseg_model(f"{settings['output']}/model.keras")
    compared = 0
    for variable in saved.trainable_variables:
        average, raw = snapshot["average"][variable.path], snapshot["raw"][variable.path]
        np.testing.assert_array_equal(np.array(variable), average, err_msg=variable.path)
        compared += int(not np.array_equal(average, raw))
    # The average lags the raw weights: the saved model is not the raw one.
    assert compared > len(saved.trainable_variables) // 2
    assert snapshot["iterations"] == 2 * result["best_epoch"]


def test_resumed_run_continues_the_average(settings, monkeypatch):
    first = _RecordAverages(interrupt_before_epoch=1)
    with pytest.raises(KeyboardInterrupt):
        _train_recording(monkeypatch, first, epochs=3, **settings)
    backed_up = first.per_epoch[1]

    second = _RecordAverages()
    _train_recording(monkeypatch, second, epochs=3, **settings)
    restored = second.at_start
    assert restored["iterations"] == backed_up["iterations"] == 2
    for path, average in backed_up["average"].items():
        np.testing.assert_array_equal(restored["average"][path], average, err_msg=path)
        np.testing.assert_array_equal(restored["raw"][path], backed_up["raw"][path], err_msg=path)
    assert sorted(second.per_epoch) == [2, 3]


def test_ema_momentum_needs_ema():
    with pytest.raises(ValueError, match="--ema"):
        training.TrainConfig(preset="demo", ema_momentum=0.9)
    with pytest.raises(ValueError, match="ema_momentum"):
        training.TrainConfig(preset="demo", ema=True, ema_momentum=1.0)
