"""Segmentation losses that ignore void: per-pixel cross-entropy and focal loss (class-balanced
by per-pixel weights), the Lovász-softmax and soft Dice region losses, and their weighted sums.

Per-pixel losses (`VoidAwareCrossEntropy`, `VoidAwareFocalLoss`) take a `(B, H, W)`
`sample_weight` (class balancing). Region losses (`LovaszSoftmaxLoss`, `DiceLoss`) are computed
over the whole batch per class, like the IoU they stand for, and take no per-pixel weights: they
ignore `sample_weight`, so `model.fit` on a class-balanced pipeline cannot multiply them in.
`CompoundLoss` adds several with weights; `make_loss("cross_entropy+lovasz", num_classes)` builds
one from the names of `LOSSES`.

Scale of the loss and of weight decay
-------------------------------------
`VoidAwareCrossEntropy` with the default reduction returns

    sum over valid pixels of (w_p * -log p_p[y_p])  /  number of valid pixels

where valid = ground truth < num_classes (void excluded) and `w_p` is the per-pixel
`sample_weight` (1 when none is given). So without weights it is the mean cross-entropy per
non-void pixel, independent of batch size, image size and how much void an image contains.

The paper's L2 weight decay (1e-3) is applied by the model as
`kernel_regularizer=keras.regularizers.L2(weight_decay)` (see `ReSegConfig.weight_decay`), which
adds `weight_decay * sum(kernel ** 2)` to this pixel-averaged loss once per step. That is the
same scale as Lasagne's `loss + 1e-3 * regularize_network_params(l2)` on a mean cross-entropy,
the form the authors' code uses (their code never switched it on; the paper states it). The
trainer (`reseg_tf.train`) uses 1e-3 by default; pass `weight_decay=0` to turn it off.
"""
import keras
from keras import ops

from reseg_tf.options import LOSS_NAMES


def _labels_and_valid(y_true, y_pred, num_classes):
    """int32 labels `(B, H, W)` with void replaced by class 0, and the valid-pixel mask."""
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == len(y_pred.shape):
        labels = ops.squeeze(labels, axis=-1)
    valid = ops.logical_and(labels >= 0, labels < num_classes)
    # Void pixels get a harmless in-range label; the mask removes them from the reduction.
    return ops.where(valid, labels, ops.zeros_like(labels)), valid


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")


@keras.saving.register_keras_serializable(package="reseg_tf")
class VoidAwareCrossEntropy(keras.losses.Loss):
    """Per-pixel sparse categorical cross-entropy that ignores void pixels.

    Labels `>= num_classes` (void; CamVid's label 11) and negative labels contribute nothing,
    neither to the sum nor to the count the sum is divided by. An optional per-pixel
    `sample_weight` of shape `(B, H, W)` (e.g. median-frequency class balancing) multiplies each
    pixel's loss; the sum is still divided by the number of valid pixels, not by the sum of the
    weights, so a weight map is a relative importance, as in the paper's class balancing.

    Keras' `Loss.__call__` multiplies what `call` returns by `sample_weight` and, for
    `reduction="sum_over_batch_size"` (or `"mean"`), divides the sum by the number of *all*
    pixels. So `call` scales valid pixels by `all pixels / valid pixels` (0 on void), the same
    trick Keras applies to masked losses, which turns that division into one by the number of
    valid pixels. With `reduction="sum"` the loss is the plain weighted sum over valid pixels;
    with `None` it is the unscaled per-pixel map (0 on void).

    Args:
        num_classes: number of real classes; labels at or above it are void.
        from_logits: whether `y_pred` are logits (ReSeg models output probabilities).
        reduction: Keras loss reduction (see above).
        name: loss name.

    Example:

    >>> loss = VoidAwareCrossEntropy(num_classes=11)
    >>> value = loss(masks, probabilities, sample_weight=weights)
    """

    def __init__(self, num_classes, from_logits=False, reduction="sum_over_batch_size",
                 name="void_aware_cross_entropy", dtype=None):
        _check_num_classes(num_classes)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = num_classes
        self.from_logits = bool(from_logits)

    def pixel_losses(self, labels, y_pred):
        """The unweighted loss of every pixel, `(B, H, W)`, for in-range `labels`."""
        return ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=self.from_logits, axis=-1)

    def call(self, y_true, y_pred):
        safe_labels, valid = _labels_and_valid(y_true, y_pred, self.num_classes)
        losses = self.pixel_losses(safe_labels, y_pred)
        if self.reduction in ("sum_over_batch_size", "mean"):
            valid_float = ops.cast(valid, losses.dtype)
            total = ops.cast(ops.size(valid_float), losses.dtype)
            # A batch of only void pixels gives a loss of 0, not NaN.
            scale = ops.divide_no_nan(total, ops.sum(valid_float))
        else:
            scale = ops.ones((), losses.dtype)
        return ops.where(valid, losses * scale, ops.zeros_like(losses))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="reseg_tf")
