"""The bad-input drill in CI: every broken input ends in a clear error or a documented
conversion, never a traceback or a hang (see benchmarks/bad_input_drill.py for the cases)."""
import importlib.util
import json
from pathlib import Path

import pytest

DRILL = Path(__file__).resolve().parent.parent / "benchmarks" / "bad_input_drill.py"


@pytest.mark.slow
def test_bad_input_drill_handles_every_case(capsys):
    spec = importlib.util.spec_from_file_location("bad_input_drill", DRILL)
    drill = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drill)

    summary = drill.main(["--timeout", "120"])
    printed = capsys.readouterr().out.strip().splitlines()
    assert json.loads(printed[-1]) == summary  # the last line is the JSON summary
    assert summary["hung"] == 0, summary["failures"]
    assert summary["crashed"] == 0, summary["failures"]
    assert summary["handled"] == summary["tried"] > 100, summary["failures"]
