"""Public names of a package loaded on first use (PEP 562), so that importing the package, or a
light module of it, does not import TensorFlow and Keras.

A package's `__init__` lists the modules that define its public names, as its imports would,
and sets `__all__, __getattr__, __dir__ = lazy_exports(__name__, {module: (name, ...)})`;
`package.name` and `from package import name` import the module the first time they are asked
for; `package.submodule` imports that submodule, as the eager imports did before. This module
imports nothing of the package.
"""
import importlib
import importlib.util


def lazy_exports(package, modules):
    """`(__all__, __getattr__, __dir__)` of the package called `package`, whose public names are
    defined in `modules` (`{module name: (public name, ...)}`)."""
    home = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name):
        if name in home:
            value = getattr(importlib.import_module(home[name]), name)
        elif not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(importlib.import_module(package), name, value)  # later lookups skip this function
        return value

    def __dir__():
        return sorted(set(vars(importlib.import_module(package))) | set(home))

    return sorted(home), __getattr__, __dir__
