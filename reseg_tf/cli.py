"""The `reseg` command. Parses flags and calls library functions; no logic of its own.

Each subcommand is registered by an `_add_<name>(subparsers)` function listed in `COMMANDS`,
which sets `handler` to a function taking the parsed arguments and returning an exit code.

The flags' choices come from plain-data modules that import no TensorFlow; every module that
does is imported inside the handler that needs it. That laziness is the point: `reseg --help`,
`reseg COMMAND --help`, `reseg models` and `reseg presets` answer at once. Before any other
handler runs, `main` imports TensorFlow without its start-up log lines.
"""
import argparse
import shlex
import sys
from pathlib import Path

from pipelines.options import (MASK_FORMATS, OXFORD_FLOWERS17_VARIANTS, SOURCE_NAMES, UNKNOWN_COLOR_MODES,
                               WEIZMANN_HORSE_IMAGE_FOLDERS)
from reseg_tf import __version__
from reseg_tf.export.signatures import DEFAULT_MAX_BATCH, DEFAULT_MAX_IMAGE_PIXELS, SIGNATURES
from reseg_tf.options import (AUGMENT_MODES, LOSS_NAMES, LR_SCHEDULES, MIXED_PRECISION_MODES, OPTIMIZERS,
                              STRATEGIES, TFLITE_VARIANTS, TTA_MODES)
from reseg_tf.quiet_tensorflow import import_tensorflow_quietly



class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _add_summary(subparsers):
    parser = subparsers.add_parser(
        "summary", help="Build a preset and print its Keras summary and parameter counts.",
        description="Build a ReSeg preset (random weights unless --front-end-weights) and print model.summary().",
    )
    parser.add_argument("--preset", default="camvid", help="preset name (see `reseg presets`); default: camvid")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="input height and width; default: the preset's training size")
    parser.add_argument("--front-end-weights", "--vgg-weights", dest="front_end_weights", default=None,
                        metavar="imagenet|FILE",
                        help="front-end weights to load: 'imagenet' (downloaded by Keras) or a local copy "
                        "of the front end's Keras weights file; default: random init (`reseg train` "
                        "starts the ImageNet presets from imagenet). --vgg-weights is another name")

    def handler(args):
        from reseg_tf.models import build_model, get_preset

        _, image_size, description = get_preset(args.preset)
        height, width = args.image_size or image_size
        model = build_model(args.preset, input_shape=(height, width, 3), weights=args.front_end_weights)
        print(f"{args.preset}: {description}")
        model.summary()
        print(f"output shape: {model.output_shape}")
        return 0

    parser.set_defaults(handler=handler)


def _add_presets(subparsers):
    parser = subparsers.add_parser(
        "presets", help="List the built-in model presets, the front end and training recipe of each.",
        description="List the built-in presets: model size, description, front end (`reseg_tf."
        "list_front_ends()`: stride, channels, weights, frozen or trained), and the training recipe "
        "`reseg train --preset P` uses unless a flag overrides a setting.")

    def handler(args):
        from reseg_tf.front_ends import describe_front_end
        from reseg_tf.models import PRESETS, describe_recipe, get_recipe

        for name in sorted(PRESETS):
            preset = PRESETS[name]
            height, width = preset["image_size"]
            config = preset["config"]  # plain data: a ReSegConfig would import Keras
            front_end = describe_front_end(config["front_end"], config.get("front_end_options"),
                                           config.get("freeze_front_end"))
            print(f"{name}  (model size {height}x{width})  {preset['description']}")
            print(f"    front end: {front_end}")
            print(f"    recipe: {describe_recipe(get_recipe(name))}")
        return 0

    parser.set_defaults(handler=handler, needs_tensorflow=False)


