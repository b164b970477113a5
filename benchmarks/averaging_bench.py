"""Averaged inference on a dataset split: single pass, flip, MC-N and MC-N + flip per model.

For every `--model LABEL=PATH` it evaluates the split (`reseg_tf.evaluate`, labels' full
resolution) once per row: single pass, `--tta flip`, and, for a model with dropout,
`--mc-samples N` and `--mc-samples N --tta flip`. Each row reports mean IoU, global and average
class accuracy, ECE (15 bins), the mean IoU of the 90% most confident pixels and the model's
milliseconds per image (median, decoding excluded), and names the `reseg evaluate` command that
reproduces it. Writes `OUTPUT_DIR/<label>_<row>.json` (the evaluate JSON) and
`OUTPUT_DIR/table.md`; the last stdout line is the rows as one JSON object.

    python benchmarks/averaging_bench.py --model shipped=saved_models/camvid/model.keras \\
        --data-dir ../shared/datasets/camvid [--mc-samples 8] [--output-dir runs/averaging]
"""
import argparse
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rows(has_dropout, mc_samples):
    rows = [("single", "none", 0), ("flip", "flip", 0)]
    if has_dropout and mc_samples:
        rows += [(f"mc{mc_samples}", "none", mc_samples), (f"mc{mc_samples}_flip", "flip", mc_samples)]
    return rows


def _command(model, args, tta, mc_samples):
    parts = ["reseg", "evaluate", "--model", model, "--dataset", args.dataset, "--split", args.split,
             "--uncertainty"]
    if args.data_dir:
        parts[4:4] = ["--data-dir", args.data_dir]
    if tta != "none":
        parts += ["--tta", tta]
    if mc_samples:
        parts += ["--mc-samples", str(mc_samples)]
    return shlex.join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, metavar="LABEL=PATH",
                        help="a model to evaluate, with its label in the table; repeatable")
    parser.add_argument("--dataset", default="camvid", help="data source; default: camvid")
    parser.add_argument("--data-dir", default=None, help="dataset root; default: the embedded CamVid sample")
    parser.add_argument("--split", default="val", help="split; default: val")
    parser.add_argument("--mc-samples", type=int, default=8, help="N of the MC rows; default: 8")
    parser.add_argument("--output-dir", default="runs/averaging",
                        help="folder for the per-row JSON files and table.md; default: runs/averaging")
    args = parser.parse_args(argv)

    import reseg_tf
    from reseg_tf.averaging import dropout_layers
    from reseg_tf.model_io import load_reseg_model
    from reseg_tf.run_files import atomic_write_text

    os.makedirs(args.output_dir, exist_ok=True)
    results = {}
    lines = ["| model | inference | mean IoU | global acc | avg class acc | ECE | mean IoU, 90% most confident "
             "| ms per image | ms vs single pass |", "|---|---|---|---|---|---|---|---|---|"]
    commands = []
    for entry in args.model:
        label, separator, path = entry.partition("=")
        if not separator or not label or not path:
            parser.error(f"--model {entry!r}: expected LABEL=PATH")
        model = load_reseg_model(path)
        single_ms = None
        for row, tta, mc_samples in _rows(bool(dropout_layers(model)), args.mc_samples):
            print(f"{label} {row} ...", flush=True)
            summary = reseg_tf.evaluate(model, args.dataset, args.data_dir, args.split, tta=tta, mc_samples=mc_samples,
                                        uncertainty=True, verbose=0,
                                        json_path=os.path.join(args.output_dir, f"{label}_{row}.json"))
            single_ms = single_ms or summary["ms_per_image"]
            key = f"{label}_{row}"
            results[key] = {name: round(summary[name], 4) for name in
                            ("mean_iou", "global_acc", "avg_class_acc", "ece", "mean_iou_confident_90", "ms_per_image")}
            results[key]["cost_vs_single"] = round(summary["ms_per_image"] / single_ms, 2)
            figures = results[key]
            lines.append(f"| {label} | {row} | {figures['mean_iou']:.4f} | {figures['global_acc']:.4f} | "
                         f"{figures['avg_class_acc']:.4f} | {figures['ece']:.4f} | {figures['mean_iou_confident_90']:.4f} | "
                         f"{figures['ms_per_image']:.0f} | {figures['cost_vs_single']:.2f}x |")
            commands.append(f"- {label} {row}: `{_command(path, args, tta, mc_samples)}`")
            print(lines[-1], flush=True)
    table = "\n".join(lines + ["", "Each row is reproduced by:", ""] + commands) + "\n"
    atomic_write_text(os.path.join(args.output_dir, "table.md"), table)
    print(table)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
