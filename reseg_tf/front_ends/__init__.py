"""The registry of front ends: what turns an image into the features the ReNet layers read.

Each front end (a `FrontEnd` in its own module, registered with `register_front_end`) declares
its preprocessing, output stride, output layer and channels, where its weights come from
(`imagenet`, a file, `none`) and whether its layers are frozen by default. The model, the
input stride, training (weights, freezing), feature caching, fine-tuning's layer matching and
the benchmarks ask it; nothing else names a backbone. `list_front_ends()` names them.

Adding one: a module in this package that registers it (it is imported here by itself), and a
preset that uses it (docs/CONVENTIONS.md).
"""
import importlib
import pkgutil

from reseg_tf.front_ends.base import (
    FRONT_ENDS, WEIGHT_SOURCES, FrontEnd, FrontEndWeightsError, describe_front_end, get_front_end,
    list_front_ends, register_front_end,
)

# Every other module of this package defines front ends and registers them on import.
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["FRONT_ENDS", "WEIGHT_SOURCES", "FrontEnd", "FrontEndWeightsError", "describe_front_end",
           "get_front_end", "list_front_ends", "register_front_end"]
