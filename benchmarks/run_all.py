"""Runs every CPU benchmark, one subprocess each, and writes RESULTS.md from their JSON lines.

Each benchmark in `BENCHMARKS` runs as `python benchmarks/NAME.py ARGS` from the repository
root with its own timeout; its figures are the last line of its stdout that parses as a JSON
object. The Markdown file (default: benchmarks/RESULTS.md, replaced atomically) holds a header
(date, CPU, core count, AVX512_BF16, load average at start and end, TensorFlow and Keras
versions) and, per benchmark, its command, wall time, a description (the first line of the
script's docstring), a table of its figures and the raw JSON line. A benchmark that fails, times
out or prints no JSON line gets a section that says so with the end of its stderr, and the exit
code is then 1. Machine paths in the output are written relative to the repository.

`--quick` runs every benchmark at small sizes (a smoke test of the scripts and of this file,
minutes, not figures to quote); `--only` runs some of them: their sections and summary rows
replace those of an existing output file, whose other sections are kept, and its header then
says which sections a later run updated.

    python benchmarks/run_all.py [--quick] [--output benchmarks/RESULTS.md] [--only NAME,...]
"""
import argparse
import ast
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "RESULTS.md"
STDERR_TAIL_LINES = 30


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A script in benchmarks/ and the flags of its full and quick runs.

    `keys` are the figures shown in its table, in order (empty: every top-level figure).
    """

    name: str
    args: tuple = ()
    quick_args: tuple = ()
    timeout_s: int = 900
    quick_timeout_s: int = 300
    keys: tuple = ()

    @property
    def script(self):
        return f"benchmarks/{self.name}.py"

    def argv(self, quick):
        return [self.script, *(self.quick_args if quick else self.args)]

    def command(self, quick):
        """The command line, copy-pasteable from the repository root."""
        return shlex.join(["python", *self.argv(quick)])


BENCHMARKS = (
    Benchmark("renet_bench", args=("--profile",), quick_args=("--quick", "--profile"), timeout_s=1200, keys=(
        "shape", "repeats", "fastest_mode", "fastest_mode_fwd",
        "reference_fwd_s", "fp32_fwd_s", "bf16_fwd_s", "torch_fwd_s",
        "reference_fwd_bwd_s", "fp32_fwd_bwd_s", "bf16_fwd_bwd_s", "torch_fwd_bwd_s",
        "speedup_fwd_fp32", "speedup_fwd_bf16", "speedup_fwd_bwd_fp32", "speedup_fwd_bwd_bf16",
        "speedup_fwd_bwd_fp32_of_min", "speedup_fwd_bwd_bf16_of_min",
        "torch", "vs_torch_fwd_fp32", "vs_torch_fwd_bwd_fp32", "vs_torch_fwd_bwd_bf16",
        "max_rel_diff_fp32", "max_rel_diff_bf16", "max_rel_diff_torch", "ceiling_gflops",
        "fp32_fwd_bwd_gflops", "bf16_fwd_bwd_gflops",
        "fp32_fwd_fraction_of_ceiling", "fp32_fwd_bwd_fraction_of_ceiling",
        "profile_projections_share", "profile_recurrence_fwd_bwd_share", "profile_layout_and_rest_share",
        "profile_recurrence_fwd_s", "profile_recurrence_bwd_only_s",
        "profile_projections_gflops", "profile_recurrence_fwd_gflops", "profile_recurrence_fwd_bwd_gflops",
        "profile_recurrence_matmuls_only_s", "profile_recurrence_matmuls_only_gflops",
        "profile_best_case_fwd_bwd_s", "profile_best_case_speedup_vs_reference",
        "profile_best_case_speedup_vs_torch")),
    Benchmark("train_bench", args=("--repeats", "3"), quick_args=("--quick", "--repeats", "2"),
              timeout_s=1200),
    Benchmark("precision_bench", quick_args=("--image-size", "96", "128", "--batch-size", "2", "--repeats", "3")),
    Benchmark("pipeline_bench", quick_args=("--data-dir", "pipelines/data/camvid_sample",
                                            "--pipeline-batches", "10", "--train-steps", "1")),
    Benchmark("export_bench", args=("--repeats", "3", "--front-end"), timeout_s=1800,
              quick_args=("--tflite", "fp32", "--num-images", "2")),
    # Quick: SavedModel paths only; converting the shipped model to TFLite takes minutes per variant.
    Benchmark("parity_bench", quick_args=("--tflite", "", "--num-images", "2"), timeout_s=1500),
    Benchmark("front_end_bench", timeout_s=3600, quick_args=("--image-size", "64", "96", "--presets", "camvid_mobilenet",
                                                             "--variants", "fp32", "--num-images", "1", "--repeats", "1")),
    Benchmark("shipped_models_bench", timeout_s=2400, quick_args=(
        "--models", "weizmann_horse", "--image-size", "64", "96", "--num-images", "1", "--repeats", "1")),
    Benchmark("distribute_bench", quick_args=("--image-size", "64", "96", "--steps", "6")),
    Benchmark("tile_bench", timeout_s=2400,
              quick_args=("--data-dir", "pipelines/data/camvid_sample", "--num-images", "2")),
    Benchmark("bad_input_drill", keys=("tried", "handled", "crashed", "hung", "cases", "seconds", "failures")),
    Benchmark("serving_drill", args=("--model", "camvid"), quick_args=("--quick",), timeout_s=2400, quick_timeout_s=900,
              keys=("tried", "passed", "max_image_pixels", "max_batch", "image", "bomb_png_bytes", "bomb_png_seconds",
                    "bomb_png_rss_growth_mib", "rss_after_warm_up_mib", "at_bounds_request",
                    "at_bounds_serving_bytes_peak_rss_mib", "at_bounds_serving_mask_peak_rss_mib",
                    "concurrent_peak_rss_mib", "mask_png_bytes", "mask_pixels_equal_predict",
                    "clients_1", "clients_2", "clients_4", "failures", "seconds")),
)
# Benchmarks listed in RESULTS.md but not run by this script: name -> why.
NOT_RUN = {"gpu_renet_bench": "needs a GPU"}
NOT_RUN_COMMANDS = {"gpu_renet_bench": "python benchmarks/gpu_renet_bench.py --repeats 20"}


@dataclasses.dataclass
class Outcome:
    """What one benchmark run gave. `returncode` is None when it timed out."""

    name: str
    command: str
    description: str
    seconds: float
    returncode: int | None
    json_line: str | None
    stderr: str
    keys: tuple = ()

    @property
    def result(self):
        return json.loads(self.json_line) if self.json_line else None

    @property
    def failed(self):
        return self.returncode != 0 or self.json_line is None

    @property
    def status(self):
        if self.returncode is None:
            return f"TIMED OUT after {self.seconds:.0f} s"
        if self.returncode != 0:
            return f"FAILED (exit code {self.returncode})"
        if self.json_line is None:
            return "FAILED (no JSON line on stdout)"
        return "ok"


def description(script):
    """First line of a script's module docstring, read without importing it ("" if unreadable)."""
    try:
        docstring = ast.get_docstring(ast.parse((ROOT / script).read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError):
        return ""  # the run itself then fails and its section shows why
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def last_json_line(stdout):
    """The last line of `stdout` that parses as a JSON object, or None."""
    for line in reversed(stdout.splitlines()):
        try:
            if isinstance(json.loads(line), dict):
                return line.strip()
        except ValueError:
            continue
    return None


def run_benchmark(benchmark, quick):
    """Runs one benchmark in its own process group (killed whole on timeout)."""
    timeout = benchmark.quick_timeout_s if quick else benchmark.timeout_s
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *benchmark.argv(quick)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        # The benchmark's own workers (subprocesses) are in its group: none is left running.
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        returncode = None
    return Outcome(name=benchmark.name, command=benchmark.command(quick), description=description(benchmark.script),
                   seconds=time.perf_counter() - start, returncode=returncode,
                   json_line=last_json_line(stdout), stderr=stderr, keys=benchmark.keys)


def machine_info():
    """CPU model, core count and whether the CPU has AVX512_BF16 (None where unknown)."""
    model, flags = None, None
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model is None:
            model = value.strip()
        elif key.strip() == "flags" and flags is None:
            flags = value.split()
    return {"cpu": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "avx512_bf16": None if flags is None else "avx512_bf16" in flags}


def versions():
    """Versions read from package metadata, so this process does not load TensorFlow."""
    found = {"python": platform.python_version()}
    for package in ("tensorflow", "keras"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def format_value(value):
    if isinstance(value, float):
        text = repr(value)
        return text if len(text) <= 8 else f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return "`" + json.dumps(value) + "`"
    return str(value)


def figure_tables(result, keys=()):
    """Markdown tables of a benchmark's figures.

    Scalars, lists and lone dicts go in a two-column table (only `keys`, in order, when given).
    Two or more dicts of scalars (e.g. `latency_ms` and `fps` per artifact) make one table with
    a row per inner key and a column per dict.
    """
    chosen = [k for k in keys if k in result] if keys else list(result)
    grouped = [k for k in chosen if isinstance(result[k], dict) and result[k]
               and not any(isinstance(v, (dict, list)) for v in result[k].values())]
    if len(grouped) < 2:
        grouped = []
    tables = []
    scalars = [k for k in chosen if k not in grouped]
    if scalars:
        lines = ["| figure | value |", "| --- | --- |"]
        lines += [f"| `{k}` | {format_value(result[k])} |" for k in scalars]
        tables.append("\n".join(lines))
    if grouped:
        rows = list(dict.fromkeys(row for k in grouped for row in result[k]))
        lines = ["| | " + " | ".join(f"`{k}`" for k in grouped) + " |", "| --- |" + " --- |" * len(grouped)]
        for row in rows:
            cells = [format_value(result[k][row]) if row in result[k] else "-" for k in grouped]
            lines.append(f"| `{row}` | " + " | ".join(cells) + " |")
        tables.append("\n".join(lines))
    return tables


def render_section(outcome):
    title = outcome.name if not outcome.failed else f"{outcome.name}: {outcome.status}"
    parts = [f"## {title}", outcome.description,
             f"Command (from the repository root; wall time {outcome.seconds:.0f} s):",
             f"    {outcome.command}"]
    if outcome.json_line is not None:
        parts += figure_tables(outcome.result, outcome.keys)
        parts.append("```json\n" + outcome.json_line + "\n```")
    if outcome.failed:
        tail = "\n".join(outcome.stderr.rstrip().splitlines()[-STDERR_TAIL_LINES:]) or "(stderr was empty)"
        parts += ["Last lines of its stderr:", "```text\n" + tail + "\n```"]
    return "\n\n".join(parts)


def render_results(outcomes, run_info, not_run=None):
    """The whole RESULTS.md text.

    Args:
        outcomes: `Outcome`s in the order they ran.
        run_info: dict with `start`, `end` (UTC strings), `load_start`, `load_end` (load average
            triples), `machine` (`machine_info()`), `versions` (`versions()`), `quick` (bool)
            and `command` (the run_all command line).
        not_run: `{name: reason}` of benchmarks listed but not run; default: `NOT_RUN`.
    """
    not_run = NOT_RUN if not_run is None else not_run
    machine, found = run_info["machine"], run_info["versions"]
    bf16 = {True: "yes", False: "no", None: "unknown"}[machine["avx512_bf16"]]
    load = lambda triple: " / ".join(f"{x:.2f}" for x in triple)  # noqa: E731
    header = [
        "# Benchmark results",
        f"Generated by `{run_info['command']}` from the repository root: do not edit by hand, rerun "
        "it. Each section's figures come from the command shown in it, run once in this run.",
        "\n".join([
            f"- Date: {run_info['start']} to {run_info['end']}",
            f"- Machine: {machine['cpu']}, {machine['cores']} cores, AVX512_BF16: {bf16}",
            f"- Load average (1 / 5 / 15 min): {load(run_info['load_start'])} at the start, "
            f"{load(run_info['load_end'])} at the end",
            f"- Python {found['python']}, TensorFlow {found['tensorflow']}, Keras {found['keras']}",
        ]),
        "A load average above the core count means other processes shared the CPU: absolute times "
        "are then slower and noisier than on an idle machine; compare the ratios within one "
        "benchmark's line, which its paths measured in the same run.",
    ]
    if run_info["quick"]:
        header.append("**Quick run** (`--quick`): small sizes and few repeats, to check that the "
                      "scripts run; these figures are not the benchmarks' results.")
    summary = ["| benchmark | status | wall time (s) |", "| --- | --- | --- |"]
    summary += [f"| {o.name} | {o.status} | {o.seconds:.0f} |" for o in outcomes]
    summary += [f"| {name} | not run here: {why} | - |" for name, why in not_run.items()]
    sections = [render_section(o) for o in outcomes]
    for name, why in not_run.items():
        command = NOT_RUN_COMMANDS.get(name, f"python benchmarks/{name}.py")
        sections.append("\n\n".join([f"## {name}: not run here: {why}", description(f"benchmarks/{name}.py"),
                                     "Command:", f"    {command}"]))
    return portable("\n\n".join(header + ["\n".join(summary)] + sections) + "\n")


def portable(text):
    """`text` with this machine's paths replaced by paths relative to the repository."""
    replacements = [(f"{ROOT}{os.sep}", ""), (str(ROOT), ".")]
    if ROOT.parent != ROOT.parent.parent:
        replacements.append((f"{ROOT.parent}{os.sep}", f"..{os.sep}"))
    replacements += [(tempfile.gettempdir(), "$TMPDIR"), (str(Path.home()), "~")]
    for machine_path, relative in replacements:
        text = text.replace(machine_path, relative)
    return text


def _split_sections(text):
    """`(head lines, {name: section})` of a RESULTS.md text; a section runs from its `## ` title."""
    head, *sections = text.rstrip("\n").split("\n\n## ")
    return head.splitlines(), {section.split("\n", 1)[0].split(":", 1)[0]: section for section in sections}


def _row_name(line):
    """The benchmark named by a summary-table row (None for other lines)."""
    return line.split("|")[1].strip() if line.startswith("| ") else None


def merge_results(previous, partial):
    """The RESULTS.md text `previous` with the sections and summary rows of `partial` (the text of
    a `--only` run) in place of its own, new ones added before the benchmarks not run, and a
    header line saying which run updated them."""
    old_head, old_sections = _split_sections(previous)
    new_head, new_sections = _split_sections(partial)
    new_rows = {_row_name(line): line for line in new_head if _row_name(line) in new_sections}
    added_rows = [name for name in new_rows if name not in map(_row_name, old_head)]
    head = []
    for line in old_head:
        if line.startswith("| benchmark | status"):
            command = next(line for line in new_head if line.startswith("Generated by")).split("`")[1]
            date = next(line for line in new_head if line.startswith("- Date: "))[len("- Date: "):]
            load = next(line for line in new_head if line.startswith("- Load average"))[len("- "):]
            head += [f"Updated later by `{command}` ({date}; {load}): {', '.join(new_sections)}.", ""]
        if added_rows and "not run here" in line:
            head += [new_rows[name] for name in added_rows]
            added_rows = []
        head.append(new_rows.get(_row_name(line), line))
    if added_rows:
        last_row = max(index for index, line in enumerate(head) if _row_name(line))
        head[last_row + 1:last_row + 1] = [new_rows[name] for name in added_rows]
    added_sections = [name for name in new_sections if name not in old_sections]
    sections = []
    for name, section in old_sections.items():
        if added_sections and "not run here" in section.split("\n", 1)[0]:
            sections += [new_sections[added] for added in added_sections]
            added_sections = []
        sections.append(new_sections.get(name, section))
    sections += [new_sections[added] for added in added_sections]
    return "\n\n## ".join(["\n".join(head)] + sections) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few repeats: checks that every benchmark runs (minutes)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT),
                        help="Markdown file to write (replaced atomically); default: benchmarks/RESULTS.md")
    parser.add_argument("--only", default=None,
                        help="comma-separated benchmark names to run; default: all of "
                             + ", ".join(b.name for b in BENCHMARKS))
    args = parser.parse_args(argv)
    selected = list(BENCHMARKS)
    if args.only:
        names = [name.strip() for name in args.only.split(",") if name.strip()]
        known = {b.name for b in BENCHMARKS}
        unknown = [name for name in names if name not in known]
        if unknown:
            parser.error(f"--only: unknown benchmark(s) {unknown}; choose from {sorted(known)}")
        selected = [b for b in BENCHMARKS if b.name in names]

    command = ["python", "benchmarks/run_all.py"] + (["--quick"] if args.quick else [])
    if args.only:
        command += ["--only", ",".join(b.name for b in selected)]
    run_info = {"start": utc_now(), "load_start": os.getloadavg(), "machine": machine_info(),
                "versions": versions(), "quick": args.quick, "command": shlex.join(command)}
    outcomes = []
    for number, benchmark in enumerate(selected, start=1):
        print(f"[{number}/{len(selected)}] {benchmark.command(args.quick)}", file=sys.stderr, flush=True)
        outcome = run_benchmark(benchmark, args.quick)
        print(f"    {outcome.status}, {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    run_info.update(end=utc_now(), load_end=os.getloadavg())
    not_run = NOT_RUN if not args.only else {}

    # Imported here: reseg_tf loads TensorFlow, which the benchmarks' parent process does not need.
    from reseg_tf.run_files import atomic_write_text

    text = render_results(outcomes, run_info, not_run)
    if args.only and os.path.isfile(args.output):
        text = merge_results(Path(args.output).read_text(encoding="utf-8"), text)
    atomic_write_text(args.output, text)
    failed = [o.name for o in outcomes if o.failed]
    print(f"wrote {args.output}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
