"""Full-int8 TFLite of the VGG preprocessing must stay exact up to quantization.

Regression test: RGB->BGR written as a channel reverse became TFLite's int8 REVERSE_V2, which
returned wrong values (errors up to ~120 on 0..255 inputs) and cut full-int8 argmax agreement of
trained CamVid models to ~50%.
"""
import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from reseg_tf.layers import ImagePreprocessing


def test_vgg_preprocessing_survives_full_int8_conversion(tmp_path):
    inputs = keras.Input((8, 8, 3), batch_size=1)
    # Followed by an identity 1x1 convolution, as the VGG front end follows it in ReSeg.
    identity = keras.layers.Conv2D(3, 1)
    model = keras.Model(inputs, identity(ImagePreprocessing("vgg")(inputs)))
    identity.set_weights([np.eye(3, dtype="float32").reshape(1, 1, 3, 3), np.zeros(3, "float32")])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x), input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    archive.write_out(str(tmp_path / "saved_model"), verbose=False)

    rng = np.random.default_rng(0)
    calibration = rng.uniform(0, 255, (16, 1, 8, 8, 3)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image] for image in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()

    image = rng.uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    interpreter.set_tensor(source["index"], image)
    interpreter.invoke()
    got = interpreter.get_tensor(target["index"])
    expected = keras.ops.convert_to_numpy(model(image))
    output_scale = target["quantization"][0] or 1.0
    assert np.abs(got - expected).max() <= 3 * max(output_scale, 1.0)
    np.testing.assert_allclose(expected[0, 0, 0], image[0, 0, 0, ::-1] - [103.939, 116.779, 123.68], atol=1e-3)