def _add_export(subparsers):
    parser = subparsers.add_parser(
        "export", help="Export a trained model for TF Serving (SavedModel) and TFLite, verified.",
        description="Write DIR/saved_model/<version>/ (TF Serving layout, signatures "
        f"{', '.join(SIGNATURES)}), DIR/tflite/<version>/*.tflite, DIR/serving.md and "
        "DIR/export_report.json; then reload every artifact and check that it answers like "
        "`reseg predict` (the SavedModel takes images of any size and answers at their size).",
    )
    parser.add_argument("--model", required=True,
                        help="the trained model's .keras file or model folder, hf://owner/name[@revision], or a "
                        "pretrained model's name (see `reseg models`)")
    parser.add_argument("--output", default=None,
                        help="export folder; default: saved_models/<model name>/. An existing "
                        "SavedModel version is never overwritten: the next version number is used")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="height and width of the static TFLite models; default: the model's "
                        "fixed size, or its preset's training size")
    parser.add_argument("--tflite", default=",".join(TFLITE_VARIANTS),
                        help=f"comma-separated TFLite variants from {', '.join(TFLITE_VARIANTS)}, or "
                        "'none'; default: all of them")
    parser.add_argument("--tflite-input-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="height and width of the images the TFLite models take (an app's camera "
                        "frames); the resize to the model's size as training does and the resize back "
                        "are then inside the models, so MediaPipe's ImageSegmenter resizes nothing for "
                        "frames of that size; default: the model's size (--image-size)")
    parser.add_argument("--representative-data", default=None, metavar="DIR",
                        help="folder of real images (or a CamVid-layout folder) to calibrate int8 "
                        "and verify on; default: the embedded CamVid sample, with a warning")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip reloading the artifacts and comparing them with reseg predict")
    parser.add_argument("--onnx", action="store_true",
                        help="also write DIR/onnx/<version>/<name>.onnx (images of any size in, probabilities "
                        "at their size out, as the SavedModel) and verify it in onnxruntime; needs "
                        "pip install -e \".[onnx]\"")
    parser.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS, metavar="N",
                        help="most pixels (height x width) of one image the SavedModel's signatures take; "
                        "larger ones are refused from their file header before decoding; default: "
                        f"{DEFAULT_MAX_IMAGE_PIXELS}")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="B",
                        help=f"most images in one request to the SavedModel; default: {DEFAULT_MAX_BATCH}")
    _add_averaging_flags(parser, mc=False)
    parser.add_argument("--mc-samples", type=int, default=0, metavar="N",
                        help="not exported (the artifacts answer deterministically): an error if > 0; "
                        "use `reseg predict --mc-samples N`")

    def handler(args):
        from reseg_tf.export import TFLiteConversionError, export_model

        try:
            export_model(
                _file_or_pretrained(args.model), args.output, image_size=args.image_size,
                tflite=() if args.tflite.strip().lower() == "none" else args.tflite,
                representative_data=args.representative_data, verify=not args.no_verify,
                tta=args.tta, mc_samples=args.mc_samples, onnx=args.onnx,
                tflite_input_size=args.tflite_input_size, max_image_pixels=args.max_image_pixels,
                max_batch=args.max_batch,
            )
        except TFLiteConversionError as error:
            raise CliError(str(error)) from error
        return 0

    parser.set_defaults(handler=handler)


COMMANDS = [_add_summary, _add_presets]
COMMANDS.append(_add_export)