class VoidAwareFocalLoss(VoidAwareCrossEntropy):
    """Per-pixel focal loss (Lin et al. 2017) that ignores void pixels.

    Each valid pixel's loss is Keras' `categorical_focal_crossentropy` of its one-hot label:
    `-alpha * (1 - p)^gamma * log p` of the true class, which down-weighs pixels the model already
    gets right. Void handling, `sample_weight` (class balancing) and reductions are those of
    `VoidAwareCrossEntropy`.

    Args:
        num_classes: number of real classes; labels at or above it are void.
        gamma: focusing parameter (0 gives `alpha` times the cross-entropy).
        alpha: constant factor of every pixel's loss (1: no rescaling).
        from_logits: whether `y_pred` are logits.
        reduction: Keras loss reduction.
        name: loss name.

    Example:

    >>> loss = VoidAwareFocalLoss(num_classes=11, gamma=2.0)
    """

    def __init__(self, num_classes, gamma=2.0, alpha=1.0, from_logits=False,
                 reduction="sum_over_batch_size", name="void_aware_focal_loss", dtype=None):
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
            raise ValueError(f"`gamma` must be a number >= 0, got {gamma!r}.")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"`alpha` must be a number > 0, got {alpha!r}.")
        super().__init__(num_classes, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.gamma, self.alpha = float(gamma), float(alpha)

    def pixel_losses(self, labels, y_pred):
        one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_focal_crossentropy(
            one_hot, y_pred, alpha=self.alpha, gamma=self.gamma, from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "alpha": self.alpha}


REGION_CLASSES = ("present", "all")


class _RegionLoss(keras.losses.Loss):
    """A loss computed over all the batch's valid pixels per class, then averaged over classes.

    Per-pixel `sample_weight` (class balancing) does not apply to it: `__call__` drops it.
    """

    def __init__(self, num_classes, classes="present", from_logits=False, name=None, dtype=None):
        _check_num_classes(num_classes)
        if classes not in REGION_CLASSES:
            raise ValueError(f"`classes` must be one of {REGION_CLASSES}, got {classes!r}.")
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.num_classes, self.classes, self.from_logits = num_classes, classes, bool(from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        del sample_weight  # region losses weigh classes equally, not pixels
        return super().__call__(y_true, y_pred)

    def _flat(self, y_true, y_pred):
        """Valid mask `(N, 1)`, one-hot ground truth `(N, C)` (0 on void) and probabilities `(N, C)`."""
        labels, valid = _labels_and_valid(y_true, y_pred, self.num_classes)
        probabilities = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        probabilities = ops.reshape(probabilities, (-1, self.num_classes))
        valid = ops.cast(ops.reshape(valid, (-1, 1)), probabilities.dtype)
        truth = ops.one_hot(ops.reshape(labels, (-1,)), self.num_classes, dtype=probabilities.dtype) * valid
        return valid, truth, probabilities

    def _class_mean(self, per_class, truth):
        """Mean over the classes (those in the batch's ground truth for `classes="present"`)."""
        if self.classes == "all":
            return ops.mean(per_class)
        present = ops.cast(ops.sum(truth, axis=0) > 0, per_class.dtype)
        # A batch of only void pixels gives 0, not NaN.
        return ops.divide_no_nan(ops.sum(per_class * present), ops.sum(present))

    def get_config(self):
        config = super().get_config()
        config.pop("reduction")
        config.update(num_classes=self.num_classes, classes=self.classes, from_logits=self.from_logits)
        return config


@keras.saving.register_keras_serializable(package="reseg_tf")
class LovaszSoftmaxLoss(_RegionLoss):
    """Lovász-softmax loss (Berman et al., CVPR 2018): a convex surrogate of 1 - IoU per class.

    For each class, the valid pixels of the whole batch are sorted by their error
    `|[label == c] - p_c|`, and the errors are weighted by the steps of the Jaccard loss along
    that order (its Lovász extension). On hard one-hot predictions it equals `1 - IoU` of each
    class; the loss is the mean over the classes present in the batch's ground truth
    (`classes="present"`, the paper's choice) or over all classes. Void pixels (labels
    `>= num_classes`) change nothing; per-pixel `sample_weight` is ignored. It is usually used as a
    fine-tune after cross-entropy, or added to it (`CompoundLoss`).

    Args:
        num_classes: number of real classes; labels at or above it are void.
        classes: `"present"` or `"all"` (see above).
        from_logits: whether `y_pred` are logits (ReSeg models output probabilities).
        name: loss name.

    Example:

    >>> loss = LovaszSoftmaxLoss(num_classes=11)
    >>> value = loss(masks, probabilities)
    """

    def __init__(self, num_classes, classes="present", from_logits=False, name="lovasz_softmax", dtype=None):
        super().__init__(num_classes, classes=classes, from_logits=from_logits, name=name, dtype=dtype)

    def call(self, y_true, y_pred):
        valid, truth, probabilities = self._flat(y_true, y_pred)
        errors = ops.abs(truth - probabilities) * valid
        # Void pixels sort after every valid one, where they change neither sum below.
        order = ops.argsort(-(errors - (1.0 - valid)), axis=0)
        errors_sorted = ops.take_along_axis(errors, order, axis=0)
        truth_sorted = ops.take_along_axis(truth, order, axis=0)
        outside_sorted = ops.take_along_axis((1.0 - truth) * valid, order, axis=0)
        class_pixels = ops.sum(truth, axis=0, keepdims=True)
        intersection = class_pixels - ops.cumsum(truth_sorted, axis=0)
        union = class_pixels + ops.cumsum(outside_sorted, axis=0)
        jaccard = 1.0 - ops.divide_no_nan(intersection, union)
        steps = ops.concatenate([jaccard[:1], jaccard[1:] - jaccard[:-1]], axis=0)
        per_class = ops.sum(errors_sorted * ops.stop_gradient(steps), axis=0)
        return self._class_mean(per_class, truth)


@keras.saving.register_keras_serializable(package="reseg_tf")
class DiceLoss(_RegionLoss):
    """Soft Dice loss over the batch per class: `1 - (2 sum(p g) + s) / (sum(p) + sum(g) + s)`.

    Sums run over the batch's valid pixels (void ignored), `g` the one-hot ground truth and `p`
    the predicted probabilities; the loss is the mean over the classes present in the ground truth
    (`classes="present"`) or over all classes. Per-pixel `sample_weight` is ignored.

    Args:
        num_classes: number of real classes; labels at or above it are void.
        classes: `"present"` or `"all"`.
        smooth: `s` above, keeping absent classes finite.
        from_logits: whether `y_pred` are logits.
        name: loss name.

    Example:

    >>> loss = DiceLoss(num_classes=2)
    """

    def __init__(self, num_classes, classes="present", smooth=1.0, from_logits=False, name="dice", dtype=None):
        if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not smooth >= 0:
            raise ValueError(f"`smooth` must be a number >= 0, got {smooth!r}.")
        super().__init__(num_classes, classes=classes, from_logits=from_logits, name=name, dtype=dtype)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        valid, truth, probabilities = self._flat(y_true, y_pred)
        probabilities = probabilities * valid
        overlap = ops.sum(probabilities * truth, axis=0)
        total = ops.sum(probabilities, axis=0) + ops.sum(truth, axis=0)
        per_class = 1.0 - (2.0 * overlap + self.smooth) / (total + self.smooth)
        return self._class_mean(per_class, truth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="reseg_tf")
class CompoundLoss(keras.losses.Loss):
    """A weighted sum of losses, each given the `sample_weight` (which region losses ignore).

    Args:
        losses: `keras.losses.Loss` instances (e.g. `VoidAwareCrossEntropy`, `LovaszSoftmaxLoss`).
        weights: one non-negative number per loss; default 1 each.
        name: loss name.

    Example:

    >>> loss = CompoundLoss([VoidAwareCrossEntropy(11), LovaszSoftmaxLoss(11)], weights=[1.0, 0.5])
    """

    def __init__(self, losses, weights=None, name="compound_loss", dtype=None):
        losses = [keras.losses.deserialize(loss) if isinstance(loss, dict) else loss for loss in losses]
        if not losses or not all(isinstance(loss, keras.losses.Loss) for loss in losses):
            raise ValueError(f"`losses` must be a non-empty list of keras.losses.Loss, got {losses!r}.")
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if len(weights) != len(losses) or any(not w >= 0 for w in weights):
            raise ValueError(f"`weights` must be {len(losses)} numbers >= 0, got {weights!r}.")
        super().__init__(name=name, reduction="sum_over_batch_size", dtype=dtype)
        self.losses, self.weights = losses, weights

    def __call__(self, y_true, y_pred, sample_weight=None):
        return sum(weight * ops.cast(loss(y_true, y_pred, sample_weight=sample_weight), self.dtype)
                   for loss, weight in zip(self.losses, self.weights))

    def get_config(self):
        return {"name": self.name, "losses": [keras.losses.serialize(loss) for loss in self.losses],
                "weights": self.weights}


# The loss names `make_loss` (and `reseg train --loss`) accept, each with its class.
LOSSES = dict(zip(LOSS_NAMES, (VoidAwareCrossEntropy, VoidAwareFocalLoss, LovaszSoftmaxLoss, DiceLoss),
                  strict=True))


def parse_loss_spec(spec, weights=None):
    """`"cross_entropy+lovasz"` -> `(("cross_entropy", 1.0), ("lovasz", 1.0))`, with `weights`
    (one per term) replacing the 1s; ValueError names an unknown term or a count mismatch."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"`loss` must be a name such as 'cross_entropy' or 'cross_entropy+lovasz', got {spec!r}.")
    names = [name.strip() for name in spec.split("+")]
    unknown = [name for name in names if name not in LOSSES]
    if unknown or len(set(names)) != len(names):
        problem = f"unknown loss {unknown[0]!r}" if unknown else "a loss named twice"
        raise ValueError(f"`loss` {spec!r} has {problem}; combine with '+' any of {', '.join(LOSSES)}.")
    if weights is None:
        weights = (1.0,) * len(names)
    weights = tuple(weights)
    if len(weights) != len(names) or any(isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0
                                         for w in weights):
        raise ValueError(f"`loss_weights` must be {len(names)} numbers >= 0 (one per term of {spec!r}), "
                         f"got {weights!r}.")
    return tuple(zip(names, (float(w) for w in weights)))


def make_loss(spec, num_classes, weights=None):
    """The loss named by `spec` (a `LOSSES` name or several joined by '+', e.g.
    `"cross_entropy+lovasz"`), for `num_classes` classes; `weights` multiply the terms (default 1)."""
    terms = parse_loss_spec(spec, weights)
    if len(terms) == 1 and terms[0][1] == 1.0:
        return LOSSES[terms[0][0]](num_classes)
    return CompoundLoss([LOSSES[name](num_classes) for name, _ in terms], [weight for _, weight in terms],
                        name=spec.replace("+", "_plus_"))
