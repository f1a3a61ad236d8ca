"""The exception a user's own mistake raises, at the bottom of the layers so every module can
use it.

The command line prints a :class:`UserError` as one line and exits with status 2; any other
exception is a bug and keeps its traceback. Subclasses say where the mistake was made
(:class:`ConfigError` for a config key; ``CheckpointError``, ``DatasetError`` and
``PolicyMismatchError`` live next to the code that raises them).
"""

from __future__ import annotations


class UserError(ValueError):
    """Something the user gave (a value, a file, a folder) does not fit; the message names it.

    A ``ValueError`` so that code catching bad values keeps working.
    """


class ConfigError(UserError):
    """A config value that does not fit; the message names the key."""
