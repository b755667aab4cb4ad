"""The errors a user can act on. The CLI prints any MmdataError as one clear line;
anything else is a bug and keeps its traceback."""

from __future__ import annotations


class MmdataError(Exception):
    """Base of mmdata's user-facing errors."""


class InputFormatError(MmdataError, ValueError):
    """An input file that is not in the format it should be; names the file and record."""


class StorageError(MmdataError, OSError):
    """A read or write that still failed after its retries (an object store that is down
    or refusing, a network filesystem gone away); names the file and the store's error."""
