"""The serializable description of a ReSeg model."""
import dataclasses
import json

from reseg_tf.front_ends import get_front_end
from reseg_tf.layers.renet import DIRECTION_MODES, RNN_CLASSES, SWEEP_ORDERS, _as_pair
from reseg_tf.models.class_names import CAMVID_CLASSES

CONTEXT_LAYERS = ("renet", "conv")
# The front-end fields of configs written before front ends were a registry (`.keras` files
# hold them); `from_dict` maps them to `front_end` and its options. Their defaults then.
LEGACY_FRONT_END_FIELDS = {"use_vgg": True, "freeze_vgg": True, "vgg_filters": (64, 128, 256),
                           "vgg_batch_norm": False}


def _legacy_front_end(use_vgg, freeze_vgg, vgg_filters, vgg_batch_norm):
    """`(front_end, front_end_options, freeze_front_end)` equal to the legacy VGG fields."""
    if not use_vgg:
        return "none", {}, None
    if tuple(vgg_filters) == (64, 128, 256) and not vgg_batch_norm:
        return "vgg16", {"output_layer": "block3_conv3"}, bool(freeze_vgg)
    return "scratch_stem", {"filters": tuple(vgg_filters), "batch_norm": bool(vgg_batch_norm)}, bool(freeze_vgg)


