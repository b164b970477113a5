"""The models shipped under saved_models/ load and answer exactly as when they were written.

`tests/data/shipped_outputs.npz` holds, for every shipped `.keras` file, its probabilities on
a fixed image (every 16th pixel, and the per-class sums over the whole image), computed with
the code that wrote the models. A change of the model code or of its config format that alters
any of them fails here.
"""
from pathlib import Path

import numpy as np
import pytest

from reseg_tf.evaluation import load_reseg_model

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parent / "data" / "shipped_outputs.npz"
SHIPPED = sorted(str(path.relative_to(REPO)) for path in (REPO / "saved_models").rglob("model.keras"))
STEP = 16


def fixed_image(height, width):
    return np.random.default_rng(0).integers(0, 256, size=(1, height, width, 3)).astype("float32")


def reference_outputs(model):
    """`(every 16th pixel's probabilities, per-class sums)` of `model` on `fixed_image`."""
    height, width = model.input_shape[1:3]
    probabilities = model.predict(fixed_image(height or 96, width or 128), verbose=0)[0]
    return probabilities[::STEP, ::STEP], probabilities.sum(axis=(0, 1))


def test_every_shipped_model_has_a_reference():
    stored = np.load(REFERENCE)
    assert SHIPPED and sorted({key.rsplit(":", 1)[0] for key in stored.files}) == SHIPPED


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_model_outputs_are_unchanged(path):
    stored = np.load(REFERENCE)
    pixels, sums = reference_outputs(load_reseg_model(str(REPO / path)))
    # Bit-identical on the machine that wrote the reference; another CPU's kernels may round
    # differently, far below these tolerances.
    np.testing.assert_allclose(pixels, stored[f"{path}:pixels"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(sums, stored[f"{path}:sums"], rtol=1e-5)
