"""Turn validation failures into the one located line users see (exit status 2)."""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["ConfigError", "TrainsimInputError", "describe"]


class TrainsimInputError(Exception):
    """Bad user input (config, CLI argument, topology or measurement file).

    The CLI prints ``str(err)`` as one line and exits with status 2; anything else
    that escapes is a bug and keeps its traceback.
    """


class ConfigError(TrainsimInputError, ValueError):
    """A config that does not validate; the message names the key and what was expected."""


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(err: ValidationError, source: str) -> str:
    """One line for the first error: ``source: dotted.path: message (got value)``."""
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "(top level)"
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        msg = "unknown key (check the spelling; see docs/config.md)"
    whole_section = isinstance(e.get("input"), dict)  # a cross-key check: the message names the keys
    got = "" if e["type"] == "missing" or whole_section else f" (got {_short(e.get('input'))})"
    if not e["loc"]:  # a check across sections words its message as "key: what was expected"
        return f"{source}: {msg}{got}"
    return f"{source}: {where}: {msg}{got}"
