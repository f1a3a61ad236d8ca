"""The exception a user's own mistake raises, at the bottom of the layers so every module can
use it.

The command line prints a :class:`UserError` as one line and exits with status 2; any other
exception is a bug and keeps its traceback. Subclasses say where the mistake was made
(:class:`ConfigError` for a config key, :class:`DiskFullError` for a full disk,
:class:`DataProblems` for the problems a data check listed: exit status 1;
``CheckpointError``, ``DatasetError`` and ``PolicyMismatchError`` live next to the code that
raises them). Ctrl-C ends a command with :class:`Interrupted`: one line, exit status 130.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something the user gave (a value, a file, a folder) does not fit; the message names it.

    A ``ValueError`` so that code catching bad values keeps working.
    """


class ConfigError(UserError):
    """A config value that does not fit; the message names the key."""


class DataProblems(UserError):
    """``data check`` (or ``check-lerobot``) found problems, already printed one per line; the
    command line exits with status 1."""


class DiskFullError(UserError):
    """A write failed for lack of space (``ENOSPC``, or ``EDQUOT``: a quota used up); the
    message names the file being written and what is kept on disk.

    Attributes:
        path: the file that was being written, where known (not kept across processes).
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (``SIGINT``) stopped a command; the message says what it recorded before.

    A ``KeyboardInterrupt``, so that code that lets Ctrl-C through keeps doing so. The command
    line prints ``vw-robot <command>: interrupted; <message>`` and exits with status 130.
    """
