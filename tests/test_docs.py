"""The README and docs/ say what the committed artifacts and code say."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "saved_models" / "README.md"]


def _results_rows():
    """`(folder, cells, names a model)` of each README results row that names a shipped model folder
    (`saved_models/D/`) or, for a replaced model, its figures (`saved_models/D/previous/metrics.json`)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Results"):text.index("\n## ", text.index("## Results") + 1)]
    rows = []
    for line in section.splitlines():
        found = re.search(r"`(saved_models/[\w/]+/)(metrics\.json)?`\)", line)
        if line.startswith("|") and found:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.append((found.group(1), cells, not found.group(2)))
    return rows


def test_readme_fits_in_200_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_readme_results_table_rows_come_from_the_shipped_metrics():
    rows = _results_rows()
    assert {folder for folder, _, _ in rows} >= {"saved_models/camvid/", "saved_models/weizmann_horse/",
                                              "saved_models/oxford_flowers17/"}
    for folder, cells, _ in rows:
        metrics = json.loads((ROOT / folder / "metrics.json").read_text())
        global_acc, mean_iou, foreground_iou = cells[-3:]
        assert global_acc == f"{100 * metrics['global_acc']:.1f}", folder
        assert mean_iou == f"{100 * metrics['mean_iou']:.1f}", folder
        class_iou = list(metrics["class_iou"].values())
        if len(class_iou) == 2:
            assert foreground_iou == f"{100 * class_iou[1]:.1f}", folder
        else:
            assert foreground_iou == "", folder
        assert metrics["split"] == "val"


def test_readme_results_rows_naming_a_model_folder_hold_the_model():
    rows = _results_rows()
    assert sum(names_model for _, _, names_model in rows) >= 4
    text = (ROOT / "README.md").read_text()
    assert "reseg evaluate --model DIR/model.keras" in text.replace("\n", " ")
    for folder, _, names_model in rows:
        assert (ROOT / folder / "model.keras").is_file() == names_model, (
            f"{folder}: a results row names a model folder exactly when the folder holds model.keras")


def test_every_benchmark_is_listed_in_performance_md():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    text = (ROOT / "docs" / "performance.md").read_text()
    missing = [b.name for b in run_all.BENCHMARKS if f"`{b.name}`" not in text]
    assert not missing, f"docs/performance.md does not list {missing}"


def test_every_flag_is_named_in_the_readme_or_docs():
    import argparse

    from reseg_tf.cli import build_parser

    text = "\n".join(doc.read_text() for doc in DOCS)
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = sorted({
        f"reseg {name} {flag}" for name, parser in subparsers.choices.items() for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help" and not re.search(re.escape(flag) + r"(?![\w-])", text)
    })
    assert not missing, f"flags documented nowhere (docs/commands.md lists the ones the README does not): {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_paths_named_in_docs_exist(doc):
    text = doc.read_text()
    named = set(re.findall(r"(?<![\w/.<-])((?:saved_models|docs|benchmarks|examples|pipelines|reseg_tf|tests)"
                           r"/[\w./-]*[\w/])", text))
    named = {path for path in named if not re.search(r"[A-Z]{3,}", path)}  # placeholders: NAME, DIR
    missing = sorted(path for path in named if not (ROOT / path).exists()
                     and not (doc.parent / path).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_listed_modules_joining_the_model_and_pipelines_are_the_ones_that_do():
    importing = {
        str(path.relative_to(ROOT / "reseg_tf"))
        for path in (ROOT / "reseg_tf").rglob("*.py")
        if re.search(r"^\s*(from pipelines|import pipelines)", path.read_text(), re.M)
    }
    for doc in ("ARCHITECTURE.md", "CONVENTIONS.md"):
        text = (ROOT / "docs" / doc).read_text()
        # Paragraphs and list items.
        blocks = re.split(r"\n\s*\n|\n(?=- )", text)
        block = next((b for b in blocks if "importing `pipelines` inside the functions" in b), None)
        assert block, doc
        listed = {name for name in re.findall(r"`([\w/]+\.py)`", block) if not name.startswith("pipelines/")}
        assert listed == importing, (doc, sorted(listed ^ importing))
