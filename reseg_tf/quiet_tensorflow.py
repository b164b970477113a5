"""Importing TensorFlow without its C++ start-up log lines, for the `reseg` command.

TensorFlow's native libraries log through absl before absl's logging is initialised, and those
lines reach stderr whatever `TF_CPP_MIN_LOG_LEVEL` says ("WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR", then oneDNN and CUDA notices), ahead
of a command's own output. `import_tensorflow_quietly` holds stderr back at the file-descriptor
level while TensorFlow loads and passes on every line that is not such a log line (Python
warnings, tracebacks), and sets `TF_CPP_MIN_LOG_LEVEL=3` for the C++ logs that come later
(TensorFlow's errors reach Python as exceptions). A user who has set `TF_CPP_MIN_LOG_LEVEL`
chooses what to see: nothing is then held back or changed.
"""
import os
import re
import sys
import tempfile

LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"
# absl's notice, and absl / glog log lines: `I0000 00:00:1796683185.773922   10413 port.cc:153] ...`
# (before absl is initialised the clock field holds seconds since the epoch) or
# `W0102 03:04:05.678901 10413 file.cc:12] ...`.
_LOG_LINE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)"
                       r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\]")


def is_log_line(line):
    """True for a line TensorFlow's native logging writes (absl's or glog's format)."""
    return _LOG_LINE.match(line) is not None


def import_tensorflow_quietly():
    """Imports TensorFlow (once), without its log lines unless `TF_CPP_MIN_LOG_LEVEL` is set."""
    if "tensorflow" in sys.modules:
        return
    if LEVEL_VARIABLE in os.environ:
        import tensorflow  # noqa: F401  (the user's level: everything TensorFlow writes is shown)
        return
    os.environ[LEVEL_VARIABLE] = QUIET_LEVEL
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hold back
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not is_log_line(line)))
            sys.stderr.flush()
