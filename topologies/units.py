"""The one unit registry: parse "100Gbps", "25GB/s", "2us", "64MiB", "312TFLOPS" into SI floats.

It lives in the lowest layer (``topologies`` imports nothing of ours, and the
simulator's config may import ``topologies``), so topology files and configs share
one registry. Pint's default registry treats bits and bytes as dimensionless and
reads "Gbps" as gigabaud; ours loads only ``units.txt``, where ``bit`` is the base
unit of an ``[information]`` dimension and ``flop`` of a ``[compute]`` dimension,
so "100GHz" is rejected where a bandwidth belongs.

Nothing past the parsing boundary sees a unit string or a pint object: callers get
plain floats in bytes, seconds, bytes/s, FLOP and FLOP/s.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pint

__all__ = ["KINDS", "UnitError", "parse"]

#: quantity kind -> (pint dimensionality, SI unit we convert to, an example for messages)
KINDS: dict[str, tuple[str, str, str]] = {
    "bandwidth": ("[information] / [time]", "byte / second", '"100Gbps" or "25GB/s"'),
    "duration": ("[time]", "second", '"2us" or "1.5ms"'),
    "bytes": ("[information]", "byte", '"64MiB" or "80GB"'),
    "flops": ("[compute] / [time]", "flop / second", '"312TFLOPS"'),
    "flop": ("[compute]", "flop", '"4.1GFLOP"'),
}


class UnitError(ValueError):
    """A value that is not a quantity of the expected kind.

    ``str(err)`` is the whole message; ``err.expected`` is only the "expected a
    bandwidth like ..." part, for callers that report the offending value themselves.
    """

    def __init__(self, expected: str, value: object, detail: str = ""):
        self.expected = expected + detail
        super().__init__(f"{expected}, got {value!r}{detail}")


@cache
def _registry() -> pint.UnitRegistry:
    return pint.UnitRegistry(str(Path(__file__).with_name("units.txt")))


def parse(value: object, kind: str) -> float:
    """Convert ``value`` to a float in SI units of ``kind`` (see ``KINDS``).

    Numbers are taken as already in SI units (bytes, seconds, bytes/s, FLOP/s).
    Strings are parsed with units; a bare number in a string is SI as well.

    >>> parse("100Gbps", "bandwidth")
    12500000000.0
    >>> parse("64MiB", "bytes")
    67108864.0
    >>> parse("2us", "duration")
    2e-06
    """
    dim, si, example = KINDS[kind]
    expected = f"expected a {kind} like {example}"
    if isinstance(value, bool):
        raise UnitError(expected, value)
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise UnitError(expected, value)
    reg = _registry()
    try:
        q = reg.Quantity(value.strip())
    except Exception:  # pint raises several unrelated types for garbage input
        raise UnitError(expected, value) from None
    if not isinstance(q, pint.Quantity):  # "5" parses to a plain number
        return float(q)
    if q.dimensionless:
        return float(q.magnitude)
    if q.dimensionality != reg.get_dimensionality(dim):
        raise UnitError(expected, value, f" (that is a {q.dimensionality})")
    return float(q.to(si).magnitude)
