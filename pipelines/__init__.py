"""tf.data input pipelines for ReSeg: CamVid, Weizmann Horse, Oxford Flowers 17, image folders.

Independent of the model package (`reseg_tf`): it yields `(image float32 (B, H, W, 3) RGB 0..255,
mask int32 (B, H, W))` batches, void pixels equal to `num_classes`, optionally with a per-pixel
class-balancing `sample_weight`.

Example:
    >>> import pipelines
    >>> train = pipelines.make_dataset("camvid", "train", augment=True, class_balance=True)
    >>> source = pipelines.get_source("camvid", data_dir="../shared/datasets/camvid")

The public names load on first use (PEP 562), so that the plain-data module `options` imports
without TensorFlow: the `reseg` command's flags read it.
"""
import importlib

_HOMES = {
    **dict.fromkeys(("AugmentConfig", "augment_example", "local_contrast_normalization"), "augment"),
    **dict.fromkeys(("median_frequency_from_counts", "median_frequency_weights"), "class_weights"),
    **dict.fromkeys(("check_pairs", "make_dataset"), "dataset"),
    **dict.fromkeys(("VerifyReport", "show_dataset", "verify_dataset"), "inspection"),
    **dict.fromkeys(("SOURCES", "DataSource", "get_source", "sample_data_dir"), "sources"),
}
__all__ = sorted(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pipelines.{_HOMES[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(_HOMES))
