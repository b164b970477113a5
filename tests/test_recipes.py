"""Presets carry their training recipe: `reseg train --preset P` trains with it, flags override it."""
import json

import pytest

from reseg_tf import cli, training
from reseg_tf.models import get_recipe, list_presets
from reseg_tf.training import RECIPE_DEFAULTS, TrainConfig
from reseg_tf.training.run_dir import write_run_record


@pytest.mark.parametrize("preset", list_presets())
def test_every_recipe_gives_valid_training_settings(preset):
    recipe = get_recipe(preset)
    assert set(recipe) <= set(RECIPE_DEFAULTS)
    config = TrainConfig(preset=preset)
    for name, value in recipe.items():
        assert getattr(config, name) == value, name
    assert sorted(config.from_recipe) == sorted(recipe)


def test_camvid_scratch_recipe_is_the_shipped_models(tmp_path):
    config = TrainConfig(preset="camvid_scratch", output=str(tmp_path / "run"))
    assert (config.optimizer, config.learning_rate, config.weight_decay) == ("adam", 1e-3, 1e-4)
    assert config.lr_schedule == "cosine" and config.augment_mode == "flip"
    assert config.image_size == (264, 352) and config.crop_size == (180, 240)
    assert config.class_balance is True and config.class_balance_power == 0.5
    assert config.epochs == 84
    (tmp_path / "run").mkdir()
    write_run_record(config, "running")
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    assert recorded["optimizer"] == "adam" and recorded["lr_schedule"] == "cosine"
    assert recorded["crop_size"] == [180, 240] and recorded["class_balance_power"] == 0.5


def test_paper_presets_carry_the_papers_recipe():
    config = TrainConfig(preset="camvid")
    assert config.optimizer == "adadelta" and config.learning_rate is None  # Lasagne's lr 1.0
    assert config.weight_decay == training.PAPER_WEIGHT_DECAY and config.batch_size == 5
    assert config.lr_schedule == "constant" and config.class_balance is False


def test_explicit_settings_override_the_recipe():
    config = TrainConfig(preset="camvid_scratch", optimizer="sgd", crop_size=False, class_balance=False,
                         epochs=3)
    assert config.optimizer == "sgd"
    assert config.learning_rate is None  # the recipe's 1e-3 was tuned for adam: sgd's default
    assert config.crop_size is None and config.class_balance is False and config.epochs == 3
    assert "optimizer" not in config.from_recipe and "learning_rate" not in config.from_recipe
    same_optimizer = TrainConfig(preset="camvid_scratch", optimizer="adam")
    assert same_optimizer.learning_rate == 1e-3


def test_cli_flags_reach_the_config(monkeypatch):
    captured = {}
    monkeypatch.setattr(training, "train", lambda **settings: captured.update(settings))
    assert cli.main(["train", "--preset", "camvid_scratch", "--no-class-balance", "--no-crop",
                     "--learning-rate", "5e-4"]) == 0
    config = TrainConfig(**captured)
    assert config.class_balance is False and config.crop_size is None
    assert config.learning_rate == 5e-4 and config.optimizer == "adam" and config.lr_schedule == "cosine"
    captured.clear()
    assert cli.main(["train", "--preset", "camvid_scratch"]) == 0
    assert "class_balance" not in captured and "crop_size" not in captured  # left to the recipe


def test_recipe_crops_larger_than_the_image_size_name_the_way_out(tmp_path):
    from reseg_tf.training.data import model_config_for

    import pipelines

    config = TrainConfig(preset="camvid_scratch", image_size=(32, 32))
    with pytest.raises(ValueError, match="recipe crops 180x240.*--no-crop"):
        model_config_for(config, pipelines.get_source("camvid", None))


def test_presets_command_shows_each_recipe(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    front_end, recipe = out[out.index("camvid_scratch "):].splitlines()[1:3]
    assert "optimizer=adam" in recipe and "crop_size=180x240" in recipe and "class_balance_power=0.5" in recipe
    assert front_end.strip().startswith("front end: scratch_stem")
    assert out.count("recipe:") == out.count("front end:") == len(list_presets())


def test_a_recipe_may_name_a_loss_and_the_flag_overrides_it(monkeypatch):
    from reseg_tf.models import presets

    monkeypatch.setitem(presets.RECIPES, "demo", dict(loss="cross_entropy+lovasz", loss_weights=(1.0, 0.5)))
    config = TrainConfig(preset="demo")
    assert (config.loss, config.loss_weights) == ("cross_entropy+lovasz", (1.0, 0.5))
    assert TrainConfig(preset="demo", loss="dice", loss_weights=(1.0,)).loss == "dice"
    assert TrainConfig(preset="camvid_scratch").loss == "cross_entropy"
    monkeypatch.setitem(presets.RECIPES, "demo", dict(loss="iou"))
    with pytest.raises(ValueError, match="unknown loss 'iou'"):
        TrainConfig(preset="demo")
