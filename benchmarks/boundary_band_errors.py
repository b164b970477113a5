"""Where a binary model's val errors fall: inside the trimaps' boundary band, or away from it.

Oxford Flowers 17's trimaps mark a band between flower and background (palette index 0) that the
`oxford_flowers17` source counts as background, as the authors' loader did. For each image of
the split, the model's mask (single pass, at the label's resolution, `reseg_tf.inference.Predictor`)
is compared with the labels; the wrong pixels are split into those inside the band and the rest.
Also prints the mean IoU and global accuracy with the band counted as background (the reported
figures) and, for reference only, with the band left out.

    python benchmarks/boundary_band_errors.py [--model oxford_flowers17] [--data-dir ../shared/datasets/oxford_flowers17]
        [--split val]
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import pipelines  # noqa: E402
from reseg_tf.inference import Predictor, read_image_file  # noqa: E402
from reseg_tf.metrics import confusion_scores  # noqa: E402
from reseg_tf.model_io import load_reseg_model  # noqa: E402
from reseg_tf.pretrained import model_file  # noqa: E402

BAND_INDEX = 0  # the trimaps' palette index of the boundary band


def confusion(labels, predicted, keep, num_classes=2):
    return np.bincount(labels[keep] * num_classes + predicted[keep], minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="oxford_flowers17", help="a .keras file or a pretrained model's name")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "oxford_flowers17"),
                        help="Oxford Flowers 17 root")
    parser.add_argument("--split", default="val", help="split; default: val")
    args = parser.parse_args()
    predictor = Predictor(load_reseg_model(model_file(args.model)[0]))
    source = pipelines.get_source("oxford_flowers17", data_dir=args.data_dir)
    totals = {"errors": 0, "errors_in_band": 0, "band_pixels": 0, "pixels": 0}
    with_band, without_band = np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64)
    for image_path, mask_path in source.pairs(args.split):
        raw = np.asarray(Image.open(mask_path))
        labels = np.asarray(source.read_raw_mask(mask_path), np.int64).reshape(raw.shape)
        predicted = np.asarray(predictor.classes(read_image_file(image_path)[None])[0], np.int64)
        if predicted.shape != raw.shape:
            raise ValueError(f"{mask_path}: labels {raw.shape} differ from the image's size {predicted.shape}")
        band, wrong = raw == BAND_INDEX, predicted != labels
        totals["errors"] += int(wrong.sum())
        totals["errors_in_band"] += int((wrong & band).sum())
        totals["band_pixels"] += int(band.sum())
        totals["pixels"] += raw.size
        with_band += confusion(labels, predicted, np.ones_like(band))
        without_band += confusion(labels, predicted, ~band)
    result = {"benchmark": "boundary_band_errors", "model": args.model, "split": args.split, **totals,
              "share_of_errors_in_band": round(totals["errors_in_band"] / max(totals["errors"], 1), 4),
              "share_of_pixels_in_band": round(totals["band_pixels"] / max(totals["pixels"], 1), 4)}
    for label, matrix in (("band_as_background", with_band), ("band_left_out", without_band)):
        global_acc, _, class_iou = confusion_scores(matrix)
        result[label] = {"mean_iou": round(float(class_iou.mean()), 4), "global_acc": round(global_acc, 4)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
