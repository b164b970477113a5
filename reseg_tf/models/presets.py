"""Named ReSeg configurations: the paper's models and a small demo.

Presets are plain data. `image_size` is the (height, width) the preset is trained at; the
models themselves accept other sizes.
"""
from reseg_tf.models.class_names import BINARY_CLASSES, CAMVID_CLASSES

# The CPU-from-scratch architecture (no ImageNet weights): a VGG16-shaped front end at half
# width with batch norm, trained; ReNet 64+64 units (1x1 patches); two 2x2 transposed convs of
# 64 filters.
_SCRATCH = dict(front_end="scratch_stem", renet=((64, (1, 1)), (64, (1, 1))),
                upsampling=((64, (2, 2)), (64, (2, 2))))
_CAMVID_SCRATCH = dict(_SCRATCH, num_classes=11, class_names=CAMVID_CLASSES)
_BINARY_SCRATCH = dict(_SCRATCH, num_classes=2, class_names=BINARY_CLASSES)

PRESETS = {
    "camvid": dict(
        description="Paper's CamVid model (Table 4) with the authors' code patches: VGG16 to "
        "conv3_3, ReNet 100+100 units with 1x1 patches, 2x transposed conv 50 filters 2x2.",
        image_size=(360, 480),
        config=dict(num_classes=11, class_names=CAMVID_CLASSES, front_end="vgg16",
                    renet=((100, (1, 1)), (100, (1, 1))), upsampling=((50, (2, 2)), (50, (2, 2)))),
    ),
    "camvid_paper_patches": dict(
        description="CamVid model with the patch sizes of the paper's table (2x2 then 1x1); "
        "one more 2x2 upsampling layer restores the extra stride.",
        image_size=(360, 480),
        config=dict(num_classes=11, class_names=CAMVID_CLASSES, front_end="vgg16",
                    renet=((100, (2, 2)), (100, (1, 1))),
                    upsampling=((50, (2, 2)), (50, (2, 2)), (50, (2, 2)))),
    ),
    "horse": dict(
        description="Weizmann Horse (binary): VGG16 to conv3_3, two ReNet layers, two "
        "transposed convolutions.",
        image_size=(256, 256),
        config=dict(num_classes=2, class_names=BINARY_CLASSES, front_end="vgg16",
                    renet=((64, (1, 1)), (64, (1, 1))), upsampling=((100, (2, 2)), (100, (2, 2)))),
    ),
    "horse_no_vgg": dict(
        description="Weizmann Horse without VGG (the paper's 'ReSeg (no VGG)'): the first ReNet "
        "layer reads 4x4 image patches.",
        image_size=(256, 256),
        config=dict(num_classes=2, class_names=BINARY_CLASSES, front_end="none",
                    renet=((64, (4, 4)), (64, (1, 1))), upsampling=((100, (2, 2)), (100, (2, 2)))),
    ),
    "flowers": dict(
        description="Oxford Flowers 17 (binary): VGG16 to conv3_3, two ReNet layers, two "
        "transposed convolutions.",
        image_size=(256, 256),
        config=dict(num_classes=2, class_names=BINARY_CLASSES, front_end="vgg16",
                    renet=((64, (1, 1)), (64, (1, 1))), upsampling=((100, (2, 2)), (100, (2, 2)))),
    ),
    "camvid_scratch": dict(
        description="CamVid from scratch on a CPU (no ImageNet weights): a VGG16-shaped front end "
        "at half width with batch norm, trained; ReNet 64+64 units (1x1 patches); two 2x2 "
        "transposed convs of 64 filters; trained at 180x240.",
        image_size=(180, 240),
        config=_CAMVID_SCRATCH,
    ),
    "camvid_scratch_conv": dict(
        description="Equal-budget baseline of camvid_scratch: each ReNet layer replaced by a 3x3 "
        "convolution with 2*units filters (about the same parameter count, no global context).",
        image_size=(180, 240),
        config=dict(_CAMVID_SCRATCH, context="conv"),
    ),
    "camvid_scratch_dropout": dict(
        description="camvid_scratch with dropout 0.3 on the output of each ReNet layer, for "
        "sub-model averaging at inference (--mc-samples); same weights' shapes as camvid_scratch.",
        image_size=(180, 240),
        config=dict(_CAMVID_SCRATCH, dropout=0.3),
    ),
    "camvid_scratch_dropout_last": dict(
        description="camvid_scratch with dropout 0.5 on the output of the last ReNet layer only: "
        "sub-model averaging (--mc-samples) repeats only the upsampling and the classifier; "
        "same weights' shapes as camvid_scratch.",
        image_size=(180, 240),
        config=dict(_CAMVID_SCRATCH, dropout=(0.0, 0.5)),
    ),
    "horse_scratch": dict(
        description="Weizmann Horse from scratch on a CPU (no ImageNet weights): camvid_scratch's "
        "half-width VGG16-shaped front end with batch norm, trained; ReNet 64+64 units (1x1 "
        "patches); two 2x2 transposed convs of 64 filters; trained at 160x224.",
        image_size=(160, 224),
        config=_BINARY_SCRATCH,
    ),
    "flowers_scratch": dict(
        description="Oxford Flowers 17 from scratch on a CPU (no ImageNet weights): the "
        "horse_scratch architecture, trained at 160x160.",
        image_size=(160, 160),
        config=_BINARY_SCRATCH,
    ),
    "camvid_mobilenet": dict(
        description="CamVid for phones: MobileNetV3-Small to stride 8 (ImageNet weights, frozen), "
        "ReNet 64+64 units, the first on 2x2 patches as in the paper's CamVid table (half the "
        "recurrence steps, which bound phone latency), four 2x2 transposed convs of 32 filters.",
        image_size=(264, 352),
        config=dict(num_classes=11, class_names=CAMVID_CLASSES, front_end="mobilenet_v3_small",
                    front_end_options={"output_stride": 8}, renet=((64, (2, 2)), (64, (1, 1))),
                    upsampling=((32, (2, 2)),) * 4),
    ),
    "camvid_mobile_scratch": dict(
        description="CamVid for phones, trained from scratch on a CPU: a narrow VGG-shaped stem "
        "with batch norm to stride 8 (16, 32, 64, 96 filters), ONE ReNet layer of 96 units (1x1 "
        "patches: as few recurrence steps, which bound phone latency, as two layers on 2x2 patches, "
        "at twice their resolution), three 2x2 transposed convs of 32 filters; trained at 264x352.",
        image_size=(264, 352),
        config=dict(num_classes=11, class_names=CAMVID_CLASSES, front_end="scratch_stem",
                    front_end_options={"filters": (16, 32, 64, 96)}, renet=((96, (1, 1)),),
                    upsampling=((32, (2, 2)),) * 3),
    ),
    "camvid_resnet50": dict(
        description="CamVid for servers: ResNet50 to conv3 (stride 8, ImageNet weights, frozen), "
        "ReNet 100+100 units (1x1 patches), three 2x2 transposed convs of 50 filters.",
        image_size=(360, 480),
        config=dict(num_classes=11, class_names=CAMVID_CLASSES, front_end="resnet50",
                    front_end_options={"output_stride": 8}, renet=((100, (1, 1)), (100, (1, 1))),
                    upsampling=((50, (2, 2)), (50, (2, 2)), (50, (2, 2)))),
    ),
    "demo": dict(
        description="Small CamVid model that trains in minutes on a CPU from scratch: no VGG, "
        "ReNet 32 units on 4x4 patches then 32 units, two 2x2 transposed convs of 32 filters.",
        image_size=(180, 240),
        config=dict(num_classes=11, class_names=CAMVID_CLASSES, front_end="none",
                    renet=((32, (4, 4)), (32, (1, 1))), upsampling=((32, (2, 2)), (32, (2, 2)))),
    ),
}


