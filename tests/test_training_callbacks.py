"""The training callbacks on their own, with a fake clock, fake histories and real signals:
`TimeBudget`'s look-ahead, `ResumableEarlyStopping` across a resume, `read_history` on torn
files, `StopOnSignal`, and `prepare_output` with `overwrite`."""
import os
import signal
import types

import pytest

from reseg_tf import training
from reseg_tf.training import callbacks as callbacks_module
from reseg_tf.training import ResumableEarlyStopping, StopOnSignal, TimeBudget, read_history


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def _fake_model():
    return types.SimpleNamespace(stop_training=False)


def _run_budget(monkeypatch, minutes, epoch_seconds):
    """Epochs run (of `epoch_seconds`) until `TimeBudget(minutes)` stops training."""
    clock = _Clock()
    monkeypatch.setattr(callbacks_module, "time", clock)
    budget = TimeBudget(minutes)
    budget.set_model(_fake_model())
    budget.on_train_begin()
    for epoch, seconds in enumerate(epoch_seconds):
        budget.on_epoch_begin(epoch)
        clock.now += seconds
        budget.on_epoch_end(epoch)
        if budget.model.stop_training:
            return epoch + 1
    return len(epoch_seconds)


def test_time_budget_stops_when_another_epoch_would_not_fit(monkeypatch, capsys):
    # 1 minute, 25 s epochs: after epoch 2 (50 s) a third would end at 75 s: stop there, not
    # after epoch 3 (which would end 15 s past the budget).
    assert _run_budget(monkeypatch, 1, [25, 25, 25, 25]) == 2
    assert "Time budget of 1 min reached after epoch 2" in capsys.readouterr().out
    # The longest epoch so far is the estimate of the next one.
    assert _run_budget(monkeypatch, 1, [35, 10, 10, 10]) == 1
    assert _run_budget(monkeypatch, 1, [20, 10, 10, 10, 10]) == 4  # 50 s + 20 s > 60 s
    assert _run_budget(monkeypatch, 10, [25] * 4) == 4


def _write_history(path, values):
    path.write_text("epoch,val_mean_iou\n" + "".join(f"{epoch},{value}\n" for epoch, value in values))


def test_patience_counts_the_epochs_before_a_resume(tmp_path):
    history = tmp_path / "history.csv"
    # Epoch 1 is the best; 2 and 3 did not improve. Row 4 was written by a run killed before it
    # backed up epoch 4: the resumed run trains epoch 4 again, so that row must not count.
    _write_history(history, [(1, 0.5), (2, 0.4), (3, 0.45), (4, 0.9)])
    stopping = ResumableEarlyStopping(str(history), monitor="val_mean_iou", mode="max", patience=3)
    stopping.set_model(_fake_model())
    stopping.on_train_begin()
    stopping.on_epoch_begin(3)  # resumed after 3 backed-up epochs
    assert stopping.wait == 2 and stopping.best == pytest.approx(0.5)
    assert not stopping.model.stop_training
    stopping.on_epoch_end(3, {"val_mean_iou": 0.3})  # a third epoch without improvement
    assert stopping.model.stop_training

    improving = ResumableEarlyStopping(str(history), monitor="val_mean_iou", mode="max", patience=3)
    improving.set_model(_fake_model())
    improving.on_train_begin()
    improving.on_epoch_begin(3)
    improving.on_epoch_end(3, {"val_mean_iou": 0.6})
    assert not improving.model.stop_training and improving.wait == 0


def test_read_history_keeps_the_rows_before_a_torn_line(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_mean_iou\n1,0.9,0.2\n2,0.8,0.3\n3,0.7,0.3x")
    assert read_history(path) == [{"epoch": 1, "loss": 0.9, "val_mean_iou": 0.2},
                                  {"epoch": 2, "loss": 0.8, "val_mean_iou": 0.3}]
    path.write_text("epoch,loss\n1,0.9\n,0.8\n")  # the epoch number itself was lost
    assert read_history(path) == [{"epoch": 1, "loss": 0.9}]
    path.write_bytes(b"epoch,loss\n1,0.9\n\xff\xfe")
    assert read_history(path) == []
    assert read_history(tmp_path / "missing.csv") == []


def _hooks(stop):
    return [lambda: stop.on_train_begin(), lambda: stop.on_epoch_begin(0), lambda: stop.on_train_batch_end(0),
            lambda: stop.on_test_batch_end(0), lambda: stop.on_epoch_end(0), stop.raise_if_requested]


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_the_next_hook_and_a_second_one_at_once(number):
    before = {n: signal.getsignal(n) for n in StopOnSignal.SIGNALS}
    stop = StopOnSignal()
    with stop.handling_signals():
        for hook in _hooks(stop):
            hook()  # nothing asked yet
        assert signal.getsignal(number) == stop._handle  # (else the signal below ends the tests)
        os.kill(os.getpid(), number)
        assert stop.received == number  # caught: no KeyboardInterrupt in whatever code ran
        for hook in _hooks(stop):
            with pytest.raises(KeyboardInterrupt, match=signal.Signals(number).name):
                hook()
        with pytest.raises(KeyboardInterrupt, match="received twice"):
            os.kill(os.getpid(), number)
            for _ in range(1000):  # the handler runs between two bytecodes of this thread
                pass
    assert {n: signal.getsignal(n) for n in StopOnSignal.SIGNALS} == before


def test_signals_are_caught_even_when_inherited_ignored():
    """A background job of a shell script starts with SIGINT ignored; `kill -INT` must still
    stop training."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        stop = StopOnSignal()
        with stop.handling_signals():
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.received == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert stop.received == signal.SIGINT
    finally:
        signal.signal(signal.SIGINT, previous)
    fresh = StopOnSignal()
    with fresh.handling_signals():
        fresh.raise_if_requested()  # a new block starts with no request


def test_overwrite_removes_the_previous_runs_files_only(tmp_path, capsys):
    from reseg_tf.run_files import atomic_write_json

    output = tmp_path / "run"
    (output / "backup").mkdir(parents=True)
    (output / "backup" / "training_metadata.json").write_text('{"epoch": 2}')
    for name in ("model.keras", "metrics.json", "history.csv"):
        (output / name).write_text("old")
    (output / "notes.txt").write_text("mine")
    config = training.TrainConfig(output=str(output), epochs=1)
    atomic_write_json(str(output / "run.json"), {"state": "finished", "settings": config.identity()})
    # The same settings again: the finished run is reported, nothing is touched.
    assert training.prepare_output(config) == "finished"
    with pytest.raises(training.RunDirectoryError, match="finished run with other settings.*--overwrite"):
        training.prepare_output(training.TrainConfig(output=str(output), epochs=1, seed=1))
    assert (output / "metrics.json").read_text() == "old"

    assert training.prepare_output(training.TrainConfig(output=str(output), epochs=1, overwrite=True)) == "fresh"
    assert "--overwrite: removing the previous run's files" in capsys.readouterr().out
    assert sorted(path.name for path in output.iterdir()) == ["notes.txt"]
