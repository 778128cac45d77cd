"""Builder parameters: check shape integers and parse link quantities at the boundary.

Every builder passes its arguments through these helpers first, so a bad value is
reported as ``"<kind>: <parameter>: expected ..., got ..."`` before any node is
made, and nothing past this point sees a unit string.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from .graph import TopologyError
from .units import UnitError, parse

__all__ = ["MAX_DEVICES", "MAX_NODES", "bandwidth", "devices", "duration", "fraction", "integer", "ratio"]

MAX_DEVICES = 2**17        # devices a topology may have here (a 16k-GPU job is 2^14; 2^17 takes minutes)
MAX_NODES = 2**19          # every node (devices, NICs, switches) a built graph may have


def integer(where: str, name: str, value: object, *, minimum: int, even: bool = False) -> int:
    """Return ``value`` as an int >= ``minimum`` (and even if asked), else raise."""
    what = f"an even integer >= {minimum}" if even else f"an integer >= {minimum}"
    ok = isinstance(value, Integral) and not isinstance(value, bool) and value >= minimum
    if not ok or (even and value % 2):
        raise TopologyError(f"{where}: {name}: expected {what}, got {value!r}")
    return int(value)


def devices(where: str, count: int, what: str) -> None:
    """Refuse, before building, a graph of more than ``MAX_DEVICES`` devices (``what`` says how it was counted)."""
    if count > MAX_DEVICES:
        raise TopologyError(f"{where}: {what} = {count:,} devices; at most {MAX_DEVICES:,} (2^17) are built here")


def bandwidth(where: str, name: str, value: object) -> float:
    """Parse a bandwidth (bytes/s, or a string like "100Gbps"); ``units.parse`` bounds it (finite, > 0)."""
    return _quantity(where, name, value, "bandwidth")


def duration(where: str, name: str, value: object) -> float:
    """Parse a latency (seconds, or a string like "2us"); ``units.parse`` bounds it (finite, >= 0)."""
    return _quantity(where, name, value, "duration")


def ratio(where: str, name: str, value: object, *, minimum: float = 1.0) -> float:
    """Return ``value`` as a finite float >= ``minimum`` (an oversubscription ratio)."""
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value >= minimum):
        raise TopologyError(f"{where}: {name}: expected a number >= {minimum:g}, got {value!r}")
    return float(value)


def fraction(where: str, name: str, value: object) -> float | None:
    """``None`` (not given), or ``value`` as a finite float in (0, 1] (an efficiency)."""
    if value is None:
        return None
    ok = isinstance(value, Real) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and 0 < value <= 1):
        raise TopologyError(f"{where}: {name}: expected a number in (0, 1], got {value!r}")
    return float(value)


def _quantity(where: str, name: str, value: object, kind: str) -> float:
    try:
        return parse(value, kind)
    except UnitError as err:
        raise TopologyError(f"{where}: {name}: {err}") from None
