"""Averaged inference: test-time flip augmentation and sub-model averaging (Monte Carlo dropout).

Both average class probabilities of several passes of one model over one image:

- `tta="flip"`: the image and its horizontal mirror (whose answer is mirrored back).
- `mc_samples=N`: N sub-networks of a model trained with dropout, i.e. the model with N
  different dropout masks (Gal & Ghahramani's Monte Carlo dropout; the "sub-model averaging" of
  Bayesian SegNet that the ReSeg paper leaves as an open question). Batch norm and every other
  layer stay in inference mode.

The N masks are drawn from a stateless generator seeded by `seed` and the layer's position, and
one mask is shared by every image of a batch: the N sub-networks are a fixed, reproducible
ensemble, so an image gets the same answer alone or in any batch, and every run of
`reseg evaluate --mc-samples N` gives the same figures.

Cost: the layers before the first dropout layer run once per image (twice with flip); the
batch is tiled N times there, so the rest runs as one batched call instead of N separate ones.
With dropout after every ReNet layer that is the front end and the first ReNet layer; with
dropout after the last one only (`ReSegConfig(dropout=(0.0, rate))`, the
`camvid_scratch_dropout_last` preset), only the upsampling and the classifier run N times.
"""
import keras
import tensorflow as tf

from reseg_tf.layers import ResizeToReference
from reseg_tf.options import TTA_MODES


def dropout_layers(model):
    """The model's dropout layers, in order."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout) and layer.rate > 0]


def check_averaging(model, tta=None, mc_samples=0):
    """Validated `(tta, mc_samples)`; ValueError naming the option and what is wrong."""
    tta = "none" if tta in (None, "", False) else tta
    if tta not in TTA_MODES:
        raise ValueError(f"--tta must be one of {', '.join(TTA_MODES)}, got {tta!r}.")
    if mc_samples is None:
        mc_samples = 0
    if isinstance(mc_samples, bool) or not isinstance(mc_samples, int) or mc_samples < 0:
        raise ValueError(f"--mc-samples must be a whole number >= 0, got {mc_samples!r}.")
    if mc_samples and not dropout_layers(model):
        raise ValueError(
            f"--mc-samples {mc_samples}: model {model.name!r} has no dropout layer (its config has "
            "dropout=0 and classifier_dropout=0), so all its sub-networks are the same network; "
            "use a model trained with dropout (e.g. the camvid_scratch_dropout or "
            "camvid_scratch_dropout_last preset) or leave "
            "--mc-samples out.")
    return tta, mc_samples


def _dropout(x, rate, samples, seed, position):
    """Dropout with `samples` masks along the leading axis of `x` (samples * batch, ...)."""
    shape = tf.shape(x)
    per_sample = tf.reshape(x, tf.concat([[samples, -1], shape[1:]], axis=0))
    mask_shape = tf.concat([[samples, 1], shape[1:]], axis=0)
    keep = tf.random.stateless_uniform(mask_shape, seed=[seed, position]) >= rate
    scale = tf.cast(keep, x.dtype) * tf.cast(1.0 / (1.0 - rate), x.dtype)
    return tf.reshape(per_sample * scale, shape)


def sampled_probabilities(model, images, mc_samples, seed=0):
    """float32 `(mc_samples, B, H, W, C)`: the probabilities of `mc_samples` sub-networks.

    Runs the layers of the (linear) ReSeg graph in order; the batch is tiled at the first
    dropout layer, so the layers before it run once.
    """
    x, copies = images, 1
    for position, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, ResizeToReference):
            x = layer([x, images])  # only the reference's height and width are read
        elif isinstance(layer, keras.layers.Dropout):
            if layer.rate <= 0:
                continue
            if copies == 1:
                x = tf.tile(x, tf.concat([[mc_samples], tf.ones([tf.rank(x) - 1], tf.int32)], axis=0))
                copies = mc_samples
            x = _dropout(x, layer.rate, copies, seed, position)
        else:
            x = layer(x, training=False)
    x = tf.cast(x, tf.float32)
    return tf.reshape(x, tf.concat([[copies, -1], tf.shape(x)[1:]], axis=0))


def averaged_passes(model, images, tta="none", mc_samples=0, seed=0):
    """float32 `(S, B, H, W, C)`: the probabilities of every pass that is averaged.

    `S` is 1 for a single pass, 2 with flip, N with `mc_samples=N`, 2N with both. `images` are
    float32 `(B, H, W, 3)` at the model's working size.
    """
    batch = tf.concat([images, tf.reverse(images, axis=[2])], axis=0) if tta == "flip" else images
    if mc_samples:
        passes = sampled_probabilities(model, batch, mc_samples, seed)
    else:
        passes = tf.cast(model(batch, training=False), tf.float32)[None]
    if tta == "flip":
        count = tf.shape(images)[0]
        passes = tf.concat([passes[:, :count], tf.reverse(passes[:, count:], axis=[3])], axis=0)
    return passes


def averaged_probabilities(model, images, tta="none", mc_samples=0, seed=0):
    """float32 `(B, H, W, C)`: the mean of `averaged_passes`."""
    if tta == "none" and not mc_samples:
        return tf.cast(model(images, training=False), tf.float32)
    return tf.reduce_mean(averaged_passes(model, images, tta, mc_samples, seed), axis=0)


def entropy(probabilities, axis=-1):
    """Entropy (nats) of class distributions along `axis`."""
    p = tf.cast(probabilities, tf.float32)
    return -tf.reduce_sum(p * tf.math.log(tf.maximum(p, 1e-12)), axis=axis)