def _add_train(subparsers):
    # Flags left out stay None and `TrainConfig` supplies the default (one source of truth).
    parser = subparsers.add_parser(
        "train", help="Train ReSeg with model.fit; with no flags, the demo preset on the embedded CamVid sample.",
        description="Train a ReSeg preset on a dataset, keep the best model on validation mean IoU and "
        "write OUTPUT/{model.keras, metrics.json, history.csv, tensorboard/, predictions/}. An "
        "interrupted run resumes from OUTPUT/backup/ when the same command is run again.",
    )
    parser.add_argument("--preset", default=None, help="model preset (see `reseg presets`); default: demo")
    _add_data_source_flags(parser)
    parser.add_argument("--output", default=None, help="output directory; default: runs/<preset>")
    parser.add_argument("--epochs", type=int, default=None,
                        help="maximum epochs (early stopping may end sooner); default: the preset's "
                        "recipe, else 200")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per step; default: the preset's recipe, else 5")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="train at this height and width; default: the preset's recipe, else the "
                        "preset's size")
    parser.add_argument("--crop-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="train on random HxW crops of the images resized to --image-size (a step "
                        "costs what a crop does); validation, the saved model and evaluation use the "
                        "whole --image-size. Default: the preset's recipe, else no crops")
    parser.add_argument("--no-crop", dest="crop_size", action="store_const", const=False,
                        help="train on whole images even where the preset's recipe crops")
    parser.add_argument("--optimizer", default=None, choices=tuple(OPTIMIZERS),
                        help="default: the preset's recipe, else adadelta with the paper's settings "
                        "(lr 1.0, rho 0.95, eps 1e-6)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: the preset's recipe (with its optimizer), else per optimizer: "
                        "adadelta 1.0, adam 1e-3, sgd 1e-2 (momentum 0.9), rmsprop 1e-3")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="L2 coefficient on trainable kernels, added to the per-pixel mean loss; "
                        "default: the preset's recipe, else 1e-3 (the paper); 0 disables it")
    parser.add_argument("--class-balance", action=argparse.BooleanOptionalAction, default=None,
                        help="weight pixels by median-frequency class balancing (computed on the train "
                        "split); default: the preset's recipe, else off")
    parser.add_argument("--class-balance-power", type=float, default=None, metavar="P",
                        help="with --class-balance: raise the median-frequency weights to this power "
                        "(0.5 = square root, softer balancing); default: the preset's recipe, else 1")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                        help="random augmentation of the training images; default: the preset's recipe, else on")
    parser.add_argument("--augment-mode", default=None, choices=AUGMENT_MODES,
                        help="standard: flips, zoom 0.8-1.2, shifts, colour jitter; flip: left-right "
                        "flips only; default: the preset's recipe, else standard")
    parser.add_argument("--lr-schedule", default=None, choices=LR_SCHEDULES,
                        help="cosine: the learning rate decays on a half cosine to 0 over --epochs; "
                        "default: the preset's recipe, else constant")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="batches per epoch (the training set repeats); default: one pass over it")
    parser.add_argument("--patience", type=int, default=None,
                        help="stop after this many epochs without a better val mean IoU; default: the "
                        "preset's recipe, else 20")
    parser.add_argument("--seed", type=int, default=None, help="random seed; default: 0")
    parser.add_argument("--mixed-precision", nargs="?", const="auto", default=None,
                        choices=MIXED_PRECISION_MODES,
                        help="train with a mixed-precision policy: float16 (Keras' mixed_float16), bfloat16 "
                        "(mixed_bfloat16), or auto (the flag alone): float16 on a GPU, bfloat16 on a CPU with AVX512_BF16/AMX, float32 on "
                        "other CPUs (they emulate bf16, several times slower); default: float32")
    parser.add_argument("--front-end-weights", "--vgg-weights", dest="front_end_weights", default=None,
                        metavar="imagenet|FILE|none",
                        help="where the front end starts from: 'imagenet' (downloaded by Keras; offline, "
                        "training stops before it starts), FILE (a local copy of the front end's Keras "
                        "weights, e.g. vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5), or 'none' "
                        "(random weights; the front end then trains). Default: imagenet for the presets "
                        "whose front end starts from ImageNet (camvid, horse, flowers, camvid_mobilenet, "
                        "...; see `reseg presets`), none for the others. --vgg-weights is another name")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished run in --output instead of refusing")
    parser.add_argument("--strategy", default=None, choices=STRATEGIES,
                        help="tf.distribute strategy: default (one device), mirrored (all local GPUs), "
                        "multiworker (machines in TF_CONFIG), tpu; --batch-size is per replica")
    parser.add_argument("--tpu-address", default=None, metavar="NAME_OR_GRPC",
                        help="with --strategy tpu: the TPU's name or grpc://host:port address; "
                        "default: the TPU of this VM (Colab, Cloud TPU VM)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="stop once another epoch would end past this many minutes; default: no limit")
    parser.add_argument("--cache-features", action="store_true",
                        help="run the frozen front end once, cache its features in OUTPUT/feature_cache/ "
                        "and train the rest on them (augmentation: feature-space flips only)")
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="fine-tune: start from this trained ReSeg model (a .keras file, a model "
                        "folder, hf://owner/name[@revision] or a pretrained model's name, see `reseg "
                        "models`); every layer whose name and "
                        "weight shapes match is loaded (the classifier starts fresh when the class count "
                        "differs); prints which layers were loaded and which are new")
    parser.add_argument("--freeze-front-end", action="store_true",
                        help="keep the front end (VGG-shaped stem) fixed: the one loaded by --init-from, or "
                        "with --front-end-weights none a random one (refused otherwise)")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                        help="keep an exponential moving average of the weights (Keras' optimizer "
                        "EMA): validation, model.keras and the final evaluation use the averaged "
                        "weights; default: the preset's recipe, else off")
    parser.add_argument("--ema-momentum", type=float, default=None, metavar="M",
                        help="with --ema: the average's decay per step (it spans about 1/(1-M) "
                        "steps); default: 0.99")
    parser.add_argument("--loss", default=None, metavar="NAME[+NAME...]",
                        help=f"training loss: {', '.join(LOSS_NAMES)} or a sum such as cross_entropy+lovasz "
                        "(lovasz: Lovász-softmax, a surrogate of per-class IoU, usually a short fine-tune "
                        "after cross-entropy; dice: soft Dice; focal: focal loss). --class-balance weighs "
                        "the per-pixel terms (cross_entropy, focal) only. Default: the preset's recipe, "
                        "else cross_entropy")
    parser.add_argument("--loss-weights", type=float, nargs="+", default=None, metavar="W",
                        help="one weight per term of --loss (e.g. --loss cross_entropy+lovasz "
                        "--loss-weights 1 0.5); default: 1 each")

    def handler(args):
        from reseg_tf.run_files import OutputLockedError
        from reseg_tf.training import TrainingDivergedError, train

        if args.tpu_address and args.strategy != "tpu":
            raise CliError(f"--tpu-address {args.tpu_address} needs --strategy tpu.")

        settings = dict(
            preset=args.preset, dataset=args.dataset, data_dir=args.data_dir,
            dataset_options=_data_source_options(args), output=args.output, epochs=args.epochs,
            batch_size=args.batch_size, image_size=args.image_size, crop_size=args.crop_size,
            optimizer=args.optimizer,
            learning_rate=args.learning_rate, weight_decay=args.weight_decay,
            class_balance=args.class_balance, augment=args.augment,
            augment_mode=args.augment_mode, lr_schedule=args.lr_schedule,
            class_balance_power=args.class_balance_power,
            steps_per_epoch=args.steps_per_epoch, patience=args.patience, seed=args.seed,
            mixed_precision=args.mixed_precision, front_end_weights=args.front_end_weights, overwrite=args.overwrite,
            strategy=args.strategy, tpu_address=args.tpu_address,
            time_budget=args.time_budget, cache_features=args.cache_features,
            init_from=_file_or_pretrained(args.init_from), freeze_front_end=args.freeze_front_end or None,
            ema=args.ema, ema_momentum=args.ema_momentum, loss=args.loss,
            loss_weights=tuple(args.loss_weights) if args.loss_weights else None,
            command=shlex.join(["reseg", *args.argv]),
        )
        try:
            train(**{name: value for name, value in settings.items() if value is not None})
        except OutputLockedError as error:
            raise CliError(str(error)) from error
        except TrainingDivergedError as error:
            print(f"reseg train: {error}", file=sys.stderr)
            return 1
        return 0

    parser.set_defaults(handler=handler)


