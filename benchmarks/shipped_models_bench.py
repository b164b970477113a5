"""Costs and val accuracy of every model shipped in the package, measured in one run.

For each pretrained model (`reseg_tf.list_pretrained()`), at the size it was trained at
(`run.json`, else its preset's size) or `--image-size`: parameters, `.keras` MB, TFLite fp32 and int8 file MB, operators,
and ms per image (batch 1) with 1 and 2 interpreter threads, int8 calibrated on real images of
the model's own dataset; beside them its val mean IoU (`metrics.json`, selected on val).
`fp32_1t_vs_camvid` is each model's one-thread fp32 ms over the CamVid default's, in this run.
`--output FILE` also writes the figures as JSON (`reseg models` shows them from the copy
committed as `saved_models/shipped_models_costs.json`).

    python benchmarks/shipped_models_bench.py [--models camvid,camvid_mobile_scratch] [--repeats N]
        [--image-size H W] [--output saved_models/shipped_models_costs.json]
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pipelines  # noqa: E402
from front_end_bench import tflite_ms  # noqa: E402  (benchmarks/ is this script's folder)
import reseg_tf  # noqa: E402
from reseg_tf import export  # noqa: E402
from reseg_tf.export.saved_model import write_static_saved_model  # noqa: E402
from reseg_tf.run_files import atomic_write_json, read_json  # noqa: E402

SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
THREADS = (1, 2)
VARIANTS = ("fp32", "int8")


def measure(entry, image_size, num_images, repeats, scratch):
    model = reseg_tf.models.with_input_size(export.load_reseg_model(entry["path"]), image_size)
    data_dir = SHARED_DATASETS / entry["dataset"]
    if data_dir.is_dir():  # the val images of the model's own dataset, whatever its layout
        images_dir = data_dir
        files = [image for image, _ in pipelines.get_source(entry["dataset"], data_dir=str(data_dir)).pairs("val")]
    else:
        images_dir = export.sample_data_dir()
        files = export.find_images(images_dir)
    images = export.load_images(export.spread_files(files, num_images), image_size)
    row = {"dataset": entry["dataset"], "image_size": list(image_size), "params": model.count_params(),
           "keras_mb": round(os.path.getsize(entry["path"]) / 2**20, 3),
           "val_mean_iou": entry["val"].get("mean_iou"), "images": os.path.relpath(images_dir, ROOT)}
    source = scratch / f"{entry['name']}_saved_model"
    write_static_saved_model(model, source, image_size)
    for variant in VARIANTS:
        path = scratch / f"{entry['name']}_{variant}.tflite"
        export.convert_tflite(source, variant, path, representative_images=images if variant == "int8" else None)
        row[f"{variant}_mb"] = round(path.stat().st_size / 2**20, 3)
        row[f"{variant}_ops"] = export.tflite_size_breakdown(path)["operators"]
        for threads in THREADS:
            row[f"{variant}_{threads}t_ms"] = tflite_ms(path, images, repeats, threads)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None,
                        help="comma-separated pretrained model names; default: every shipped model")
    parser.add_argument("--image-size", nargs=2, type=int, default=None, metavar=("H", "W"),
                        help="measure every model at this size; default: each at its training size")
    parser.add_argument("--num-images", type=int, default=4, help="real images timed (and calibrating int8)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images timed")
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    entries = {entry["name"]: entry for entry in reseg_tf.list_pretrained() if entry["path"]}
    names = args.models.split(",") if args.models else sorted(entries)
    unknown = [name for name in names if name not in entries]
    if unknown:
        parser.error(f"--models: no installed pretrained model named {unknown}; available: {sorted(entries)}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="reseg-shipped-bench-") as scratch:
        for name in names:
            run = read_json(Path(entries[name]["path"]).with_name("run.json")) or {}
            preset = run.get("settings", {}).get("preset")
            trained_at = run.get("settings", {}).get("image_size") or reseg_tf.get_preset(preset)[1]
            size = tuple(args.image_size or trained_at)
            rows[name] = measure(entries[name], size, args.num_images, args.repeats, Path(scratch))
            print(name, rows[name], file=sys.stderr, flush=True)
    reference = rows.get("camvid", {}).get("fp32_1t_ms")
    for row in rows.values():
        if reference:
            row["fp32_1t_vs_camvid"] = round(row["fp32_1t_ms"] / reference, 3)
    result = {"benchmark": "shipped_models", "cpu_count": os.cpu_count(), "repeats": args.repeats,
              "threads": list(THREADS), "models": rows}
    if args.output:
        atomic_write_json(args.output, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
