"""The serializable description of a ReSeg model."""
import dataclasses
import json

from reseg_tf.layers.renet import DIRECTION_MODES, RNN_CLASSES, SWEEP_ORDERS, _as_pair

CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
BINARY_CLASSES = ("background", "foreground")
CONTEXT_LAYERS = ("renet", "conv")


@dataclasses.dataclass(frozen=True)
class ReSegConfig:
    """Everything `build_model` needs besides the input shape and the VGG weights.

    Args:
        num_classes: number of output classes (void is not a class).
        class_names: one name per class (defaults to `class_0`, ...).
        use_vgg: put VGG16's conv layers up to `block3_conv3` (stride 4) in front; `False` is
            the paper's "ReSeg (no VGG)": the first ReNet layer reads image patches.
        freeze_vgg: keep the VGG layers' weights fixed during training.
        vgg_filters: filters of VGG16's three conv blocks; (64, 128, 256) is VGG16 itself (and
            the only width ImageNet weights fit). Thinner stems train faster from scratch.
        vgg_batch_norm: add batch normalization after every VGG conv (for training the front
            end from scratch; VGG16 itself has none).
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
    use_vgg: bool = True
    freeze_vgg: bool = True
    vgg_filters: tuple = (64, 128, 256)
    vgg_batch_norm: bool = False
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
        filters = tuple(self.vgg_filters)
        if len(filters) != 3 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters):
            raise ValueError(f"`vgg_filters` must be three positive ints, got {self.vgg_filters!r}.")
        set_(self, "vgg_filters", filters)
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
        stride_h = stride_w = 4 if self.use_vgg else 1
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
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"unknown ReSeg config keys {unknown}; known keys: {sorted(fields)}.")
        return cls(**data)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)