DEFAULT_DATASET = "camvid"


def _add_model_flag(parser):
    parser.add_argument("--model", default=None,
                        help="a trained model's .keras file or model folder, hf://owner/name[@revision] "
                        "(Hugging Face Hub), or a pretrained model's name (camvid, weizmann_horse, "
                        "oxford_flowers17; see `reseg models`); default: the pretrained model of "
                        "--dataset (camvid's when no --dataset is given)")


def _file_or_pretrained(value):
    """`value` if it is a file, else the file of the pretrained model it names, else `value`
    (loading it then names the missing file)."""
    from reseg_tf import pretrained

    path, name = pretrained.model_file(value)
    if name is not None:
        print(f"using the pretrained model {name!r} ({path})")
    return path


def _model_path(args):
    """The .keras file to use: --model as a file or a pretrained name, else --dataset's model."""
    from reseg_tf import pretrained

    if args.model is not None:
        return _file_or_pretrained(args.model)
    dataset = getattr(args, "dataset", None) or DEFAULT_DATASET
    try:
        name = pretrained.resolve_name(dataset)
    except ValueError:
        raise CliError(f"no --model given and there is no pretrained model for dataset {dataset!r} "
                       f"(pretrained: {', '.join(sorted(pretrained.PRETRAINED))}); pass --model PATH.") from None
    try:
        path = pretrained.pretrained_path(name)
    except FileNotFoundError as error:
        raise CliError(f"no --model given and {error}") from None
    print(f"using the default model {path}")
    return str(path)


