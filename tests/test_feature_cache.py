import keras
import numpy as np
import pytest
import tensorflow as tf

from reseg_tf import build_model, get_preset
from reseg_tf.training.feature_cache import cache_features, random_flip_features, split_frozen_front_end

SIZE = (32, 24)


def _model(**changes):
    config = get_preset("camvid")[0].replace(
        renet=((4, (1, 1)),), upsampling=((4, (2, 2)), (4, (2, 2))), **changes
    )
    return build_model(config, input_shape=(*SIZE, 3))


def _data(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(batch, *SIZE, 3)).astype("float32")
    masks = rng.integers(0, 12, size=(batch, *SIZE)).astype("int32")  # 11 = void
    weights = rng.uniform(0.5, 2.0, size=(batch, *SIZE)).astype("float32")
    return images, masks, weights


def _loss(probabilities, masks, weights):
    valid = tf.cast(masks < 11, tf.float32)
    labels = tf.minimum(masks, 10)
    per_pixel = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
    return tf.reduce_sum(per_pixel * weights * valid)


def _gradients(fn, inputs, masks, weights, variables):
    with tf.GradientTape() as tape:
        loss = _loss(fn(inputs), masks, weights)
    return [np.asarray(g) for g in tape.gradient(loss, variables)]


def test_head_on_cached_features_has_the_full_models_gradients():
    model = _model()
    front_end, head = split_frozen_front_end(model)
    images, masks, weights = _data()
    dataset = tf.data.Dataset.from_tensor_slices((images, masks, weights)).batch(2)
    cached = cache_features(front_end, dataset, dtype="float32", verbose=0)
    features, cached_masks, cached_weights = (np.stack(t) for t in zip(*cached.as_numpy_iterator()))
    np.testing.assert_array_equal(cached_masks, masks)

    # The head trains exactly the full model's trainable weights (the frozen VGG has none).
    head(features[:1])
    assert {w.path for w in head.trainable_weights} == {w.path for w in model.trainable_weights}
    variables = model.trainable_weights
    expected = _gradients(model, images, masks, weights, variables)
    got = _gradients(head, features, cached_masks, cached_weights, variables)
    for variable, e, g in zip(variables, expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * np.abs(e).max(), err_msg=variable.path)
    np.testing.assert_allclose(head(features), model(images), atol=1e-6)


def test_disk_cache_in_float16_is_reused(tmp_path):
    model = _model()
    front_end, head = split_frozen_front_end(model)
    images, masks, _ = _data(batch=3)
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    path = tmp_path / "train_features"
    cached = list(cache_features(front_end, dataset, path, verbose=0).as_numpy_iterator())
    assert len(cached) == 3 and path.is_dir()
    features = np.stack([f for f, _ in cached])
    assert features.dtype == np.float32 and features.shape == (3, SIZE[0] // 4, SIZE[1] // 4, 256)
    exact = np.asarray(front_end(images))
    np.testing.assert_allclose(features, exact, rtol=2e-3, atol=2e-3 * np.abs(exact).max())
    # An existing cache is read, not recomputed: an empty dataset still gives the 3 examples.
    reused = cache_features(front_end, dataset.take(0), path, verbose=0)
    assert len(list(reused)) == 3
    head.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    labels = reused.map(lambda f, m: (f, tf.minimum(m, 10))).batch(2)
    assert np.isfinite(head.fit(labels, epochs=1, shuffle=False, verbose=0).history["loss"][0])


def test_random_flip_flips_features_and_labels_together():
    features = np.arange(2 * 3 * 4 * 2, dtype="float32").reshape(2, 3, 4, 2)
    masks = np.arange(2 * 3 * 4, dtype="int32").reshape(2, 3, 4)
    flipped = list(random_flip_features(
        tf.data.Dataset.from_tensor_slices((features, masks)).repeat(8), seed=3).as_numpy_iterator())
    outcomes = set()
    for index, (f, m) in enumerate(flipped):
        was_flipped = not np.array_equal(m, masks[index % 2])
        if was_flipped:
            np.testing.assert_array_equal(m, masks[index % 2][:, ::-1])
        np.testing.assert_array_equal(f, features[index % 2][:, ::-1] if was_flipped else features[index % 2])
        outcomes.add(was_flipped)
    assert outcomes == {True, False}


def test_split_refuses_a_trainable_front_end():
    with pytest.raises(ValueError, match="freeze_front_end"):
        split_frozen_front_end(_model(freeze_front_end=False))
