"""The default models are package data: in the wheel, and loadable by name after a plain install."""
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reseg_tf import cli
from reseg_tf.pretrained import COSTS_FILE, PRETRAINED, list_pretrained, load_pretrained

REPO = Path(__file__).resolve().parent.parent
PACKAGE_FILES = ("model.keras", "metrics.json", "run.json")
MAX_ADDED_BYTES = 15_000_000


def test_every_pretrained_model_loads_by_name_with_its_classes():
    for name in PRETRAINED:
        model = load_pretrained(name)
        expected = 11 if name.startswith("camvid") else 2
        assert model.output_shape[-1] == expected, name
    assert load_pretrained("flowers").name == load_pretrained("oxford_flowers17").name
    with pytest.raises(ValueError, match="available: camvid"):
        load_pretrained("cityscapes")


def test_models_command_lists_each_with_its_val_figures(capsys):
    assert cli.main(["models", "--json"]) == 0
    entries = {entry["name"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert sorted(entries) == sorted(PRETRAINED)
    for name, entry in entries.items():
        metrics = json.loads((REPO / "saved_models" / name / "metrics.json").read_text())
        assert entry["val"]["mean_iou"] == metrics["mean_iou"]
        assert entry["preset"] and entry["path"]
    assert entries["weizmann_horse"]["val"]["foreground_iou"] == json.loads(
        (REPO / "saved_models/weizmann_horse/metrics.json").read_text())["class_iou"]["horse"]
    assert "foreground_iou" not in entries["camvid"]["val"]
    assert cli.main(["models"]) == 0
    assert capsys.readouterr().out.count("selected on val") == len(PRETRAINED)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out)], check=True, capture_output=True, cwd=out)
    (path,) = out.glob("reseg_tf-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_the_default_models_and_nothing_else_of_saved_models(wheel):
    with zipfile.ZipFile(wheel) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    pretrained = {name: size for name, size in sizes.items() if name.startswith("reseg_tf_pretrained/")}
    expected = {f"reseg_tf_pretrained/{d}/{f}" for d in PRETRAINED for f in PACKAGE_FILES}
    assert expected <= set(pretrained)
    assert set(pretrained) - expected == {"reseg_tf_pretrained/__init__.py", f"reseg_tf_pretrained/{COSTS_FILE}"}
    assert sum(pretrained.values()) <= MAX_ADDED_BYTES
    assert "reseg_tf/pretrained.py" in sizes and "reseg_tf/cli.py" in sizes
    assert any(name.startswith("pipelines/data/camvid_sample/") for name in sizes)


@pytest.mark.slow
def test_plain_install_loads_each_model_by_name_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The installed copy comes first on the path: the checkout (and its saved_models/) is not used.
    env = {**os.environ, "PYTHONPATH": str(site), "TF_CPP_MIN_LOG_LEVEL": "3"}
    code = ("import reseg_tf, reseg_tf.pretrained as p\n"
            "print(reseg_tf.__file__)\n"
            f"for name in {tuple(PRETRAINED)!r}:\n"
            "    print(name, p.pretrained_path(name), reseg_tf.load_pretrained(name).output_shape[-1])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(site))
    assert [line.split()[0] for line in lines[1:]] == list(PRETRAINED)
    for line in lines[1:]:
        assert line.split()[1].startswith(str(site))
    assert [line.split()[2] for line in lines[1:]] == ["11" if name.startswith("camvid") else "2" for name in PRETRAINED]
    listed = subprocess.run([sys.executable, "-m", "reseg_tf.cli", "models"], cwd=elsewhere, env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.count("selected on val") == len(PRETRAINED)


@pytest.mark.slow
def test_wheel_declares_run_time_needs_only_and_the_package_version(wheel):
    import reseg_tf

    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    assert f"Version: {reseg_tf.__version__}" in lines
    requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    always = {re.split(r"[<>=~!;\[ ]", r)[0].lower() for r in requires if "extra ==" not in r}
    extras = {}
    for requirement in requires:
        if "extra ==" in requirement:
            extra = re.search(r"extra == ['\"](\w+)['\"]", requirement).group(1)
            extras.setdefault(extra, set()).add(re.split(r"[<>=~!;\[ ]", requirement)[0].lower())
    assert {"tensorflow", "keras", "numpy"} <= always
    assert not always & {"pytest", "pytest-timeout", "pytest-xdist", "nbclient", "nbformat", "ipykernel"}
    assert {"pytest", "pytest-timeout", "pytest-xdist"} <= extras["test"]
    assert {"nbclient", "nbformat", "ipykernel"} <= extras["notebook"]
