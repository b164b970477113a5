"""The values the package's settings accept: plain data that imports neither TensorFlow nor Keras.

Each list is defined here once. The modules that implement the settings import it from here, and
the `reseg` command's flags take their choices from it, so that `reseg --help` answers without
loading TensorFlow.
"""
# `reseg_tf.training`: optimizer name -> (`keras.optimizers` class name, its arguments).
OPTIMIZERS = {
    # The paper's Adadelta is Lasagne's (lr 1.0, rho 0.95, eps 1e-6), not Keras' defaults.
    "adadelta": ("Adadelta", dict(learning_rate=1.0, rho=0.95, epsilon=1e-6)),
    "adam": ("Adam", dict(learning_rate=1e-3)),
    "sgd": ("SGD", dict(learning_rate=1e-2, momentum=0.9)),
    "rmsprop": ("RMSprop", dict(learning_rate=1e-3)),
}
AUGMENT_MODES = ("standard", "flip")
LR_SCHEDULES = ("constant", "cosine")
MIXED_PRECISION_MODES = ("auto", "float16", "bfloat16")
# `reseg_tf.losses.LOSSES` maps each name to its loss class, in this order.
LOSS_NAMES = ("cross_entropy", "focal", "lovasz", "dice")
# `reseg_tf.distribute`: tf.distribute strategies.
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
# `reseg_tf.averaging`: test-time augmentation.
TTA_MODES = ("none", "flip")
# `reseg_tf.export.tflite`: TFLite variants.
TFLITE_VARIANTS = ("fp32", "fp16", "dynamic", "int8")
