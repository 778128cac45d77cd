"""The size/rank vocabulary shared by ``trainsim collective`` and ``trainsim validate``.

nccl-tests style: ``64MiB``, ``4KiB,1MiB``, ``8B..1GiB:x4`` (geometric, factor 4),
``1KiB..8KiB:+1KiB`` (arithmetic); ranks ``2,4,8`` or ``2..16:x2``.
"""

from __future__ import annotations

import math
import re

from topologies.units import UnitError, parse

from .errors import TrainsimInputError

__all__ = ["parse_ranks", "parse_sizes"]

_RANGE = re.compile(r"^(?P<lo>[^.]+)\.\.(?P<hi>[^:]+)(?::(?P<op>[x+*])(?P<step>.+))?$")
MAX_VALUES = 1000          # values one --sizes or --ranks may expand to
MAX_RANKS = 2**20          # ranks a collective may have here
MAX_SIZE = 2**40           # bytes of one rank's buffer (1 TiB)


def _expand(text: str, convert, what: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _RANGE.match(part)
        if not m:
            out.append(convert(part))
            continue
        lo, hi = convert(m["lo"]), convert(m["hi"])
        op, step = m["op"] or "x", m["step"] or "2"
        if lo > hi:
            raise TrainsimInputError(f"{what} {part!r}: the range is empty ({lo} > {hi})")
        if op in "x*":
            try:
                factor = float(step)
            except ValueError:
                raise TrainsimInputError(f"{what} {part!r}: the factor after 'x' must be a number > 1") from None
            if not (math.isfinite(factor) and factor > 1):
                raise TrainsimInputError(f"{what} {part!r}: the factor after 'x' must be a finite number > 1")
            count = 1 + math.log(hi / max(lo, 1), factor) if hi > 0 else 1
        else:
            inc = convert(step)
            if inc <= 0:
                raise TrainsimInputError(f"{what} {part!r}: the step after '+' must be positive")
            count = (hi - lo) // inc + 1
        if len(out) + count > MAX_VALUES:
            raise TrainsimInputError(f"{what} {part!r}: expands to more than {MAX_VALUES} values")
        if op in "x*":
            v = lo
            while v <= hi:
                out.append(int(v))
                v = max(v + 1, int(round(v * factor)))
        else:
            out.extend(range(lo, hi + 1, inc))
    if not out:
        raise TrainsimInputError(f"{what}: expected at least one value, got {text!r}")
    return out


def _size(text: str) -> int:
    try:
        value = parse(text, "bytes")
    except UnitError as e:
        raise TrainsimInputError(f"--sizes: {e}") from None
    if value < 0 or value != int(value):
        raise TrainsimInputError(f"--sizes: expected a whole number of bytes, got {text!r}")
    if value > MAX_SIZE:
        raise TrainsimInputError(f"--sizes: {text} is more than {MAX_SIZE} bytes (1 TiB) per rank")
    return int(value)


def _rank(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TrainsimInputError(f"--ranks: expected whole numbers like 2,4,8 or 2..64:x2, got {text!r}") from None
    if value < 1:
        raise TrainsimInputError(f"--ranks: expected at least 1 rank, got {value}")
    if value > MAX_RANKS:
        raise TrainsimInputError(f"--ranks: {value} ranks; at most {MAX_RANKS:,} here")
    return value


def parse_sizes(text: str) -> list[int]:
    """>>> parse_sizes("1KiB..8KiB:x2")
    [1024, 2048, 4096, 8192]
    """
    return _expand(text, _size, "--sizes")


def parse_ranks(text: str) -> list[int]:
    """>>> parse_ranks("2..16:x2")
    [2, 4, 8, 16]
    """
    return _expand(text, _rank, "--ranks")


def parse_cache_size(text: str) -> tuple[str, int]:
    """``LEVEL=SIZE`` (``--cache-size``), e.g. ``L3=16MiB`` -> ``("L3", 16777216)``.

    >>> parse_cache_size("L3=16MiB")
    ('L3', 16777216)
    """
    level, sep, size = text.partition("=")
    if not sep or not level.strip() or not size.strip():
        raise TrainsimInputError(f"--cache-size: expected LEVEL=SIZE like L3=16MiB, got {text!r}")
    try:
        value = parse(size.strip(), "bytes")
    except UnitError as e:
        raise TrainsimInputError(f"--cache-size: {e}") from None
    if value < 1 or value != int(value) or value > MAX_SIZE:
        raise TrainsimInputError(f"--cache-size: expected a whole number of bytes from 1 to 1 TiB, got {size!r}")
    return level.strip(), int(value)