def _add_models(subparsers):
    parser = subparsers.add_parser(
        "models", help="List the pretrained models that come with the package and their val figures.",
        description="List the pretrained models (usable as `--model NAME` or by `--dataset`): what "
        "each was trained on, its preset, and its validation figures (selected on val).")
    parser.add_argument("--json", action="store_true", help="print the list as JSON instead of a table")

    def handler(args):
        import json

        from reseg_tf.pretrained import list_pretrained

        entries = list_pretrained()
        if args.json:
            print(json.dumps(entries, indent=2))
            return 0
        for entry in entries:
            val = entry["val"]
            figures = ", ".join(f"{key} {val[key]:.3f}" for key in
                                ("mean_iou", "global_acc", "foreground_iou") if key in val)
            where = entry["path"] or "not installed"
            print(f"{entry['name']}: {entry['description']}\n    preset {entry['preset']}, best epoch "
                  f"{entry['best_epoch']} of {entry['epochs_run']}; val (selected on val): {figures}")
            costs = entry["costs"]
            if costs:
                print(f"    {costs['params'] / 1e6:.2f}M parameters, .keras {costs['keras_mb']:.1f} MB; TFLite at "
                      f"{'x'.join(map(str, costs['image_size']))}: fp32 {costs['fp32_mb']:.1f} MB, "
                      f"{costs['fp32_ops']:,} operators, {costs['fp32_1t_ms']:.0f} ms (1 thread) / "
                      f"{costs['fp32_2t_ms']:.0f} ms (2); int8 {costs['int8_1t_ms']:.0f} / {costs['int8_2t_ms']:.0f} ms")
            print(f"    {where}")
        return 0

    parser.set_defaults(handler=handler, needs_tensorflow=False)


COMMANDS.append(_add_models)


def _add_averaging_flags(parser, mc=True):
    """--tta / --mc-samples / --mc-seed: averaged inference (`reseg_tf.averaging`)."""
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="test-time augmentation: 'flip' averages the class probabilities of each image "
                        "and of its horizontal mirror (2 passes); default: none")
    if not mc:
        return
    parser.add_argument("--mc-samples", type=int, default=0, metavar="N",
                        help="Monte Carlo dropout: average the probabilities of N dropout sub-networks "
                        "(batched; needs a model trained with dropout); default: 0 (off)")
    parser.add_argument("--mc-seed", type=int, default=0,
                        help="seed of the --mc-samples dropout masks (the same seed gives the same "
                        "sub-networks and results); default: 0")


def _add_tiling_flags(parser):
    parser.add_argument("--tile", action="store_true",
                        help="segment each image in overlapping windows of the model's input size at the "
                        "pixel scale it was trained at, blended at the seams, instead of resizing the whole "
                        "image to the input size (large images keep their detail)")
    parser.add_argument("--scale", type=float, default=None, metavar="S",
                        help="with --tile: resize images by S before cutting windows; default: the "
                        "model's training scale (training size over the dataset's image size, from the "
                        "run.json beside the model), else 1")


