"""What a front end declares, and the registry that holds them.

The front-end modules import Keras inside the methods that build layers or load weights, not at
the top: the registry (names, strides, channels, weight sources) then loads without Keras, and
`reseg presets` answers without importing TensorFlow.
"""
import os
import socket

# Where a front end's starting weights can come from.
WEIGHT_SOURCES = ("imagenet", "file", "none")
DOWNLOAD_TIMEOUT_S = 30


class FrontEndWeightsError(ValueError):
    """A front end's pretrained weights cannot be had (no network, or a bad file)."""


class FrontEnd:
    """A front end: the layers between the preprocessed image and the first ReNet layer.

    Subclasses set the class attributes and override the methods whose defaults do not fit.
    `options` is always the dict returned by `options()`: the defaults updated with the
    config's `front_end_options`, validated.

    Attributes:
        name: registry name (`ReSegConfig.front_end`).
        description: one line for `reseg presets` and the docs.
        preprocessing: the `ImagePreprocessing` mode applied to raw 0..255 RGB before it.
        weight_sources: the subset of `WEIGHT_SOURCES` it accepts; `"imagenet"` first when
            training starts from ImageNet weights by default.
        frozen_by_default: whether its layers are kept fixed unless the config says otherwise.
        weights_flag: the `reseg train` flag its users give weights with.
        option_defaults: its options and their defaults.
    """

    name = None
    description = ""
    preprocessing = "unit"
    weight_sources = ("none",)
    frozen_by_default = False
    weights_flag = "--front-end-weights"
    option_defaults = {}

    def options(self, given=None):
        """The defaults updated with `given`, validated (ValueError naming a bad one)."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            known = ", ".join(sorted(self.option_defaults)) or "none"
            raise ValueError(f"front end {self.name!r} has no option {unknown}; its options: {known}.")
        options = {**self.option_defaults, **given}
        options = {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}
        self.check_options(options)
        return options

    def check_options(self, options):
        """Raises ValueError for a bad option value."""

    @property
    def default_weights(self):
        """`"imagenet"` where training starts from ImageNet weights unless told otherwise, else None."""
        return "imagenet" if self.weight_sources[0] == "imagenet" else None

    def output_stride(self, options):
        """Downsampling from the image to its features, per axis."""
        return 1

    def output_channels(self, options):
        return 3

    def output_layer(self, options):
        """Name of the layer whose output is its features (what feature caching keeps)."""
        return "preprocess"

    def layer_names(self, options):
        """Names of its layers with weights in a ReSeg model (frozen, matched, cached)."""
        return ()

    def build(self, x, options, trainable, regularizer):
        """Adds its layers after the preprocessed image tensor `x`; returns the features."""
        return x

    def imagenet_weights_file(self, options):
        """`(file name, URL, md5)` of the Keras weights file ImageNet weights come from."""
        raise NotImplementedError

    def fetch_weights(self, weights, options):
        """The local file to load for `weights` (`"imagenet"`, a path, `"none"`/None -> None)."""
        if weights is None or weights == "none":
            return None
        if weights == "imagenet":
            if "imagenet" not in self.weight_sources:
                raise ValueError(f"front end {self.name!r} has no ImageNet weights.")
            return self._download(*self.imagenet_weights_file(options))
        if "file" not in self.weight_sources:
            raise ValueError(f"front end {self.name!r} takes no weights file (it trains from scratch).")
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise ValueError(
                f"weights file {path!r} of front end {self.name!r} does not exist (or is not a file); "
                "pass 'imagenet', 'none', or the path of a local copy of the Keras weights file.")
        return path

    def load_weights(self, model, path, options):
        """Copies the weights of file `path` into `model`'s front-end layers."""
        raise NotImplementedError

    def _download(self, file_name, url, md5):
        import keras

        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a network that drops packets fails, not hangs
        try:
            return keras.utils.get_file(file_name, url, cache_subdir="models", file_hash=md5)
        except Exception as error:  # Keras wraps every network and file failure in a bare Exception.
            reason = " ".join(str(error).split(" -- ")[-1].split())  # Keras' text repeats the URL first
            flag, keyword = self.weights_flag, self.weights_flag.lstrip("-").replace("-", "_")
            raise FrontEndWeightsError(
                f"the ImageNet weights of the {self.name} front end could not be downloaded ({reason}). "
                f"Either give a local copy of the Keras weights file ({file_name}, from {url}) with "
                f"{flag} FILE, or train the front end from random weights with {flag} none (in Python: "
                f"{keyword}=FILE or {keyword}=\"none\")."
            ) from None
        finally:
            socket.setdefaulttimeout(previous)


FRONT_ENDS = {}


def register_front_end(front_end):
    """Adds a `FrontEnd` instance to the registry under its `name`; returns it."""
    if not front_end.name or front_end.name in FRONT_ENDS:
        raise ValueError(f"a front end needs a new name, got {front_end.name!r}.")
    if front_end.weight_sources[0] not in WEIGHT_SOURCES or not set(front_end.weight_sources) <= set(WEIGHT_SOURCES):
        raise ValueError(f"front end {front_end.name!r}: weight_sources must come from {WEIGHT_SOURCES}.")
    FRONT_ENDS[front_end.name] = front_end
    return front_end


def get_front_end(name):
    if name not in FRONT_ENDS:
        raise ValueError(f"unknown front end {name!r}; registered front ends: {', '.join(list_front_ends())}.")
    return FRONT_ENDS[name]


def list_front_ends():
    """Names of the registered front ends."""
    return sorted(FRONT_ENDS)


def describe_front_end(name, options=None, frozen=None):
    """One line: name, stride, channels, weights and whether it is trained."""
    front_end = get_front_end(name)
    options = front_end.options(options)
    frozen = front_end.frozen_by_default if frozen is None else frozen
    shown = ", ".join(f"{key}={'x'.join(map(str, value)) if isinstance(value, tuple) else value}"
                      for key, value in options.items())
    weights = {"imagenet": "ImageNet weights", None: "random weights"}[front_end.default_weights]
    layers = "no layers" if not front_end.layer_names(options) else ("frozen" if frozen else "trained")
    return (f"{name}{f' ({shown})' if shown else ''}: stride {front_end.output_stride(options)}, "
            f"{front_end.output_channels(options)} channels, {weights}, {layers}")
