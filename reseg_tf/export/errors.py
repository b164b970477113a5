"""Errors of `reseg_tf.export`, and the one-line form of a failed TF subprocess's stderr."""
import re


class ExportVerificationError(ValueError):
    """An exported artifact does not answer like `reseg predict` within the documented bounds."""


class TFLiteConversionError(RuntimeError):
    """The TFLite converter failed or crashed."""


def clean_stderr(text, last_lines=6):
    """The last lines of a TF subprocess's stderr without its start-up log noise, on one line."""
    noise = re.compile(r"^(W|I|E)0000 |^WARNING: All log|^To enable the following")
    lines = [line for line in text.strip().splitlines() if not noise.match(line)]
    return " | ".join(lines[-last_lines:])[-600:]