def _add_evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="Evaluate a trained model on a dataset split (the paper's Table 3 metrics).",
        description="Per-class accuracy and IoU, global accuracy, average class accuracy and mean IoU "
        "over all classes, at the labels' full resolution (void ignored).",
    )
    _add_model_flag(parser)
    _add_data_source_flags(parser)
    parser.add_argument("--split", default="val", help="split to evaluate (train, val, test, ...); default: val")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="run the model at this size (probabilities are resized back); "
                        "default: the model's input size")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the metrics to this JSON file")
    _add_averaging_flags(parser)
    _add_tiling_flags(parser)
    parser.add_argument("--uncertainty", action="store_true",
                        help="also report the mean IoU and global accuracy of the split's 90%% most "
                        "confident pixels (ECE is always reported)")

    def handler(args):
        from reseg_tf.evaluation import evaluate, format_table

        args.model = _model_path(args)
        summary = evaluate(args.model, dataset=args.dataset, data_dir=args.data_dir, split=args.split,
                           image_size=args.image_size, json_path=args.json, tta=args.tta,
                           mc_samples=args.mc_samples, seed=args.mc_seed, uncertainty=args.uncertainty,
                           tile=args.tile, scale=args.scale, **_data_source_options(args))
        averaging = [f"tta {args.tta}"] if args.tta != "none" else []
        averaging += [f"{args.mc_samples} MC samples"] if args.mc_samples else []
        averaging += [f"tiled at scale {summary['tile_scale']:.4g}"] if args.tile else []
        print(f"{summary['dataset']} {args.split} ({summary['num_images']} images), {args.model}"
              f"{' (' + ', '.join(averaging) + ')' if averaging else ''}; "
              f"{summary['ms_per_image']:.0f} ms per image:")
        print(format_table(summary))
        if args.json:
            print(f"wrote {args.json}")
        return 0

    parser.set_defaults(handler=handler)


def _add_predict(subparsers):
    parser = subparsers.add_parser(
        "predict", help="Segment images and videos: class-index PNGs, colour overlays, overlay videos.",
        description="Write OUTPUT/NAME.png (uint8 class indices at the image's size) for each image, "
        "and OUTPUT/NAME_overlay.png with --overlay; OUTPUT/NAME_overlay.mp4 for each video. Unreadable "
        "inputs are skipped with a message; the exit code is then 1.",
    )
    _add_model_flag(parser)
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, video files (.mp4, .avi, .mov, .mkv: NAME_overlay.mp4 is written "
                        "at the video's frame rate and size) or folders of them")
    parser.add_argument("--output", required=True, help="folder for the predicted PNGs")
    parser.add_argument("--overlay", action="store_true",
                        help="also write color overlays (CamVid palette for 11 classes, black/white for 2)")
    parser.add_argument("--legend", action="store_true",
                        help="draw a class legend (the model's class names and colours) in the bottom-left "
                        "corner of every overlay, images and videos")
    parser.add_argument("--every", type=int, default=1, metavar="N",
                        help="videos: segment one frame in N (the overlay video then runs at the source "
                        "frame rate / N); default: 1")
    parser.add_argument("--image-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="run the model at this size; default: the model's input size")
    parser.add_argument("--dataset", default=None,
                        help="without --model, use this dataset's pretrained model (see `reseg "
                        "models`); default: camvid")
    _add_averaging_flags(parser)
    _add_tiling_flags(parser)
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write NAME_confidence.png and NAME_entropy.png heat maps (and "
                        "NAME_mutual_information.png with --mc-samples); the colour scale goes to "
                        "OUTPUT/uncertainty_scale.png and .json")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write the class probabilities as NAME_probabilities.npz (compressed)")

    def handler(args):
        from reseg_tf.prediction import predict

        report = predict(_model_path(args), args.inputs, args.output, overlay=args.overlay, legend=args.legend,
                         image_size=args.image_size, tta=args.tta, mc_samples=args.mc_samples,
                         seed=args.mc_seed, uncertainty=args.uncertainty, probabilities=args.probabilities,
                         every=args.every, tile=args.tile, scale=args.scale)
        videos = f" and {len(report['videos'])} video(s)" if report["videos"] else ""
        print(f"segmented {report['segmented']} image(s){videos} into {args.output}; "
              f"skipped {len(report['skipped'])}")
        return 1 if report["skipped"] else 0

    parser.set_defaults(handler=handler)


COMMANDS.extend([_add_train, _add_evaluate, _add_predict])


def _add_data_source_flags(parser):
    """Flags naming a `pipelines` data source and its options (verify-dataset, show-dataset)."""
    # Not `choices`: get_source names the unknown dataset and lists the known ones.
    parser.add_argument("--dataset", default="camvid",
                        help=f"data source: {', '.join(SOURCE_NAMES)}; default: camvid")
    parser.add_argument("--data-dir", default=None,
                        help="dataset root folder; default (camvid only): the embedded CamVid sample")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="folder datasets: number of classes (mask values 0..N-1)")
    parser.add_argument("--ignore-value", default=None,
                        help="folder datasets: mask value meaning void, or 'none'; default: 255")
    parser.add_argument("--mask-format", choices=MASK_FORMATS, default=None,
                        help="folder datasets: index (single-channel class indices), palette (palette "
                        "PNGs read by index) or rgb (colour-coded masks, with --palette); default: index")
    parser.add_argument("--palette", default=None, metavar="FILE",
                        help="folder datasets with --mask-format rgb: CSV or JSON of `class_name, r, g, b` "
                        "rows in class order (a `void` row marks pixels to ignore)")
    parser.add_argument("--unknown-colors", choices=UNKNOWN_COLOR_MODES, default=None,
                        help="folder datasets with --mask-format rgb: colours not in --palette are an "
                        "error (listing them and a mask that has them) or void; default: error")
    parser.add_argument("--images", choices=WEIZMANN_HORSE_IMAGE_FOLDERS, default=None,
                        help="weizmann_horse: which image folder to read; default: rgb")
    parser.add_argument("--variant", choices=OXFORD_FLOWERS17_VARIANTS, default=None,
                        help="oxford_flowers17: jpg/+trimaps/ ('original') or images_256/+labels_256/ "
                             "('256'); default: auto")


