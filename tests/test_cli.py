import shlex

import pytest

from reseg_tf.cli import main


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("camvid", "camvid_paper_patches", "horse", "horse_no_vgg", "flowers", "demo"):
        assert name in out


def test_summary_prints_parts_and_output_shape(capsys):
    assert main(["summary", "--preset", "demo", "--image-size", "36", "48"]) == 0
    out = capsys.readouterr().out
    assert "renet_1" in out and "upsample_2" in out
    assert "(None, 36, 48, 11)" in out


def test_unknown_preset_is_a_clear_error(capsys):
    assert main(["summary", "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: reseg" in capsys.readouterr().out


def test_every_flag_has_help():
    import argparse

    from reseg_tf.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"`reseg {name} {action.option_strings[0]}` has no help text"


def test_predict_without_model_needs_the_default_model(tmp_path, monkeypatch, capsys):
    from reseg_tf import pretrained

    monkeypatch.setattr(pretrained, "_root", lambda: tmp_path / "absent")
    assert main(["predict", str(tmp_path / "x.png"), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no --model given" in err and "'camvid'" in err and "absent" in err


def test_default_model_is_the_given_datasets(tmp_path, monkeypatch, capsys):
    from reseg_tf import pretrained

    (tmp_path / "weizmann_horse").mkdir()
    (tmp_path / "weizmann_horse" / "model.keras").write_bytes(b"not a model")
    monkeypatch.setattr(pretrained, "_root", lambda: tmp_path)
    assert main(["predict", str(tmp_path / "x.png"), "--output", str(tmp_path / "out"),
                 "--dataset", "oxford_flowers17"]) == 2
    assert "'oxford_flowers17'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "x.png"), "--output", str(tmp_path / "out"),
                 "--dataset", "folder"]) == 2
    assert "no pretrained model for dataset 'folder'" in capsys.readouterr().err
    # The horse model exists, so the command gets past choosing it and fails on the fake file.
    main(["evaluate", "--dataset", "weizmann_horse", "--data-dir", str(tmp_path)])
    assert f"using the default model {tmp_path / 'weizmann_horse' / 'model.keras'}" in capsys.readouterr().out
    # By name, aliases included.
    main(["evaluate", "--model", "horse", "--dataset", "weizmann_horse", "--data-dir", str(tmp_path)])
    assert "using the pretrained model 'weizmann_horse'" in capsys.readouterr().out


def test_init_from_and_export_take_a_pretrained_models_name(tmp_path, monkeypatch):
    from reseg_tf import export, pretrained, training

    (tmp_path / "camvid").mkdir()
    (tmp_path / "camvid" / "model.keras").write_bytes(b"stand-in")
    monkeypatch.setattr(pretrained, "_root", lambda: tmp_path)
    trained, exported = [], []
    monkeypatch.setattr(training, "train", lambda **settings: trained.append(settings["init_from"]))
    monkeypatch.setattr(export, "export_model", lambda model, *args, **kwargs: exported.append(model))
    main(["train", "--init-from", "camvid", "--output", str(tmp_path / "run")])
    assert main(["export", "--model", "camvid", "--output", str(tmp_path / "exported")]) == 0
    # A file path is taken as it is.
    local = tmp_path / "mine.keras"
    local.write_bytes(b"x")
    main(["train", "--init-from", str(local), "--output", str(tmp_path / "run2")])
    shipped = str(tmp_path / "camvid" / "model.keras")
    assert trained == [shipped, str(local)] and exported == [shipped]


def _train_settings(monkeypatch, argv):
    """The keyword arguments `reseg train ARGV` passes to `reseg_tf.train` (not run)."""
    from reseg_tf import training

    seen = {}
    monkeypatch.setattr(training, "train", lambda **settings: seen.update(settings))
    assert main(["train", *argv]) == 0
    return seen


def test_every_train_flag_reaches_train(monkeypatch):
    argv = ["--preset", "camvid", "--dataset", "folder", "--data-dir", "data", "--num-classes", "4",
            "--output", "out", "--epochs", "7", "--batch-size", "3", "--image-size", "40", "48",
            "--crop-size", "16", "24", "--optimizer", "adam", "--learning-rate", "0.01", "--weight-decay", "0.002",
            "--class-balance", "--class-balance-power", "0.5", "--no-augment", "--augment-mode", "flip",
            "--lr-schedule", "cosine", "--steps-per-epoch", "9", "--patience", "4", "--seed", "5",
            "--mixed-precision", "bfloat16", "--vgg-weights", "w.h5", "--overwrite", "--strategy", "mirrored",
            "--time-budget", "2.5", "--init-from", "m.keras", "--freeze-front-end", "--ema", "--ema-momentum", "0.9",
            "--loss", "cross_entropy+lovasz", "--loss-weights", "1", "0.5"]
    assert _train_settings(monkeypatch, argv) == dict(
        preset="camvid", dataset="folder", data_dir="data", dataset_options={"num_classes": 4}, output="out",
        epochs=7, batch_size=3, image_size=[40, 48], crop_size=[16, 24], optimizer="adam", learning_rate=0.01,
        weight_decay=0.002, class_balance=True, class_balance_power=0.5, augment=False, augment_mode="flip",
        lr_schedule="cosine", steps_per_epoch=9, patience=4, seed=5, mixed_precision="bfloat16",
        front_end_weights="w.h5", overwrite=True, strategy="mirrored", time_budget=2.5, init_from="m.keras",
        freeze_front_end=True, ema=True, ema_momentum=0.9, cache_features=False, loss="cross_entropy+lovasz",
        loss_weights=(1.0, 0.5), command=shlex.join(["reseg", "train", *argv]))
    # Left out, a setting is not passed: TrainConfig and the preset's recipe decide it.
    assert _train_settings(monkeypatch, []) == dict(dataset="camvid", dataset_options={}, overwrite=False,
                                                   cache_features=False, command="reseg train")
    chosen = _train_settings(monkeypatch, ["--cache-features", "--no-crop", "--mixed-precision", "--no-ema"])
    assert chosen["cache_features"] is True and chosen["crop_size"] is False
    assert chosen["mixed_precision"] == "auto" and chosen["ema"] is False
