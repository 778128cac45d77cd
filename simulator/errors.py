"""The two exceptions every layer raises for bad input (no imports: the CLI starts without loading anything)."""

from __future__ import annotations

__all__ = ["ConfigError", "TrainsimInputError"]


class TrainsimInputError(Exception):
    """Bad user input (config, CLI argument, topology or measurement file).

    The CLI prints ``str(err)`` as one line and exits with status 2; anything else
    that escapes is a bug and keeps its traceback.
    """


class ConfigError(TrainsimInputError, ValueError):
    """A config that does not validate; the message names the key and what was expected."""
