"""The README's set-up lines are what CI runs, and another Keras backend is refused in one line."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_setup_lines():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < text.index("\n## "), "the set-up block comes first"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2, lines
    return lines


def test_readme_test_line_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    quoted = re.search(r"bash -c '([^']*)'", ci)
    assert quoted, ".ci/run runs one quoted command line"
    _, test_line = _readme_setup_lines()
    assert quoted.group(1).strip() == test_line.strip()


def test_readme_first_line_sets_up_and_runs_the_main_job():
    main_line, test_line = _readme_setup_lines()
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install -e "
    assert main_line.startswith(setup) and test_line.startswith(setup)
    assert main_line.rstrip().endswith("&& reseg train")
    assert "pytest" in test_line


def _run(code_or_args, env_extra, tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in ("KERAS_BACKEND", "KERAS_HOME")}
    env.update(env_extra, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *code_or_args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_cli_with_another_backend_exits_2_with_one_line(backend, tmp_path):
    result = _run(["-m", "reseg_tf.cli", "presets"], {"KERAS_BACKEND": backend}, tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "TensorFlow backend" in lines[0] and repr(backend) in lines[0]
    assert "KERAS_BACKEND=tensorflow" in lines[0]
    assert result.stdout == ""


def test_import_with_another_backend_raises_import_error_naming_it(tmp_path):
    code = ("import sys\ntry:\n    import reseg_tf\nexcept ImportError as e:\n    print(e)\n    sys.exit(3)\n"
            "sys.exit(0)")
    result = _run(["-c", code], {"KERAS_BACKEND": "jax"}, tmp_path)
    assert result.returncode == 3, result.stderr
    assert "'jax'" in result.stdout and "KERAS_BACKEND" in result.stdout
    assert "keras" not in result.stderr.lower()  # stopped before Keras was imported


def test_backend_from_keras_json_is_checked_too(tmp_path):
    home = tmp_path / "keras_home"
    home.mkdir()
    (home / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    result = _run(["-m", "reseg_tf.cli", "presets"], {"KERAS_HOME": str(home)}, tmp_path)
    assert result.returncode == 2
    assert "'jax'" in result.stderr and "keras.json" in result.stderr


def test_tensorflow_backend_explicitly_set_is_accepted(tmp_path):
    result = _run(["-c", "import reseg_tf, keras; print(keras.backend.backend())"],
                  {"KERAS_BACKEND": "tensorflow"}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tensorflow"
