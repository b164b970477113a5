"""benchmarks/run_all.py: the RESULTS.md it renders from fake benchmark outcomes (no benchmark runs)."""
import importlib.util
import json
from pathlib import Path

RUN_ALL = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"
spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
run_all = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_all)

FIGURES = {"repeats": 3, "speedup": 1.87, "fastest_mode": "fast",
           "latency_ms": {"saved_model": 340.8, "tflite_fp32": 331.6}, "fps": {"saved_model": 2.93, "tflite_fp32": 3.02}}
RUN_INFO = {"start": "2030-01-01 10:00 UTC", "end": "2030-01-01 10:30 UTC", "load_start": (5.5, 4.0, 3.0),
            "load_end": (2.0, 3.0, 3.5), "machine": {"cpu": "Some CPU", "cores": 2, "avx512_bf16": False},
            "versions": {"python": "3.11.7", "tensorflow": "2.21.0", "keras": "3.15.1"}, "quick": False,
            "command": "python benchmarks/run_all.py"}


def outcome(name, command, returncode=0, json_line=None, stderr=""):
    return run_all.Outcome(name=name, command=command, description=f"What {name} measures.", seconds=12.3,
                           returncode=returncode, json_line=json_line, stderr=stderr)


def test_last_json_line_skips_tables_logs_and_non_objects():
    stdout = 'case  outcome\n{"a": 1}\nnot json\n{"b": 2}\n[1, 2]\n"text"\n'
    assert run_all.last_json_line(stdout) == '{"b": 2}'
    assert run_all.last_json_line("no figures\n") is None


def test_rendered_results_show_command_figures_failures_and_load():
    machine_path = f"{run_all.ROOT}/benchmarks/slow_bench.py"
    outcomes = [
        outcome("fast_bench", "python benchmarks/fast_bench.py --repeats 3", json_line=json.dumps(FIGURES)),
        outcome("slow_bench", "python benchmarks/slow_bench.py", returncode=None,
                stderr="starting\n" + f'  File "{machine_path}", line 9\nMemoryError: out of memory\n'),
        outcome("quiet_bench", "python benchmarks/quiet_bench.py", stderr="done"),
    ]
    text = run_all.render_results(outcomes, RUN_INFO, not_run={"gpu_bench": "needs a GPU"})

    assert "Load average (1 / 5 / 15 min): 5.50 / 4.00 / 3.00 at the start, 2.00 / 3.00 / 3.50 at the end" in text
    assert "Some CPU, 2 cores, AVX512_BF16: no" in text and "TensorFlow 2.21.0, Keras 3.15.1" in text
    fast = text.split("## fast_bench")[1].split("\n## ")[0]
    assert "    python benchmarks/fast_bench.py --repeats 3" in fast and "What fast_bench measures." in fast
    assert "| `speedup` | 1.87 |" in fast and "| `fastest_mode` | fast |" in fast
    assert "| | `latency_ms` | `fps` |" in fast and "| `tflite_fp32` | 331.6 | 3.02 |" in fast
    assert "```json\n" + json.dumps(FIGURES) + "\n```" in fast

    slow = text.split("## slow_bench: TIMED OUT after 12 s")[1].split("\n## ")[0]
    assert "python benchmarks/slow_bench.py" in slow and "MemoryError: out of memory" in slow
    assert 'File "benchmarks/slow_bench.py"' in slow and str(run_all.ROOT) not in text
    assert "## quiet_bench: FAILED (no JSON line on stdout)" in text
    assert "| gpu_bench | not run here: needs a GPU | - |" in text
    assert [o.failed for o in outcomes] == [False, True, True]


def test_a_benchmark_that_cannot_start_is_a_failure():
    result = run_all.run_benchmark(run_all.Benchmark("no_such_bench", timeout_s=60), quick=False)
    assert result.failed and result.returncode not in (0, None)
    assert "no_such_bench.py" in result.stderr
    assert "## no_such_bench: FAILED (exit code" in run_all.render_section(result)


def test_an_only_run_replaces_its_sections_and_keeps_the_others():
    full = run_all.render_results(
        [outcome("a_bench", "python benchmarks/a_bench.py", json_line='{"x": 1}'),
         outcome("b_bench", "python benchmarks/b_bench.py", json_line='{"y": 2}')],
        RUN_INFO, not_run={"gpu_bench": "needs a GPU"})
    partial = run_all.render_results(
        [outcome("b_bench", "python benchmarks/b_bench.py", json_line='{"y": 3}'),
         outcome("c_bench", "python benchmarks/c_bench.py", returncode=1, json_line='{"z": 4}')],
        {**RUN_INFO, "start": "2030-02-02 08:00 UTC", "command": "python benchmarks/run_all.py --only b_bench,c_bench"},
        not_run={})
    merged = run_all.merge_results(full, partial)

    titles = [line for line in merged.splitlines() if line.startswith("## ")]
    assert titles == ["## a_bench", "## b_bench", "## c_bench: FAILED (exit code 1)",
                      "## gpu_bench: not run here: needs a GPU"]
    assert '{"x": 1}' in merged and '{"y": 3}' in merged and '{"y": 2}' not in merged
    rows = [line.split(" | ")[0] for line in merged.splitlines() if line.startswith("| ") and "_bench" in line]
    assert rows == ["| a_bench", "| b_bench", "| c_bench", "| gpu_bench"]
    assert ("Updated later by `python benchmarks/run_all.py --only b_bench,c_bench` (2030-02-02 08:00 UTC to "
            "2030-01-01 10:30 UTC; Load average (1 / 5 / 15 min): 5.50 / 4.00 / 3.00 at the start, 2.00 / 3.00 / 3.50 "
            "at the end): b_bench, c_bench.") in merged
    assert merged.startswith(full.split("| benchmark |")[0].rstrip("\n"))
