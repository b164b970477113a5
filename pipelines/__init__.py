"""tf.data input pipelines for ReSeg: CamVid, Weizmann Horse, Oxford Flowers 17, image folders.

Independent of the model package (`reseg_tf`): it yields `(image float32 (B, H, W, 3) RGB 0..255,
mask int32 (B, H, W))` batches, void pixels equal to `num_classes`, optionally with a per-pixel
class-balancing `sample_weight`.

Example:
    >>> import pipelines
    >>> train = pipelines.make_dataset("camvid", "train", augment=True, class_balance=True)
    >>> source = pipelines.get_source("camvid", data_dir="../shared/datasets/camvid")
"""
from pipelines.augment import AugmentConfig, augment_example, local_contrast_normalization
from pipelines.class_weights import median_frequency_from_counts, median_frequency_weights
from pipelines.dataset import check_pairs, make_dataset
from pipelines.inspection import VerifyReport, show_dataset, verify_dataset
from pipelines.sources import SOURCES, DataSource, get_source, sample_data_dir

__all__ = ["AugmentConfig", "DataSource", "SOURCES", "VerifyReport", "augment_example", "check_pairs",
           "get_source", "local_contrast_normalization", "make_dataset", "median_frequency_from_counts",
           "median_frequency_weights", "sample_data_dir", "show_dataset", "verify_dataset"]
