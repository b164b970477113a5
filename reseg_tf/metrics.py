"""Segmentation metrics of the ReSeg paper over a streaming confusion matrix.

The confusion matrix `cm[t, p]` counts pixels of ground-truth class `t` predicted as `p`
(prediction = argmax of the model's output). Pixels whose ground truth is void
(`>= num_classes`) or negative are not counted; a prediction is always a real class.

From it (`TP_c = cm[c, c]`, `GT_c = sum_p cm[c, p]`, `PRED_c = sum_t cm[t, c]`):

- global accuracy = `sum_c TP_c / sum_c GT_c` (fraction of non-void pixels labelled right);
- class accuracy `TP_c / GT_c`, averaged over **all** classes -> average class accuracy;
- class IoU `TP_c / (GT_c + PRED_c - TP_c)`, averaged over **all** classes -> mean IoU.

Classes absent from the evaluated images: a class with no ground-truth pixel has accuracy 0,
and one that also is never predicted (empty union) has IoU 0; both still count in the means,
which are always over the dataset's `num_classes` (the paper's "mean over all classes"; on
the full CamVid test set every class is present, so this only matters for small subsets).
`keras.metrics.MeanIoU` instead drops classes with an empty union from its mean, which gives
numbers not comparable with the paper's. `summarize_confusion` lists such classes under
`classes_without_ground_truth` so a reader can tell.
"""
import keras
import numpy as np
from keras import ops

SUMMARY_KEYS = ("global_acc", "avg_class_acc", "mean_iou", "class_acc", "class_iou")


def confusion_matrix_update(y_true, y_pred, num_classes, sample_weight=None):
    """Counts of `(ground truth, argmax prediction)` pairs in one batch, void excluded.

    Args:
        y_true: int labels `(B, H, W)` (or `(B, H, W, 1)`); values `>= num_classes` are void.
        y_pred: class scores `(B, H, W, num_classes)`; only the argmax is used.
        num_classes: number of real classes.
        sample_weight: optional `(B, H, W)`; pixels with weight 0 are not counted (the matrix
            counts pixels, so other weights are treated as 1).

    Returns:
        int32 tensor `(num_classes, num_classes)`.
    """
    labels = ops.cast(y_true, "int32")
    if len(labels.shape) == len(y_pred.shape):
        labels = ops.squeeze(labels, axis=-1)
    predictions = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    valid = ops.logical_and(labels >= 0, labels < num_classes)
    if sample_weight is not None:
        weights = ops.convert_to_tensor(sample_weight)
        if len(weights.shape) == len(labels.shape) + 1:
            weights = ops.squeeze(weights, axis=-1)
        valid = ops.logical_and(valid, ops.not_equal(weights, 0))
    # Void pixels land in an extra bin (index num_classes ** 2) that is cut off afterwards.
    pair_index = ops.where(valid, labels * num_classes + predictions, num_classes * num_classes)
    counts = ops.bincount(ops.reshape(pair_index, (-1,)), minlength=num_classes * num_classes + 1)
    return ops.reshape(ops.cast(counts[: num_classes * num_classes], "int32"), (num_classes, num_classes))


