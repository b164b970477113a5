"""Keras layers of ReSeg."""
from reseg_tf.layers.image_ops import ImagePreprocessing, ResizeToReference
from reseg_tf.layers.renet import ReNetLayer

__all__ = ["ImagePreprocessing", "ReNetLayer", "ResizeToReference"]
