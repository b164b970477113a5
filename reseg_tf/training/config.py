"""`TrainConfig`, the settings of a training run.

The names each setting accepts are defined once in `reseg_tf.options` (plain data, which the
`reseg train` flags read without importing TensorFlow); they are imported here again.
"""
import dataclasses
import math
import os

from reseg_tf.hub import is_hub_name
from reseg_tf.losses import parse_loss_spec
from reseg_tf.models import get_preset, get_recipe
from reseg_tf.options import AUGMENT_MODES, LR_SCHEDULES, MIXED_PRECISION_MODES, OPTIMIZERS, STRATEGIES
from reseg_tf.sharing import is_model_folder

PAPER_WEIGHT_DECAY = 1e-3
MONITOR = "val_mean_iou"
DEFAULT_EPOCHS = 200
FLIP_ONLY = dict(hflip=True, scale_range=None, max_shift=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
MIXED_PRECISION = (False, True, *MIXED_PRECISION_MODES)
DEFAULT_EMA_MOMENTUM = 0.99
# The settings a preset's recipe (`reseg_tf.models.get_recipe`) may give, and what a setting
# that neither the caller nor the recipe gives defaults to (the paper's recipe).
RECIPE_DEFAULTS = dict(
    epochs=DEFAULT_EPOCHS, batch_size=5, image_size=None, crop_size=None, optimizer="adadelta",
    learning_rate=None, weight_decay=PAPER_WEIGHT_DECAY, class_balance=False, class_balance_power=1.0,
    augment=True, augment_mode="standard", lr_schedule="constant", patience=20, ema=False,
    ema_momentum=DEFAULT_EMA_MOMENTUM, loss="cross_entropy", loss_weights=None,
)
# Settings that may change when an unfinished run is resumed; any other difference is refused.
RESUMABLE_CHANGES = ("epochs", "patience", "verbose", "overwrite", "num_examples", "time_budget", "tpu_address",
                     "command")


@dataclasses.dataclass
class TrainConfig:
    """Settings of `reseg_tf.train`; every field mirrors a `reseg train` flag.

    The training settings (`RECIPE_DEFAULTS`' keys) left at None come from the preset's recipe
    (`reseg_tf.models.get_recipe(preset)`, shown by `reseg presets`), then from
    `RECIPE_DEFAULTS`; the defaults below are those of a preset without a recipe. A recipe's
    `learning_rate` applies only with the recipe's optimizer. `crop_size=False` asks for no
    crops where the recipe has some.

    Args:
        preset: model preset (`reseg_tf.list_presets()`).
        dataset: data source name (`camvid`, `weizmann_horse`, `oxford_flowers17`, `folder`).
        data_dir: dataset root; None = the embedded CamVid sample (camvid only).
        dataset_options: extra `pipelines.get_source` options (e.g. `num_classes` for `folder`).
        output: output directory; default `runs/<preset>`.
        epochs: maximum epochs; default 200 (early stopping may end sooner).
        batch_size: images per step (the paper: 5).
        image_size: `(height, width)` to train at; default the preset's size.
        crop_size: `(height, width)` of random crops taken from each training image (after the
            resize to `image_size`), or None. The step costs what a crop-sized image costs,
            while validation, the saved model and evaluation use the whole `image_size`:
            more resolution for the same step time, and a translation augmentation. The
            ReNet layers see whole images at inference (their sweeps are longer than in
            training).
        optimizer: `adadelta` (the paper's settings), `adam`, `sgd` (momentum 0.9) or `rmsprop`.
        learning_rate: default per optimizer: 1.0, 1e-3, 1e-2, 1e-3.
        weight_decay: L2 coefficient on trainable kernels (paper: 1e-3).
        class_balance: median-frequency class balancing as per-pixel sample weights.
        class_balance_power: the weights are raised to this power: 1 = median-frequency
            balancing, 0.5 = its square root (softer: rare classes are boosted less, which
            over-predicts them less and usually gives a better mean IoU), 0 = no weighting.
        augment: random augmentation of the training split (see `augment_mode`).
        augment_mode: `"standard"` (`pipelines.AugmentConfig()` defaults: flips, zoom, shifts,
            colour jitter) or `"flip"` (left-right flips only).
        lr_schedule: `"constant"`, or `"cosine"`: the learning rate follows a half cosine from
            `learning_rate` down to 0 over `epochs` (set per epoch; resumed runs stay on it).
        steps_per_epoch: batches per epoch (the training set repeats); default one pass.
        patience: epochs without val mean IoU improvement before stopping.
        seed: seed of weights, shuffling and augmentation.
        mixed_precision: False (float32), `"float16"` / `"bfloat16"` (the `mixed_float16` /
            `mixed_bfloat16` policy), or True / `"auto"`: float16 when a GPU is visible, bfloat16
            on a CPU with AVX512_BF16/AMX (faster bf16 convolutions and ReNet matmuls), float32
            on other CPUs (they emulate bf16, several times slower; float16 is slow on CPUs).
        front_end_weights: where the front end's weights come from. `"imagenet"` (the default of
            the presets whose front end starts from ImageNet weights: the paper's `camvid`,
            `horse`, `flowers`, ... (VGG16), `camvid_mobilenet`, `camvid_resnet50`; Keras
            downloads them once; offline, training stops before the first epoch with
            `reseg_tf.models.FrontEndWeightsError`), the path of a local copy of the front end's
            Keras weights file (for VGG16 `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`,
            or a `.weights.h5` saved from `keras.applications.VGG16(include_top=False)`), or
            `"none"`: random initialisation, and then the front end trains with the rest (a
            random front end kept fixed needs `freeze_front_end=True` as well). None: the
            preset's default (no weights for the from-scratch and no-front-end presets).
        vgg_weights: the same as `front_end_weights` (its former name; give one of the two).
        overwrite: replace a finished run (or foreign files of ours) in `output`.
        num_examples: validation images drawn into `predictions/`.
        verbose: Keras verbosity; None = progress bar on a terminal, one line per epoch otherwise.
        strategy: `default`, `mirrored`, `multiworker` (reads `TF_CONFIG`) or `tpu`
            (`reseg_tf.distribute.make_strategy`). `batch_size` is per replica: the global
            batch is `batch_size * num_replicas_in_sync`. Only the chief writes artifacts.
        tpu_address: with `strategy="tpu"`: the TPU's name or grpc address; None lets
            `TPUClusterResolver` find the TPU of the VM (Colab, Cloud TPU VMs).
        time_budget: stop after the epoch that would otherwise end past this many minutes of
            training in this process (None: no limit); the best model so far is kept.
        cache_features: run the frozen front end (e.g. ImageNet VGG16, or the preprocessing
            of a preset without front end) once over train and val, keep its float16 features in
            `OUTPUT/feature_cache/`, and train the rest of the model on them
            (`reseg_tf.training.feature_cache`). Gradients equal full-model training without
            augmentation; with `augment`, only left-right flips are applied, in feature space.
        init_from: a trained ReSeg `.keras` file, model folder or `hf://owner/name[@revision]`
            (recorded as given, with the Hub commit as `init_from_revision`) to start from
            (fine-tuning): every layer of the new model whose name and weight shapes match one
            of its layers starts with its weights; the rest (e.g. the classifier when the class
            count differs) start fresh (`reseg_tf.training.init_from`). None: `front_end_weights` or random initialisation.
        freeze_front_end: keep the front end (the VGG-shaped stem and its batch norm) fixed:
            the one loaded by `init_from`, or, with `front_end_weights="none"`, a random one (refused
            otherwise, a random fixed front end being rarely what is meant).
        ema: keep an exponential moving average of the trainable weights (Keras' optimizer
            `use_ema=True`): validation, the best-model checkpoint (so `model.keras`) and the
            final evaluation use the averaged weights, while training steps update the raw ones;
            a resumed run continues the average from its backup. Averaging in weight space is
            sub-model averaging at no inference cost.
        ema_momentum: the average's decay per training step: `average = m * average + (1 - m) *
            weights`, i.e. it spans about `1 / (1 - m)` steps (0.99: about 100).
        loss: `cross_entropy` (void-aware, class-balanced with `class_balance`), `focal`,
            `lovasz` (Lovász-softmax, a surrogate of per-class IoU), `dice`, or a sum of them
            such as `"cross_entropy+lovasz"` (`reseg_tf.losses.LOSSES`). Class balancing weighs
            the per-pixel terms (cross-entropy, focal) only.
        loss_weights: one weight per term of `loss` (default 1 each).
        command: the command line that started the run, kept in `run.json` (`reseg train` fills
            it in) beside, for a fine-tune, the command of the run `init_from` came from.
    """

    preset: str = "demo"
    dataset: str = "camvid"
    data_dir: str = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    output: str = None
    epochs: int = None
    batch_size: int = None
    image_size: tuple = None
    crop_size: tuple = None
    optimizer: str = None
    learning_rate: float = None
    weight_decay: float = None
    class_balance: bool = None
    class_balance_power: float = None
    augment: bool = None
    augment_mode: str = None
    lr_schedule: str = None
    steps_per_epoch: int = None
    patience: int = None
    seed: int = 0
    mixed_precision: bool | str = False
    front_end_weights: str = None
    vgg_weights: str = None
    overwrite: bool = False
    num_examples: int = 4
    verbose: int = None
    strategy: str = "default"
    tpu_address: str = None
    time_budget: float = None
    cache_features: bool = False
    init_from: str = None
    freeze_front_end: bool = False
    ema: bool = None
    ema_momentum: float = None
    loss: str = None
    loss_weights: tuple = None
    command: str = None

    def __post_init__(self):
        get_preset(self.preset)  # raises for an unknown name
        if self.output is None:
            self.output = os.path.join("runs", self.preset)
        momentum_asked = self.ema_momentum is not None
        self._apply_recipe()
        for field in ("epochs", "batch_size", "patience", "num_examples"):
            value = getattr(self, field)
            minimum = 0 if field in ("patience", "num_examples") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"`{field}` must be an int >= {minimum}, got {value!r}.")
        if self.steps_per_epoch is not None and (not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise ValueError(f"`steps_per_epoch` must be a positive int or None, got {self.steps_per_epoch!r}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        if self.cache_features and self.strategy != "default":
            raise ValueError("`cache_features` works with the default strategy only.")
        if self.time_budget is not None and not (self.time_budget > 0 and math.isfinite(self.time_budget)):
            raise ValueError(f"`time_budget` must be a positive number of minutes, got {self.time_budget!r}.")
        if not (0 <= self.class_balance_power <= 4):
            raise ValueError(f"`class_balance_power` must be in [0, 4], got {self.class_balance_power!r}.")
        if self.augment_mode not in AUGMENT_MODES:
            raise ValueError(f"unknown augment_mode {self.augment_mode!r}; choose one of {', '.join(AUGMENT_MODES)}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}.")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"`mixed_precision` must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if self.learning_rate is not None and not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"`learning_rate` must be a positive number, got {self.learning_rate!r}.")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay!r}.")
        for field in ("image_size", "crop_size"):
            value = getattr(self, field)
            if value is not None:
                size = tuple(value)
                if len(size) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in size):
                    raise ValueError(f"`{field}` must be (height, width) positive ints, got {value!r}.")
                setattr(self, field, size)
        if self.crop_size is not None and self.cache_features:
            raise ValueError("`crop_size` cannot be combined with `cache_features` (features are "
                             "cached for whole images).")
        if self.data_dir is not None:
            self.data_dir = os.path.abspath(os.fspath(self.data_dir))
        if self.init_from is not None:
            self.init_from = os.fspath(self.init_from)
            if not (is_hub_name(self.init_from) or os.path.isfile(self.init_from) or is_model_folder(self.init_from)):
                raise FileNotFoundError(f"--init-from {self.init_from}: no such model file; give a trained "
                                        "ReSeg .keras file (e.g. saved_models/camvid/model.keras), a model "
                                        "folder or hf://owner/name.")
        if self.vgg_weights is not None:
            if self.front_end_weights is not None and self.front_end_weights != self.vgg_weights:
                raise ValueError("`vgg_weights` is another name of `front_end_weights`: give one.")
            self.front_end_weights, self.vgg_weights = self.vgg_weights, None
        if self.init_from is not None and self.front_end_weights is not None:
            raise ValueError("--init-from and --front-end-weights both set the starting weights; give one.")
        self._resolve_front_end_weights()
        if isinstance(self.ema_momentum, bool) or not isinstance(self.ema_momentum, (int, float)) \
                or not 0 < self.ema_momentum < 1:
            raise ValueError(f"`ema_momentum` must be in (0, 1), got {self.ema_momentum!r}.")
        self.ema_momentum = float(self.ema_momentum)
        if self.loss_weights is not None:
            self.loss_weights = tuple(float(w) if isinstance(w, int) and not isinstance(w, bool) else w
                                      for w in self.loss_weights)
        parse_loss_spec(self.loss, self.loss_weights)  # raises for unknown terms or a count mismatch
        if momentum_asked and not self.ema:
            raise ValueError("--ema-momentum sets the weight average's decay: it needs --ema.")
        weights = self.front_end_weights
        if self.freeze_front_end and self.init_from is None and weights != "none":
            raise ValueError("--freeze-front-end keeps the front end fixed: it needs --init-from (a "
                             "loaded front end) or --front-end-weights none (a random one, fixed as asked).")
        if self.cache_features and weights == "none" and not self.freeze_front_end:
            raise ValueError("--cache-features needs a fixed front end, and with --front-end-weights none "
                             "the front end trains; add --freeze-front-end to cache the features of a "
                             "random front end, or start from ImageNet weights (--front-end-weights imagenet).")

    def _resolve_front_end_weights(self):
        """None becomes the preset's front end's default ("imagenet" for those that start from
        ImageNet weights); weights it cannot take are refused now, before anything is built."""
        if self.front_end_weights is not None:
            self.front_end_weights = os.fspath(self.front_end_weights)
            if self.front_end_weights.lower() == "none":
                self.front_end_weights = "none"
        if self.init_from is not None:
            return
        front_end = get_preset(self.preset)[0].front_end_spec
        weights, flag = self.front_end_weights, front_end.weights_flag
        if weights is None:
            self.front_end_weights = front_end.default_weights
        elif weights == "none":
            return
        elif weights not in ("imagenet",) and "file" in front_end.weight_sources and not os.path.isfile(weights):
            raise FileNotFoundError(f"{flag} {weights}: no such file; give a local copy of the {front_end.name} "
                                    "front end's Keras weights file, 'imagenet' or 'none'.")
        elif (weights == "imagenet" and "imagenet" not in front_end.weight_sources) or (
                weights != "imagenet" and "file" not in front_end.weight_sources):
            raise ValueError(f"{flag} {weights}: preset {self.preset!r}'s front end ({front_end.name}) takes no "
                             "pretrained weights (it trains from scratch); leave the flag out.")

    def _apply_recipe(self):
        recipe = get_recipe(self.preset)
        unknown = sorted(set(recipe) - set(RECIPE_DEFAULTS))
        if unknown:
            raise ValueError(f"preset {self.preset!r}'s recipe sets {unknown}, which are not training "
                             f"settings a recipe may give ({', '.join(RECIPE_DEFAULTS)}).")
        if self.optimizer is not None and recipe.get("optimizer", self.optimizer) != self.optimizer:
            recipe.pop("learning_rate", None)  # tuned for the recipe's optimizer, not this one
        self.from_recipe = []
        for name, default in RECIPE_DEFAULTS.items():
            if getattr(self, name) is None:
                if name in recipe:
                    self.from_recipe.append(name)
                setattr(self, name, recipe.get(name, default))
        if self.crop_size is False:
            self.crop_size = None

    def identity(self):
        """The settings that define the run (compared when an unfinished run is resumed)."""
        settings = dataclasses.asdict(self)
        for name in RESUMABLE_CHANGES + ("output", "vgg_weights"):
            settings.pop(name)
        return settings


def cpu_has_native_bfloat16(cpuinfo_path="/proc/cpuinfo"):
    """Whether the CPU computes bfloat16 natively (AVX512_BF16 or AMX). Without it, bfloat16
    matmuls are emulated (`benchmarks/precision_bench.py` on an AVX2-only AMD EPYC: a
    camvid_scratch step takes 6.0x as long under mixed_bfloat16 as in float32)."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            flags = {flag for line in handle if line.startswith("flags") for flag in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def mixed_precision_policy(setting):
    """The Keras dtype policy name for a `TrainConfig.mixed_precision` setting (None: float32).

    `True` / `"auto"`: float16 on a GPU, bfloat16 on a CPU that computes it natively, float32
    (None) on any other CPU.
    """
    if setting is False or setting is None:
        return None
    if setting in (True, "auto"):
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            setting = "float16"
        elif cpu_has_native_bfloat16():
            setting = "bfloat16"
        else:
            return None
    return f"mixed_{setting}"


def cosine_learning_rate(base, epoch, epochs):
    """Learning rate of 0-based `epoch` on a half cosine from `base` (epoch 0) towards 0."""
    return base * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))