def _data_source_options(args):
    """The source constructor options from the flags; refuses flags of another dataset."""
    flags = {"num_classes": ("folder", args.num_classes), "ignore_value": ("folder", args.ignore_value),
             "mask_format": ("folder", args.mask_format), "palette_file": ("folder", args.palette),
             "unknown_colors": ("folder", args.unknown_colors),
             "images": ("weizmann_horse", args.images), "variant": ("oxford_flowers17", args.variant)}
    options = {}
    for option, (dataset, value) in flags.items():
        if value is None:
            continue
        if dataset != args.dataset:
            flag = {"palette_file": "palette"}.get(option, option).replace("_", "-")
            raise CliError(f"--{flag} applies to --dataset {dataset} only")
        options[option] = value
    if "ignore_value" in options:
        text = options["ignore_value"]
        if text.lower() != "none" and not text.isdigit():
            raise CliError(f"--ignore-value must be an integer 0..255 or 'none', got {text!r}")
        options["ignore_value"] = None if text.lower() == "none" else int(text)
    return options


def _add_verify_dataset(subparsers):
    parser = subparsers.add_parser(
        "verify-dataset", help="Check every image/mask pair of a dataset and print its statistics.",
        description="Decodes every pair; prints counts per split, image sizes, class pixel shares and "
                    "median-frequency class weights. Exit code 1 (with a list of every bad file and "
                    "what is wrong) if any file is unusable.",
    )
    _add_data_source_flags(parser)
    parser.add_argument("--split", action="append", default=None,
                        help="split to check (repeatable); default: every split on disk")

    def handler(args):
        from pipelines import verify_dataset

        report = verify_dataset(args.dataset, args.data_dir, splits=args.split, **_data_source_options(args))
        print(report.format())
        return 0 if report.ok else 1

    parser.set_defaults(handler=handler)


def _add_show_dataset(subparsers):
    parser = subparsers.add_parser(
        "show-dataset", help="Write a PNG grid of dataset images with colored mask overlays.",
        description="Blends each mask's class colors over its image (void in the last legend color) "
                    "and writes a grid of the first --count examples of --split, with a legend.",
    )
    _add_data_source_flags(parser)
    parser.add_argument("--split", default="train", help="split to show; default: train")
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--count", type=int, default=8, help="number of examples; default: 8")
    parser.add_argument("--columns", type=int, default=4, help="tiles per row; default: 4")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--legend", action=argparse.BooleanOptionalAction, default=True,
                        help="a class colour legend below the grid; default: on")

    def handler(args):
        from pipelines import show_dataset

        try:
            path = show_dataset(args.dataset, args.split, args.output, data_dir=args.data_dir,
                                count=args.count, columns=args.columns, overwrite=args.overwrite,
                                legend=args.legend,
                                **_data_source_options(args))
        except FileExistsError as error:
            raise CliError(str(error)) from error
        print(f"wrote {path}")
        return 0

    parser.set_defaults(handler=handler)


