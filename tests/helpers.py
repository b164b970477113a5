"""Shared test helpers: layer/model serialization and saving round trips, and the tiny model every test builds."""
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


def tiny_config(**changes):
    """A `ReSegConfig` small enough for any test: no front end, one 4-unit ReNet layer on 2x2
    patches, one 2x2 upsampling, classes `a, b, c`; `changes` override any field."""
    from reseg_tf import ReSegConfig

    fields = dict(num_classes=3, class_names=("a", "b", "c"), front_end="none", renet=((4, (2, 2)),),
                  upsampling=((4, (2, 2)),))
    if "num_classes" in changes:
        fields["class_names"] = None  # class_0, class_1, ...
    fields.update(changes)
    return ReSegConfig(**fields)


def tiny_model(input_shape=(None, None, 3), name="tiny", **changes):
    """`build_model(tiny_config(**changes))`."""
    from reseg_tf import build_model

    return build_model(tiny_config(**changes), input_shape=input_shape, name=name)
