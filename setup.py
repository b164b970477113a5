"""Installs the `reseg_tf` (model) and `pipelines` (tf.data input) packages and the `reseg` command."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The default model of each dataset is package data (reseg_tf.pretrained loads them by name):
# the `reseg_tf_pretrained` package is the repository's saved_models/ folder, of which only these
# files go into a wheel (variants, fine-tunes and reports stay in the repository).
PRETRAINED_DATASETS = ("camvid", "weizmann_horse", "oxford_flowers17", "camvid_mobile_scratch")
PRETRAINED_FILES = ("model.keras", "metrics.json", "run.json")


def _requirements():
    """The run-time needs: requirements.txt without its comments."""
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


def _version():
    """`__version__` of reseg_tf/__init__.py, read as text (building imports nothing of the package)."""
    text = (HERE / "reseg_tf" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


setup(
    name="reseg_tf",
    version=_version(),
    description="ReSeg (Visin et al. 2016) for TensorFlow/Keras 3: training, evaluation, TF Serving and TFLite export",
    license="Apache-2.0",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["reseg_tf", "reseg_tf.*", "pipelines", "pipelines.*"]) + ["reseg_tf_pretrained"],
    package_dir={"reseg_tf_pretrained": "saved_models"},
    include_package_data=True,
    package_data={
        "pipelines": ["data/**/*"],
        "reseg_tf": ["py.typed"],
        "reseg_tf_pretrained": [f"{d}/{f}" for d in PRETRAINED_DATASETS for f in PRETRAINED_FILES]
        + ["shipped_models_costs.json"],
    },
    install_requires=_requirements(),
    extras_require={
        # the test suite (README's second line, .ci/run)
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",  # a hung test fails with its name instead of stalling the run
            "pytest-xdist>=3.5",  # the suite runs on two worker processes (one test file per worker at a time)
        ],
        # headless execution of examples/colab_quickstart.ipynb (tests/test_notebook.py)
        "notebook": ["nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
        # `reseg export --onnx` (Keras' model.export(format="onnx") uses tf2onnx; verification runs onnxruntime)
        "onnx": ["tf2onnx>=1.17", "onnxruntime>=1.20"],
        # export verification in MediaPipe Tasks' ImageSegmenter. Its wheel depends on
        # opencv-contrib-python, which installs the same `cv2` package as the
        # opencv-python-headless of requirements.txt (a superset of it). pip installs the latest
        # of each, released together, so both wheels write the same `cv2` and `import cv2`
        # works; uninstalling either one removes `cv2` for both.
        "mediapipe": ["mediapipe>=1.2"],
        # `reseg push` and hf://owner/name models (--model, --init-from, load_pretrained): the
        # Hugging Face Hub client, which downloads into its own cache
        "hub": ["huggingface_hub>=0.34"],
        # benchmarks/renet_bench.py's PyTorch peer only (the version its figures were measured
        # with); never needed to run or test the package
        "bench": ["torch==2.13.0"],
    },
    entry_points={"console_scripts": ["reseg=reseg_tf.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