@dataclasses.dataclass(frozen=True)
class ReSegConfig:
    """Everything `build_model` needs besides the input shape and the front end's weights.

    Args:
        num_classes: number of output classes (void is not a class).
        class_names: one name per class (defaults to `class_0`, ...).
        front_end: a registered front end (`reseg_tf.list_front_ends()`): `vgg16` (the paper's,
            to `block3_conv3`), `scratch_stem` (VGG16-shaped, thinner, batch norm, trained
            from scratch), `none` (the paper's "ReSeg (no VGG)": the first ReNet layer reads
            image patches), `mobilenet_v3_small`, `resnet50`, ...
        front_end_options: that front end's options (e.g. `{"output_layer": "block4_conv3"}`
            for vgg16); stored with its defaults filled in, as `(name, value)` pairs
            (`front_end_settings` gives the dict).
        freeze_front_end: keep the front end's weights fixed during training; None: the front
            end's default (frozen for those that start from ImageNet weights).
        renet: `(units, (ph, pw))` for each ReNet layer, in order.
        upsampling: `(filters, (kh, kw))` for each transposed convolution (stride = kernel).
        context: `"renet"` (ReSeg) or `"conv"`: each ReNet layer is replaced by a 3x3
            convolution with `2 * units` filters and stride = patch size (ReLU), a baseline of
            about the same parameter count without the recurrent layers' global context.
        rnn, sweep_order, direction_mode, stack_sublayers: passed to every `ReNetLayer`.
        weight_decay: L2 coefficient on every trainable kernel (convolutions and the ReNet
            layers' input and recurrent weights; biases and batch norm excluded); 0 disables it.
        dropout: dropout rate on the output of every ReNet (or `conv` context) layer, or one
            rate per layer (e.g. `(0.0, 0.5)`: after the last one only, so that sub-model
            averaging repeats only the layers after it); 0 (the default) adds no layer. A model
            with dropout can average sub-networks at inference (`--mc-samples`, see
            `reseg_tf.averaging`).
        classifier_dropout: dropout rate on the features the 1x1 classifier reads; 0 adds no layer.
    """

    num_classes: int = 11
    class_names: tuple = CAMVID_CLASSES
    front_end: str = "vgg16"
    front_end_options: tuple = ()
    freeze_front_end: bool = None
    renet: tuple = ((100, (1, 1)), (100, (1, 1)))
    upsampling: tuple = ((50, (2, 2)), (50, (2, 2)))
    context: str = "renet"
    rnn: str = "gru"
    sweep_order: str = "vertical_first"
    direction_mode: str = "parallel"
    stack_sublayers: bool = True
    weight_decay: float = 0.0
    dropout: float = 0.0
    classifier_dropout: float = 0.0

    def __post_init__(self):
        # Normalise lists from JSON into tuples so configs compare and hash by value.
        set_ = object.__setattr__
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {self.num_classes!r}.")
        names = self.class_names
        if names is None or (names == CAMVID_CLASSES and self.num_classes != len(CAMVID_CLASSES)):
            names = tuple(f"class_{i}" for i in range(self.num_classes))
        names = tuple(str(n) for n in names)
        if len(names) != self.num_classes:
            raise ValueError(
                f"`class_names` has {len(names)} names but `num_classes` is {self.num_classes}."
            )
        set_(self, "class_names", names)
        front_end = get_front_end(self.front_end)
        given = self.front_end_options
        set_(self, "front_end_options", tuple(front_end.options(dict(given) if given else None).items()))
        if self.freeze_front_end is None:
            set_(self, "freeze_front_end", front_end.frozen_by_default)
        elif not isinstance(self.freeze_front_end, bool):
            raise ValueError(f"`freeze_front_end` must be a bool or None, got {self.freeze_front_end!r}.")
        if not self.renet:
            raise ValueError("`renet` must list at least one (units, patch_size) ReNet layer.")
        set_(self, "renet", tuple(self._layer_spec(s, "renet", "units", "patch_size") for s in self.renet))
        set_(
            self,
            "upsampling",
            tuple(self._layer_spec(s, "upsampling", "filters", "kernel_size") for s in self.upsampling),
        )
        if self.context not in CONTEXT_LAYERS:
            raise ValueError(f"`context` must be one of {CONTEXT_LAYERS}, got {self.context!r}.")
        if self.rnn not in RNN_CLASSES:
            raise ValueError(f"`rnn` must be one of {sorted(RNN_CLASSES)}, got {self.rnn!r}.")
        if self.sweep_order not in SWEEP_ORDERS:
            raise ValueError(f"`sweep_order` must be one of {SWEEP_ORDERS}, got {self.sweep_order!r}.")
        if self.direction_mode not in DIRECTION_MODES:
            raise ValueError(
                f"`direction_mode` must be one of {DIRECTION_MODES}, got {self.direction_mode!r}."
            )
        set_(self, "classifier_dropout", self._rate(self.classifier_dropout, "classifier_dropout"))
        if isinstance(self.dropout, (list, tuple)):
            if len(self.dropout) != len(self.renet):
                raise ValueError(
                    f"`dropout` lists {len(self.dropout)} rates but the model has "
                    f"{len(self.renet)} ReNet layers; give one rate per layer or a single rate.")
            set_(self, "dropout", tuple(self._rate(r, "dropout") for r in self.dropout))
        else:
            set_(self, "dropout", self._rate(self.dropout, "dropout"))
        if not (self.weight_decay >= 0):
            raise ValueError(f"`weight_decay` must be >= 0, got {self.weight_decay!r}.")

    @staticmethod
    def _rate(rate, field):
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"`{field}` must be a rate in [0, 1) (or, for `dropout`, one per "
                             f"ReNet layer), got {rate!r}.")
        return float(rate)

    @property
    def front_end_settings(self):
        """The front end's options as a dict (defaults filled in)."""
        return dict(self.front_end_options)

    @property
    def front_end_spec(self):
        """The registered `FrontEnd` this config uses."""
        return get_front_end(self.front_end)

    @property
    def dropout_rates(self):
        """The dropout rate after each ReNet (or `conv` context) layer, in order."""
        if isinstance(self.dropout, tuple):
            return self.dropout
        return (self.dropout,) * len(self.renet)

    @staticmethod
    def _layer_spec(spec, field, size_name, window_name):
        try:
            size, window = spec
        except (TypeError, ValueError):
            raise ValueError(
                f"each `{field}` entry must be ({size_name}, ({window_name[0]}h, {window_name[0]}w)), got {spec!r}."
            ) from None
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"`{field}` {size_name} must be a positive int, got {size!r}.")
        return (size, _as_pair(window, f"{field} {window_name}"))

    @property
    def input_stride(self):
        """Total downsampling from the image to the last ReNet layer's grid, per axis."""
        stride_h = stride_w = self.front_end_spec.output_stride(self.front_end_settings)
        for _, (ph, pw) in self.renet:
            stride_h, stride_w = stride_h * ph, stride_w * pw
        return stride_h, stride_w

    @property
    def output_stride(self):
        """Total upsampling of the transposed convolutions, per axis."""
        up_h = up_w = 1
        for _, (kh, kw) in self.upsampling:
            up_h, up_w = up_h * kh, up_w * kw
        return up_h, up_w

    def to_dict(self):
        data = dataclasses.asdict(self)
        data["front_end_options"] = self.front_end_settings
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data):
        """The config of a dict from `to_dict`, including one written before front ends were a
        registry (its VGG fields become the same front end)."""
        data = dict(data)
        legacy = {key: data.pop(key) for key in LEGACY_FRONT_END_FIELDS if key in data}
        if legacy:
            if "front_end" in data:
                raise ValueError(f"config has both `front_end` and the legacy fields {sorted(legacy)}.")
            data["front_end"], data["front_end_options"], data["freeze_front_end"] = _legacy_front_end(
                **{**LEGACY_FRONT_END_FIELDS, **legacy})
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown ReSeg config keys {unknown}; known keys: {sorted(fields)}.")
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
