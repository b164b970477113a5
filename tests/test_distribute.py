"""tf.distribute with the real engine: 2 logical CPU replicas, and 2 worker processes."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("distribute_worker.py")
TIMEOUT_S = 240


def _run(args, tmp_path, name, env=None):
    weights = tmp_path / f"{name}.npz"
    process = subprocess.run(
        [sys.executable, str(WORKER), *args, "--weights-out", str(weights)],
        capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, **(env or {})},
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = json.loads(process.stdout.strip().splitlines()[-1])
    return result, _load(weights)


def _load(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_single_device(tmp_path):
    single, single_weights = _run(["--strategy", "default"], tmp_path, "single")
    mirrored, mirrored_weights = _run(["--strategy", "mirrored", "--logical-cpus", "2"], tmp_path, "mirrored")
    assert single["replicas"] == 1 and mirrored["replicas"] == 2
    np.testing.assert_allclose(mirrored["loss"], single["loss"], rtol=1e-5)
    for got, want in zip(mirrored_weights, single_weights):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # Training moved the weights, so the comparison above is not between two initial states.
    assert single["loss"][1] < single["loss"][0]


@pytest.mark.slow
def test_multiworker_two_processes_agree(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    try:
        for index in range(2):
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            weights = tmp_path / f"worker{index}.npz"
            workers.append((subprocess.Popen(
                [sys.executable, str(WORKER), "--strategy", "multiworker", "--weights-out", str(weights)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            ), weights))
        results = []
        for process, weights in workers:
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
            assert process.returncode == 0, stderr[-3000:]
            results.append((json.loads(stdout.strip().splitlines()[-1]), _load(weights)))
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    (first, first_weights), (second, second_weights) = results
    assert first["replicas"] == second["replicas"] == 2
    assert [first["chief"], second["chief"]] == [True, False]
    np.testing.assert_allclose(first["loss"], second["loss"], rtol=1e-6)
    for a, b in zip(first_weights, second_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert first["loss"][1] < first["loss"][0]


def test_unknown_strategy_and_missing_tf_config(monkeypatch):
    from reseg_tf.distribute import make_strategy

    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("parameter_server")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multiworker")


@pytest.mark.slow
def test_reseg_train_cli_with_mirrored_strategy(tmp_path):
    from test_training import _assert_scores_are, _scores_by_hand, _train_args, _write_camvid

    data_dir = _write_camvid(tmp_path / "camvid")
    output = tmp_path / "run"
    script = (
        "import sys; from reseg_tf.distribute import configure_logical_cpus; configure_logical_cpus(2); "
        "from reseg_tf import cli; sys.exit(cli.main(sys.argv[1:]))"
    )
    process = subprocess.run(
        [sys.executable, "-c", script, *_train_args(data_dir, output, "--strategy", "mirrored")],
        capture_output=True, text=True, timeout=TIMEOUT_S, cwd=Path(__file__).parent,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "2 replicas, global batch 4 (2 per replica)" in process.stdout + process.stderr
    metrics = json.loads((output / "metrics.json").read_text())
    _assert_scores_are(metrics, _scores_by_hand(output / "model.keras", data_dir, "val"))
    # The replicas' validation confusion matrices were summed: the same score as one device's.
    from reseg_tf.training import read_history

    assert read_history(str(output / "history.csv"))[0]["val_mean_iou"] == pytest.approx(metrics["mean_iou"], abs=1e-4)


def test_time_budget_stops_after_the_epoch_that_exhausts_it():
    import keras

    from reseg_tf.training import TimeBudget

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    budget = TimeBudget(minutes=1e-6)
    history = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=5, verbose=0, callbacks=[budget])
    assert len(history.history["loss"]) == 1
    generous = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0, callbacks=[TimeBudget(60)])
    assert len(generous.history["loss"]) == 3


def test_tpu_address_reaches_the_resolver_and_needs_the_tpu_strategy(monkeypatch, tmp_path, capsys):
    import tensorflow as tf

    from reseg_tf import cli

    asked = []

    class StopHere(Exception):
        pass

    def resolver(tpu=None):
        asked.append(tpu)
        raise StopHere  # no TPU here: stop before connecting

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    args = ["train", "--strategy", "tpu", "--tpu-address", "grpc://10.0.0.2:8470", "--output", str(tmp_path / "run")]
    with pytest.raises(StopHere):
        cli.main(args)
    assert asked == ["grpc://10.0.0.2:8470"]

    assert cli.main(["train", "--tpu-address", "my-tpu", "--output", str(tmp_path / "other")]) == 2
    assert "--tpu-address my-tpu needs --strategy tpu" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
