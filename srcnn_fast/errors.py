"""The one exception hierarchy of srcnn-fast.

Every problem a user can cause (a bad file, a bad array, a bad option) raises a subclass of
:class:`SrcnnError` whose message is a single line naming the thing and the problem. The CLI
prints that line and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class SrcnnError(Exception):
    """Base class: a user-facing error with a one-line message."""


class WeightsError(SrcnnError):
    """A weights file (raw or Keras) is missing, unreadable or inconsistent."""


class ImageError(SrcnnError):
    """An input image (file or array) cannot be processed."""


class OutputError(SrcnnError):
    """An output cannot be written (exists, unwritable, would overwrite an input)."""


class BackendError(SrcnnError):
    """A requested inference backend is unknown or unavailable here."""


class DataError(SrcnnError):
    """A training or evaluation data folder is missing or malformed."""


class UsageError(SrcnnError):
    """The arguments contradict each other (several inputs into one -o file): the CLI exits
    2, as for a bad option."""
