"""Tiled vs whole-image-resize inference on CamVid val upscaled 2x (720x960): mean IoU and ms per image.

The split's images are upscaled (bilinear, antialiased as training resizes) and their labels
(nearest neighbour) by `--upscale` into a temporary SegNet-layout copy, which `reseg_tf.evaluate`
scores twice with the same model, at the labels' full resolution: once with every image resized
to the working size (the default inference), once with `tile=True` (windows of the working size
at the model's training pixel scale, or `--scale`, blended; `reseg_tf.tiling`). ms per image is
the model's time per image (median, decoding excluded; tiled: every window and the blend).

    python benchmarks/tile_bench.py [--model saved_models/camvid/model.keras]
        [--data-dir ../shared/datasets/camvid] [--num-images N] [--scale S]
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THIN_CLASSES = ("Pole", "SignSymbol", "Fence")


def write_upscaled_split(source, split, factor, folder, num_images=None):
    """SegNet-layout copy of `split` with images and labels `factor` times larger; returns the
    number of pairs written."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from reseg_tf.inference import read_image_file, to_working_size

    pairs = source.pairs(split)[:num_images]
    os.makedirs(os.path.join(folder, split), exist_ok=True)
    os.makedirs(os.path.join(folder, f"{split}annot"), exist_ok=True)
    lines = []
    for image_path, mask_path in pairs:
        name = os.path.basename(image_path)
        image = read_image_file(image_path)
        size = (image.shape[0] * factor, image.shape[1] * factor)
        large = to_working_size(tf.constant(image, tf.float32), size).numpy().astype(np.uint8)
        Image.fromarray(large).save(os.path.join(folder, split, name))
        with Image.open(mask_path) as mask:
            mask.resize(size[::-1], Image.Resampling.NEAREST).save(os.path.join(folder, f"{split}annot", name))
        lines.append(f"{split}/{name} {split}annot/{name}")
    Path(folder, f"{split}.txt").write_text("\n".join(lines) + "\n")
    return len(pairs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="saved_models/camvid/model.keras", help="the .keras model")
    parser.add_argument("--data-dir", default="../shared/datasets/camvid",
                        help="CamVid in the SegNet layout; default: ../shared/datasets/camvid")
    parser.add_argument("--split", default="val", help="split; default: val")
    parser.add_argument("--upscale", type=int, default=2, help="integer upscaling factor; default: 2")
    parser.add_argument("--num-images", type=int, default=None, help="first N pairs only; default: all")
    parser.add_argument("--scale", type=float, default=None,
                        help="tiled: resize images by this factor; default: the model's training scale")
    args = parser.parse_args(argv)

    import pipelines
    import reseg_tf
    from reseg_tf.inference import model_input_size
    from reseg_tf.model_io import load_reseg_model
    from reseg_tf.tiling import DEFAULT_OVERLAP, count_windows

    model = load_reseg_model(args.model)
    source = pipelines.get_source("camvid", args.data_dir)
    with tempfile.TemporaryDirectory() as folder:
        count = write_upscaled_split(source, args.split, args.upscale, folder, args.num_images)
        native = pipelines.get_source("camvid", folder).pairs(args.split)[0][0]
        image_size = reseg_tf.inference.read_image_file(native).shape[:2]
        runs = {}
        for label, tile in (("resized", False), ("tiled", True)):
            print(f"{label} ...", file=sys.stderr, flush=True)
            runs[label] = reseg_tf.evaluate(model, "camvid", folder, args.split, verbose=0, tile=tile,
                                            scale=args.scale)
    scale = runs["tiled"]["tile_scale"]
    window = model_input_size(model)
    result = {
        "model": args.model, "split": args.split, "num_images": count,
        "image_size": f"{image_size[0]}x{image_size[1]}", "working_size": f"{window[0]}x{window[1]}",
        "tile_scale": round(scale, 4), "tile_overlap": DEFAULT_OVERLAP,
        "windows_per_image": count_windows(image_size, window, scale),
    }
    for label, summary in runs.items():
        result[f"{label}_mean_iou"] = round(summary["mean_iou"], 4)
        result[f"{label}_global_acc"] = round(summary["global_acc"], 4)
        result[f"{label}_ms_per_image"] = round(summary["ms_per_image"], 1)
        result[f"{label}_thin_class_iou"] = {name: round(summary["class_iou"][name], 4) for name in THIN_CLASSES}
    result["tiled_minus_resized_mean_iou"] = round(result["tiled_mean_iou"] - result["resized_mean_iou"], 4)
    result["tiled_vs_resized_time"] = round(result["tiled_ms_per_image"] / result["resized_ms_per_image"], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
