"""Calibration of per-pixel confidences, streamed over a split (void pixels excluded).

- Expected calibration error (Guo et al. 2017): pixels binned by confidence (the largest class
  probability) into 15 equal-width bins; `ece = sum_b (n_b / n) * |accuracy_b - confidence_b|`.
- Selective segmentation: the confusion matrix of the `fraction` most confident pixels of the
  split (one confidence threshold for the whole split), from which `reseg evaluate
  --uncertainty` reports the mean IoU over the 90% most confident pixels. Confidences are kept
  in a fine histogram on `-log10(1 - confidence)` (resolution 0.005 decades, so nearly certain
  pixels stay apart); the pixels of the bin that straddles the threshold count pro rata.
"""
import numpy as np

ECE_BINS = 15
_DECADES = 7.0
_FINE_BINS = 1400


class CalibrationAccumulator:
    """Accumulates `(truth, prediction, confidence)` of pixels; see the module docstring."""

    def __init__(self, num_classes, ece_bins=ECE_BINS, selective=False):
        self.num_classes = num_classes
        self.ece_bins = ece_bins
        self.count = np.zeros(ece_bins, np.int64)
        self.confidence_sum = np.zeros(ece_bins, np.float64)
        self.correct = np.zeros(ece_bins, np.int64)
        # (fine confidence bin, truth * C + prediction) counts, most confident bin last.
        self.histogram = np.zeros((_FINE_BINS, num_classes * num_classes), np.int64) if selective else None

    def update(self, truth, prediction, confidence):
        """Adds pixels: int arrays `truth` (void: outside 0..C-1), `prediction`, float `confidence`."""
        truth, prediction = np.ravel(truth).astype(np.int64), np.ravel(prediction).astype(np.int64)
        confidence = np.ravel(confidence).astype(np.float64)
        valid = (truth >= 0) & (truth < self.num_classes)
        truth, prediction, confidence = truth[valid], prediction[valid], confidence[valid]
        bins = np.clip((confidence * self.ece_bins).astype(np.int64), 0, self.ece_bins - 1)
        self.count += np.bincount(bins, minlength=self.ece_bins)
        self.confidence_sum += np.bincount(bins, weights=confidence, minlength=self.ece_bins)
        self.correct += np.bincount(bins, weights=(truth == prediction).astype(np.float64), minlength=self.ece_bins).astype(np.int64)
        if self.histogram is not None:
            decades = -np.log10(np.maximum(1.0 - confidence, 10.0 ** -_DECADES))
            fine = np.clip((decades / _DECADES * _FINE_BINS).astype(np.int64), 0, _FINE_BINS - 1)
            pairs = self.num_classes * self.num_classes
            self.histogram += np.bincount(fine * pairs + truth * self.num_classes + prediction,
                                          minlength=_FINE_BINS * pairs).reshape(_FINE_BINS, pairs)

    def ece(self):
        """Expected calibration error in [0, 1] (0 for no pixels)."""
        total = self.count.sum()
        if not total:
            return 0.0
        seen = self.count > 0
        accuracy = self.correct[seen] / self.count[seen]
        confidence = self.confidence_sum[seen] / self.count[seen]
        return float(np.sum(self.count[seen] / total * np.abs(accuracy - confidence)))

    def reliability(self):
        """Per ECE bin: `[low, high, pixels, mean confidence, accuracy]` (bins with pixels)."""
        rows = []
        for index in np.flatnonzero(self.count):
            rows.append([index / self.ece_bins, (index + 1) / self.ece_bins, int(self.count[index]),
                         float(self.confidence_sum[index] / self.count[index]),
                         float(self.correct[index] / self.count[index])])
        return rows

    def confident_confusion(self, fraction):
        """Float confusion matrix `(C, C)` of the `fraction` most confident pixels."""
        if self.histogram is None:
            raise ValueError("create the accumulator with selective=True to select confident pixels.")
        if not 0 < fraction <= 1:
            raise ValueError(f"`fraction` must be in (0, 1], got {fraction!r}.")
        per_bin = self.histogram.sum(axis=1)
        wanted = fraction * per_bin.sum()
        confusion = np.zeros(self.histogram.shape[1], np.float64)
        taken = 0.0
        for index in range(_FINE_BINS - 1, -1, -1):
            if taken >= wanted:
                break
            if not per_bin[index]:
                continue
            share = min(1.0, (wanted - taken) / per_bin[index])
            confusion += share * self.histogram[index]
            taken += share * per_bin[index]
        return confusion.reshape(self.num_classes, self.num_classes)
