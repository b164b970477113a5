"""Progress bars that redraw only on a terminal: logs and CI output get one summary line."""
import sys

import keras


def progress_bar(total, unit_name="step", enabled=True, stream=None):
    """A `keras.utils.Progbar` over `total` units (None if unknown).

    On a terminal it redraws in place; otherwise (a log file, CI) it prints a single line when
    it reaches `total`, so no control characters end up in the output. `enabled=False` is silent.
    """
    stream = stream or sys.stdout
    interactive = hasattr(stream, "isatty") and stream.isatty()
    verbose = (1 if interactive else 2) if enabled else 0
    return keras.utils.Progbar(total, verbose=verbose, unit_name=unit_name)
