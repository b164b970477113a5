"""`reseg --help`, `reseg COMMAND --help`, `reseg models` and `reseg presets` answer without
importing TensorFlow or Keras, no TensorFlow log line comes before a command's own output, and
the package's names, loaded on first use, still reach Keras' deserialization."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras")


def _env(**extra):
    env = {name: value for name, value in os.environ.items()
           if name not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND", "KERAS_HOME")}
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *extra.pop("path", [])]), **extra}


def _run(args, tmp_path, **env):
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(**env), capture_output=True,
                          text=True, timeout=300)


def _imported(importtime_stderr):
    """Top-level names of the modules `python -X importtime` reports; the other stderr lines."""
    modules, others = set(), []
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:"):
            modules.add(line.rsplit("|", 1)[-1].strip().split(".")[0])
        elif line.strip():
            others.append(line)
    return modules, others


@pytest.mark.parametrize("args, first_line", [
    (["--help"], "usage: reseg "),
    (["train", "--help"], "usage: reseg train "),
    (["export", "--help"], "usage: reseg export "),
    (["evaluate", "--help"], "usage: reseg evaluate "),
    (["models"], "camvid: "),
    (["presets"], "camvid  (model size "),
])
def test_answers_without_tensorflow(args, first_line, tmp_path):
    result = _run(["-X", "importtime", "-m", "reseg_tf.cli", *args], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    modules, other_stderr = _imported(result.stderr)
    assert "reseg_tf" in modules and "argparse" in modules  # the report is read right
    assert not modules & set(HEAVY), f"reseg {' '.join(args)} imported {sorted(modules & set(HEAVY))}"
    assert other_stderr == []
    assert result.stdout.startswith(first_line)


def test_version_prints_the_package_version(tmp_path):
    import reseg_tf

    result = _run(["-m", "reseg_tf.cli", "--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"reseg {reseg_tf.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", reseg_tf.__version__)


def test_package_names_load_on_first_use(tmp_path):
    code = (
        "import sys, reseg_tf, pipelines\n"
        "from reseg_tf.models import PRESETS\n"
        "from reseg_tf.export.signatures import SIGNATURES\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
        "print(set(reseg_tf.__all__) <= set(dir(reseg_tf)), 'build_model' in dir(reseg_tf))\n"
        "from reseg_tf import training\n"  # a submodule, as before
        "print(reseg_tf.build_model.__module__, pipelines.make_dataset.__module__, training.train.__name__)\n"
        "try:\n    reseg_tf.no_such_name\nexcept AttributeError as error:\n    print(error)\n"
    )
    result = _run(["-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[:3] == ["[]", "True True", "reseg_tf.models.reseg pipelines.dataset train"]
    assert lines[3] == "module 'reseg_tf' has no attribute 'no_such_name'"


def test_source_names_match_the_registered_sources():
    from pipelines.options import SOURCE_NAMES
    from pipelines.sources import SOURCES

    assert tuple(SOURCES) == SOURCE_NAMES
    assert all(source.name == name for name, source in SOURCES.items())


FAKE_TENSORFLOW = (
    "import os\n"
    "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n'\n"
    "            b'I0000 00:00:1796683185.773922   10413 port.cc:153] oneDNN custom operations are on.\\n'\n"
    "            b'W0102 03:04:05.678901 10413 cuda_dnn.cc:12] a warning\\n'\n"
    "            b'a line of its own\\n')\n"
)


@pytest.mark.parametrize("user_level", [None, "0"])
def test_tensorflow_log_lines_are_held_back_unless_the_user_sets_a_level(user_level, tmp_path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = ("import os\nfrom reseg_tf.quiet_tensorflow import import_tensorflow_quietly\n"
            "import_tensorflow_quietly()\nprint(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    env = {"path": [str(tmp_path)], **({"TF_CPP_MIN_LOG_LEVEL": user_level} if user_level else {})}
    result = _run(["-c", code], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    if user_level is None:
        assert result.stderr == "a line of its own\n"
        assert result.stdout.strip() == "3"
    else:
        assert result.stderr.count("\n") == 4 and "port.cc:153]" in result.stderr
        assert result.stdout.strip() == user_level


@pytest.mark.slow
def test_a_tensorflow_command_prints_its_own_output_first(tmp_path):
    result = _run(["-m", "reseg_tf.cli", "summary", "--preset", "demo", "--image-size", "32", "32"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("demo: ")
    assert result.stderr == ""


@pytest.mark.parametrize("imports", ["import reseg_tf, keras", "import keras, reseg_tf",
                                     "from reseg_tf.layers import ReNetLayer\nimport keras"])
def test_keras_finds_the_package_classes_after_import_reseg_tf(imports, tmp_path):
    """`keras.models.load_model` of a ReSeg file needs no other import than `reseg_tf`, whichever
    of the two is imported first, and also when a module of the package imported Keras (its
    classes are then registered once that import is done, not half-way through it)."""
    model = ROOT / "saved_models" / "weizmann_horse" / "model.keras"
    code = f"{imports}\nmodel = keras.models.load_model({str(model)!r})\nprint(type(model).__name__)"
    result = _run(["-c", code], tmp_path, TF_CPP_MIN_LOG_LEVEL="3")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "ReSegModel"
