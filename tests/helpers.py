"""Shared test helpers: layer/model serialization and saving round trips."""
import numpy as np
import keras


def assert_layer_round_trips(layer, inputs, tmp_path, atol=1e-6):
    """Checks get_config/from_config and a `.keras` save/load of `layer` reproduce its outputs."""
    expected = keras.ops.convert_to_numpy(layer(inputs))

    clone = layer.__class__.from_config(layer.get_config())
    clone(inputs)  # builds the variables
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(inputs)), expected, atol=atol)
    assert clone.get_config() == layer.get_config()

    model = keras.Sequential([keras.Input(inputs.shape[1:]), layer])
    path = tmp_path / "layer_model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), expected, atol=atol)
    return expected


def assert_model_round_trips(model, inputs, tmp_path, atol=1e-5):
    """Checks a `.keras` save/load of `model` gives the same class, config and outputs."""
    expected = model.predict(inputs, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored) is type(model)
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), expected, atol=atol)
    return restored