def list_presets():
    """Names of the built-in presets."""
    return sorted(PRESETS)


def get_preset(name):
    """Returns `(ReSegConfig, image_size, description)` of a built-in preset."""
    # Imported here, not above: the config checks its front end and ReNet layers, which import
    # Keras, and the preset data must load without Keras (`reseg presets`).
    from reseg_tf.models.config import ReSegConfig

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(list_presets())}.")
    preset = PRESETS[name]
    return ReSegConfig(**preset["config"]), tuple(preset["image_size"]), preset["description"]


# Training recipes: the `reseg_tf.train` settings (TrainConfig field names) each preset trains
# with unless a flag or keyword says otherwise. The paper's presets carry the paper's recipe;
# the from-scratch presets carry the recipe of the model shipped for them in saved_models/.
PAPER_RECIPE = dict(optimizer="adadelta", weight_decay=1e-3, lr_schedule="constant", batch_size=5,
                    augment_mode="standard", class_balance=False, epochs=200, patience=20)
_CPU_SCRATCH_RECIPE = dict(optimizer="adam", learning_rate=1e-3, weight_decay=1e-4, lr_schedule="cosine",
                           batch_size=5)
_CAMVID_SCRATCH_RECIPE = dict(
    _CPU_SCRATCH_RECIPE, image_size=(264, 352), crop_size=(180, 240), class_balance=True,
    class_balance_power=0.5, augment_mode="flip", epochs=84, patience=84)
_BINARY_SCRATCH_RECIPE = dict(_CPU_SCRATCH_RECIPE, augment_mode="standard", class_balance=False)

RECIPES = {
    "camvid": PAPER_RECIPE,
    "camvid_paper_patches": PAPER_RECIPE,
    "horse": PAPER_RECIPE,
    "flowers": PAPER_RECIPE,
    "horse_no_vgg": dict(_BINARY_SCRATCH_RECIPE, epochs=32, patience=32),
    "camvid_scratch": _CAMVID_SCRATCH_RECIPE,
    "camvid_mobilenet": _CAMVID_SCRATCH_RECIPE,
    "camvid_resnet50": PAPER_RECIPE,
    "camvid_mobile_scratch": dict(_CAMVID_SCRATCH_RECIPE, crop_size=(176, 240), epochs=45, patience=45),
    "camvid_scratch_conv": _CAMVID_SCRATCH_RECIPE,
    "camvid_scratch_dropout": _CAMVID_SCRATCH_RECIPE,
    "camvid_scratch_dropout_last": _CAMVID_SCRATCH_RECIPE,
    "horse_scratch": dict(_BINARY_SCRATCH_RECIPE, epochs=40, patience=40),
    "flowers_scratch": dict(_BINARY_SCRATCH_RECIPE, epochs=30, patience=30),
    # Tuned to finish in a few minutes on a 2-core CPU (the README's first line).
    "demo": dict(PAPER_RECIPE, epochs=60),
}


def get_recipe(name):
    """The training recipe of a built-in preset: a dict of `reseg_tf.training.TrainConfig`
    fields (a copy; presets without one train with TrainConfig's defaults)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(list_presets())}.")
    return dict(RECIPES.get(name, {}))


def describe_recipe(recipe):
    """A recipe as `key=value` pairs in its own order (sizes as HxW)."""
    def shown(value):
        if isinstance(value, (tuple, list)):
            return "x".join(str(v) for v in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{key}={shown(value)}" for key, value in recipe.items()) or "TrainConfig's defaults"