COMMANDS.extend([_add_verify_dataset, _add_show_dataset])


def _add_report(subparsers):
    parser = subparsers.add_parser(
        "report", help="Write RUN_DIR/report/report.md with learning curves, confusion matrix, "
        "per-class IoU and prediction figures.",
        description="Summarize a finished `reseg train` run (history.csv, metrics.json, predictions/) "
        "as Markdown plus PNG figures; nothing is recomputed.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output directory of a finished `reseg train` run")
    parser.add_argument("--output", default=None, help="folder for report.md and the figures; default: RUN_DIR/report")
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=PATH",
                        help="another run (its directory or metrics.json) to show next to this one, "
                        "e.g. an equal-budget baseline; repeatable")

    def handler(args):
        from reseg_tf.report import write_report

        compare = {}
        for item in args.compare:
            label, separator, path = item.partition("=")
            if not separator or not label or not path:
                raise ValueError(f"--compare {item!r}: expected LABEL=PATH, e.g. conv_baseline=runs/conv.")
            compare[label] = path
        print(f"wrote {write_report(args.run_dir, args.output, compare=compare)}")
        return 0

    parser.set_defaults(handler=handler)


COMMANDS.append(_add_report)


def _add_push(subparsers):
    from reseg_tf.sharing import DEFAULT_LICENSE

    parser = subparsers.add_parser(
        "push", help="Share a trained run on the Hugging Face Hub as a model folder with a model card.",
        description="Assemble the model (config.json + model.weights.h5, the layout keras.saving.load_model "
        "reads), run.json, metrics.json, class names, the report's figures and a README.md model card, "
        "and upload them to hf://owner/name (needs pip install \"reseg_tf[hub]\" and a token: `hf auth "
        "login` or HF_TOKEN). The folder then loads anywhere a model is taken: --model hf://owner/name.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="output folder of a finished `reseg train` run")
    parser.add_argument("name", metavar="hf://OWNER/NAME", help="the Hub model to create or update")
    parser.add_argument("--revision", default=None, metavar="BRANCH",
                        help="push to this branch (created from main if missing); default: main")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--license", default=DEFAULT_LICENSE, metavar="ID",
                        help=f"the licence the card declares (a Hub licence id, e.g. apache-2.0); default: "
                        f"{DEFAULT_LICENSE}")
    parser.add_argument("--output", default=None, metavar="DIR",
                        help="also keep the assembled folder here (a new or empty folder); it loads by path "
                        "as --model DIR")
    parser.add_argument("--dry-run", action="store_true",
                        help="write the folder to --output and upload nothing")

    def handler(args):
        from reseg_tf.sharing import push

        name = args.name
        if args.revision:
            if "@" in name:
                raise CliError(f"{name} already names a revision; drop --revision {args.revision}.")
            name = f"{name}@{args.revision}"
        try:
            result = push(args.run_dir, name, private=args.private, output=args.output, dry_run=args.dry_run,
                          license_id=args.license)
        except FileExistsError as error:
            raise CliError(str(error)) from error
        if result["folder"]:
            print(f"wrote {result['folder']} (model card: {Path(result['folder']) / 'README.md'})")
        if result["url"]:
            print(f"pushed to {name}: {result['url']}")
        return 0

    parser.set_defaults(handler=handler)


COMMANDS.append(_add_push)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="reseg",
        description="ReSeg semantic segmentation: train, evaluate, predict, export, inspect data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version of reseg_tf and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded by commands that keep what made their output (run.json)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if getattr(args, "needs_tensorflow", True):
        import_tensorflow_quietly()
    try:
        return args.handler(args)
    except (CliError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError) as error:
        print(f"reseg {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reseg {args.command}: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
