"""reseg_tf's Keras classes are registered as soon as Keras is imported, as they were when
`import reseg_tf` imported everything.

`keras.models.load_model` finds a ReSeg model's layers, losses and metrics by their registered
names (`reseg_tf>ReSegModel`, ...), which exist once the modules defining them have run. The
package's names load on first use (`reseg_tf.lazy_exports`), so `import reseg_tf` alone runs
none of them; `register_when_keras_loads` runs them right after Keras itself has loaded (or at
once, when it already has). The `reseg` command's help, which never imports Keras, stays fast.
This module imports nothing of the package before Keras.
"""
import importlib
import importlib.util
import sys

# The modules whose classes carry `keras.saving.register_keras_serializable(package="reseg_tf")`
# (the model imports the layers).
REGISTERING_MODULES = ("reseg_tf.models.reseg", "reseg_tf.losses", "reseg_tf.metrics")


def register_keras_objects():
    for name in REGISTERING_MODULES:
        importlib.import_module(name)


def _package_initializing():
    """Whether a module of the package is part-way through its import (it imported Keras)."""
    return any(name.startswith("reseg_tf.") and getattr(getattr(module, "__spec__", None), "_initializing", False)
               for name, module in list(sys.modules.items()))


class _RegisterWhenImportsSettle:
    """A `sys.meta_path` entry that finds nothing: at the first import asked for once no module of
    the package is part-way through its own import, it registers the classes and leaves."""

    def find_spec(self, fullname, path=None, target=None):
        if not _package_initializing() and self in sys.meta_path:
            sys.meta_path.remove(self)
            register_keras_objects()
        return None


class _RegisterAfterKeras:
    """A `sys.meta_path` finder of `keras` (as the other finders would find it) and its loader
    while it loads: runs `register_keras_objects` once the Keras module has executed; Keras keeps
    its own loader. (Not derived from `importlib.abc`, whose import costs the CLI's help time.)"""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)  # once: the real spec comes from the other finders
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._keras_loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._keras_loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._keras_loader
        self._keras_loader.exec_module(module)
        if _package_initializing():
            # A module of the package imported Keras: the registering modules would import it
            # again half-built. Register once its import (and the others under way) are done.
            sys.meta_path.insert(0, _RegisterWhenImportsSettle())
        else:
            register_keras_objects()


def register_when_keras_loads():
    """Registers reseg_tf's Keras classes now if Keras is loaded, else right after it loads."""
    if "keras" in sys.modules:
        register_keras_objects()
    elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterKeras())
