"""Is model B better than model A on a split, beyond what the split's size can tell apart?

Both models are evaluated on the same images (`reseg_tf.evaluate`, labels' full resolution,
one confusion matrix per image), then the mean IoU difference B - A is bootstrapped over the
images, the same draw for both (`reseg_tf.metrics.paired_bootstrap_mean_iou`; `--block-size N`
draws runs of N consecutive images, for video frames). B counts as better only when the
interval's lower end is above 0. A model whose epoch was selected on this
split carries a selection bias on top; the interval does not include it.

    python benchmarks/compare_models.py --a shipped=saved_models/camvid/model.keras \\
        --b finetuned=saved_models/camvid/finetuned/model.keras --data-dir ../shared/datasets/camvid

The last stdout line is the result as one JSON object (also written to `--json FILE`).
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _labelled(value, flag):
    label, separator, path = value.partition("=")
    if not separator or not label or not path:
        raise SystemExit(f"{flag} {value!r}: expected LABEL=PATH (a .keras file or a pretrained model's name)")
    return label, path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, metavar="LABEL=PATH", help="the reference model")
    parser.add_argument("--b", required=True, metavar="LABEL=PATH", help="the model compared with it")
    parser.add_argument("--dataset", default="camvid", help="data source; default: camvid")
    parser.add_argument("--data-dir", default=None, help="dataset root; default: the embedded CamVid sample")
    parser.add_argument("--split", default="val", help="split; default: val")
    parser.add_argument("--tta", default="none", choices=("none", "flip"), help="averaging of both models; default: none")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws; default: 2000")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws; default: 0")
    parser.add_argument("--block-size", type=int, default=1,
                        help="draw runs of this many consecutive images of the split instead of single "
                        "images (video frames: neighbours nearly repeat each other); default: 1")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the result there")
    args = parser.parse_args(argv)
    (label_a, path_a), (label_b, path_b) = _labelled(args.a, "--a"), _labelled(args.b, "--b")
    if label_a == label_b:
        parser.error(f"--a and --b need different labels (both are {label_a!r})")

    import reseg_tf
    from reseg_tf.metrics import paired_bootstrap_mean_iou
    from reseg_tf.model_io import load_reseg_model
    from reseg_tf.run_files import atomic_write_json

    evaluated = {}
    for label, path in ((label_a, path_a), (label_b, path_b)):
        print(f"evaluating {label} ({path}) on {args.dataset} {args.split} ...", flush=True)
        evaluated[label] = reseg_tf.evaluate(load_reseg_model(path), dataset=args.dataset, data_dir=args.data_dir,
                                             split=args.split, tta=args.tta, per_image=True, verbose=0)
    comparison = paired_bootstrap_mean_iou(evaluated[label_a]["image_confusion_matrices"],
                                           evaluated[label_b]["image_confusion_matrices"],
                                           num_resamples=args.resamples, seed=args.seed, block_size=args.block_size)
    result = {"benchmark": "compare_models", "dataset": args.dataset, "split": args.split, "tta": args.tta,
              "a": {"label": label_a, "model": path_a, "mean_iou": evaluated[label_a]["mean_iou"]},
              "b": {"label": label_b, "model": path_b, "mean_iou": evaluated[label_b]["mean_iou"]},
              **comparison, "b_better": comparison["low"] > 0}
    print(f"{label_a}: mean IoU {result['a']['mean_iou']:.4f}   {label_b}: {result['b']['mean_iou']:.4f}")
    drawn = "images" if args.block_size == 1 else f"images in runs of {args.block_size}"
    print(f"{label_b} - {label_a}: {comparison['difference']:+.4f}, 95% paired bootstrap interval over "
          f"{comparison['num_images']} {drawn} [{comparison['low']:+.4f}, {comparison['high']:+.4f}]; "
          f"{label_b} {'is' if result['b_better'] else 'is not'} better beyond the split's noise")
    if args.json:
        atomic_write_json(args.json, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
