"""Void-aware, optionally class-balanced per-pixel cross-entropy.

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
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.num_classes = num_classes
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = ops.squeeze(labels, axis=-1)
        valid = ops.logical_and(labels >= 0, labels < self.num_classes)
        # Void pixels get a harmless in-range label; the mask removes them from the reduction.
        safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
        losses = ops.sparse_categorical_crossentropy(
            safe_labels, y_pred, from_logits=self.from_logits, axis=-1
        )
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