def _ratios(numerator, denominator):
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def confusion_scores(cm):
    """`(global_acc, class_acc, class_iou)` of a confusion matrix as NumPy float64 values."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square (C, C), got shape {cm.shape}.")
    true_positives = np.diag(cm)
    ground_truth = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    global_acc = float(_ratios(true_positives.sum(), ground_truth.sum()))
    class_acc = _ratios(true_positives, ground_truth)
    class_iou = _ratios(true_positives, ground_truth + predicted - true_positives)
    return global_acc, class_acc, class_iou


def summarize_confusion(cm, class_names):
    """The paper's table row from a confusion matrix `cm[ground_truth, prediction]`.

    Returns:
        A JSON-ready dict: `global_acc`, `avg_class_acc`, `mean_iou` (floats in [0, 1]),
        `class_acc`, `class_iou` (dicts by class name), `classes_without_ground_truth` (names of
        classes with no ground-truth pixel; they count as 0 in the means, see the module
        docstring) and `num_pixels` (non-void pixels counted).
    """
    cm = np.asarray(cm)
    class_names = [str(name) for name in class_names]
    if cm.ndim != 2 or cm.shape != (len(class_names), len(class_names)):
        raise ValueError(
            f"confusion matrix of shape {cm.shape} does not match {len(class_names)} class names."
        )
    global_acc, class_acc, class_iou = confusion_scores(cm)
    return {
        "global_acc": global_acc,
        "avg_class_acc": float(class_acc.mean()),
        "mean_iou": float(class_iou.mean()),
        "class_acc": dict(zip(class_names, map(float, class_acc))),
        "class_iou": dict(zip(class_names, map(float, class_iou))),
        "classes_without_ground_truth": [
            name for name, count in zip(class_names, cm.sum(axis=1)) if count == 0
        ],
        "num_pixels": int(cm.sum()),
    }


def paired_bootstrap_mean_iou(confusions_a, confusions_b, num_resamples=2000, seed=0, level=0.95, block_size=1):
    """How much of a mean IoU difference between two models is the val set's noise.

    Both models were evaluated on the same images; `confusions_a[i]` and `confusions_b[i]` are
    image i's confusion matrices `(C, C)`. Images are drawn with replacement `num_resamples`
    times, the same draw for both models (a paired bootstrap), and each draw's mean IoU
    difference (b minus a) computed from the summed matrices. With `block_size` > 1, runs of
    that many consecutive images (in the given order) are drawn instead of single images: for
    video frames, whose neighbours nearly repeat each other, single-image draws understate the
    noise.

    Returns:
        A dict: `difference` (b - a on all images), `low` and `high` (the `level` percentile
        interval of the resampled differences), `p_not_better` (the fraction of draws in which b
        is not better than a), `num_images`, `num_resamples`.
    """
    a = np.asarray(confusions_a, np.float64)
    b = np.asarray(confusions_b, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[1] != a.shape[2] or not len(a):
        raise ValueError(f"per-image confusion matrices of the same images are needed, (N, C, C) "
                         f"each; got shapes {a.shape} and {b.shape}.")

    def mean_iou(cm):  # cm: (..., C, C)
        true_positives = np.diagonal(cm, axis1=-2, axis2=-1)
        union = cm.sum(-1) + cm.sum(-2) - true_positives
        return np.divide(true_positives, union, out=np.zeros_like(true_positives), where=union > 0).mean(-1)

    if int(block_size) < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}.")
    starts = range(0, len(a), int(block_size))
    membership = np.zeros((len(starts), len(a)))  # block x image
    for block, start in enumerate(starts):
        membership[block, start:start + int(block_size)] = 1
    draws = np.random.default_rng(seed).multinomial(len(starts), np.full(len(starts), 1 / len(starts)),
                                                    size=num_resamples)
    counts = draws @ membership  # how often each image is drawn, per resample
    differences = (mean_iou(np.einsum("rn,nij->rij", counts, b)) - mean_iou(np.einsum("rn,nij->rij", counts, a)))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(differences, [tail, 100 - tail])
    return {"difference": float(mean_iou(b.sum(0)) - mean_iou(a.sum(0))), "low": float(low), "high": float(high),
            "p_not_better": float(np.mean(differences <= 0)), "num_images": len(a), "num_resamples": num_resamples,
            "block_size": int(block_size)}


@keras.saving.register_keras_serializable(package="reseg_tf")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """Streams the confusion matrix of argmax predictions against void-free ground truth.

    `result()` returns the matrix itself (int, `(num_classes, num_classes)`, rows = ground
    truth). Subclasses report one scalar of it; every instance also offers
    `summary(class_names)`, the full `summarize_confusion` dict.

    Args:
        num_classes: number of real classes; labels `>= num_classes` are void and ignored.
        name: metric name (the key in training logs).
    """

    def __init__(self, num_classes, name="confusion_matrix", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}.")
        self.num_classes = num_classes
        # int64 keeps counts exact past float32's 2**24 (CamVid's test split has 40M pixels).
        self.confusion_matrix = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="int64",
            name="confusion_matrix",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        counts = confusion_matrix_update(y_true, y_pred, self.num_classes, sample_weight)
        self.confusion_matrix.assign_add(ops.cast(counts, "int64"))

    def result(self):
        return ops.convert_to_tensor(self.confusion_matrix)

    def _scores(self):
        cm = ops.cast(ops.convert_to_tensor(self.confusion_matrix), "float64")
        true_positives = ops.diagonal(cm)
        ground_truth = ops.sum(cm, axis=1)
        predicted = ops.sum(cm, axis=0)
        return true_positives, ground_truth, predicted

    def summary(self, class_names=None):
        names = class_names or [f"class_{index}" for index in range(self.num_classes)]
        return summarize_confusion(ops.convert_to_numpy(self.confusion_matrix), names)

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="reseg_tf")
class GlobalAccuracy(ConfusionMatrixMetric):
    """Fraction of non-void pixels whose argmax class is right (the paper's "global acc")."""

    def __init__(self, num_classes, name="global_acc", dtype=None):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        true_positives, ground_truth, _ = self._scores()
        return ops.cast(ops.divide_no_nan(ops.sum(true_positives), ops.sum(ground_truth)), "float32")


@keras.saving.register_keras_serializable(package="reseg_tf")
class AverageClassAccuracy(ConfusionMatrixMetric):
    """Per-class pixel accuracy averaged over all classes (the paper's "avg class acc")."""

    def __init__(self, num_classes, name="avg_class_acc", dtype=None):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        true_positives, ground_truth, _ = self._scores()
        return ops.cast(ops.mean(ops.divide_no_nan(true_positives, ground_truth)), "float32")


@keras.saving.register_keras_serializable(package="reseg_tf")
class MeanIoU(ConfusionMatrixMetric):
    """Intersection over union per class, averaged over **all** `num_classes` classes.

    Unlike `keras.metrics.MeanIoU`, a class with an empty union counts as 0 in the mean and void
    ground truth is never counted (see the module docstring).
    """

    def __init__(self, num_classes, name="mean_iou", dtype=None):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        true_positives, ground_truth, predicted = self._scores()
        union = ground_truth + predicted - true_positives
        return ops.cast(ops.mean(ops.divide_no_nan(true_positives, union)), "float32")


def segmentation_metrics(num_classes):
    """The three metrics `reseg_tf.train` compiles with: `global_acc`, `avg_class_acc`, `mean_iou`."""
    return [
        GlobalAccuracy(num_classes),
        AverageClassAccuracy(num_classes),
        MeanIoU(num_classes),
    ]
