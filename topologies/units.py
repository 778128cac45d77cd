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

import math
import re
import sys
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pint


def _import_pint():  # noqa: ANN202 - returns the module
    """``import pint`` without its dask integration.

    ``pint.compat`` imports ``dask.base`` whenever dask is installed (it is, for sweeps), which is a
    quarter of a second of every start-up for a feature we never use (quantities wrapping dask
    arrays). With ``sys.modules["dask"] = None`` for the length of the import, ``find_spec("dask")``
    answers None and pint skips it; a process that has imported dask already keeps pint's dask support.
    """
    if "pint" in sys.modules or "dask" in sys.modules:
        import pint
        return pint
    sys.modules["dask"] = None  # type: ignore[assignment]
    try:
        import pint
    finally:
        if "dask" in sys.modules and sys.modules["dask"] is None:
            del sys.modules["dask"]
    return pint


__all__ = ["BOUNDS", "KINDS", "UnitError", "parse"]

#: quantity kind -> the SI range a value may take (what the models are meant for; outside it, results
#: overflow or mean nothing): ~31 years, 1 B/s to 1 EB/s, 1 EiB, 1 to 10^21 FLOP/s, 10^21 FLOP
BOUNDS: dict[str, tuple[float, float]] = {
    "bandwidth": (1.0, 1e18), "duration": (0.0, 1e9), "bytes": (0.0, 2.0**60),
    "flops": (1.0, 1e21), "flop": (0.0, 1e21),
}

# a number, then a unit made of letters, "/", "·" and spaces (no operators pint would evaluate: "9**9**9 B")
_QUANTITY = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*[A-Za-zµμ/·\s]*$")

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
        super().__init__(f"{expected}, got {_repr(value)}{detail}")


def _repr(value: object) -> str:
    """A value as typed, bounded (a YAML alias bomb must not be expanded to print it)."""
    import reprlib

    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlevel = 60, 60, 3
    return r.repr(value)


@cache
def _registry() -> pint.UnitRegistry:
    """The registry, made on first use (importing pint and reading ``units.txt`` is most of a start-up's
    unit cost, and the common spellings never need it: see ``_plain``)."""
    return _import_pint().UnitRegistry(str(Path(__file__).with_name("units.txt")))


# The spellings nearly every config uses ("100Gbps", "25 GB/s", "2us", "64MiB", "312TFLOPS") are converted
# without pint, to the float pint gives: pint reads such a quantity as the number times one unit and
# converts it with one multiplication by the unit's factor, which here is a prefix times 1 or 1/8 (bits per
# byte) — exact in binary, so ``float(number) * factor`` is pint's result to the bit. An integer of more than
# 15 digits (which pint keeps exact before the multiplication), a leading zero (pint's tokenizer refuses
# "0100"), any other unit or form goes to pint. tests/topologies/test_units.py checks every unit here
# against pint's own conversion, for many numbers.
_DECIMAL = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
_SUBSECOND = {"": 1, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9, "p": 1e-12}


def _plain_units() -> dict[str, dict[str, float]]:
    """kind -> {unit as typed (no spaces around "/"): factor to the kind's SI unit}."""
    table: dict[str, dict[str, float]] = {kind: {} for kind in KINDS}
    for prefix, x in {**_DECIMAL, **_BINARY}.items():
        table["bytes"].update({prefix + "B": x, prefix + "b": x / 8})
        table["bandwidth"].update({prefix + "B/s": x, prefix + "Bps": x, prefix + "b/s": x / 8, prefix + "bps": x / 8})
        table["flops"].update({prefix + u: x for u in ("FLOPS", "FLOP/s", "flops", "flop/s")})
        table["flop"].update({prefix + u: x for u in ("FLOP", "flop")})
    table["duration"].update({prefix + "s": x for prefix, x in _SUBSECOND.items()} | {"min": 60, "h": 3600})
    return table


_PLAIN_UNITS = _plain_units()
_PLAIN = re.compile(r"\s*(?P<number>(?:[1-9]\d*|0)(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
                    r"\s*(?P<unit>[A-Za-zµμ]+(?:\s*/\s*[A-Za-z]+)?)\s*")


def _plain(text: str, kind: str) -> float | None:
    """``text`` in SI units of ``kind`` if it is a number and one of ``_PLAIN_UNITS[kind]``, else None."""
    m = _PLAIN.fullmatch(text)
    if m is None:
        return None
    number, unit = m["number"], m["unit"]
    factor = _PLAIN_UNITS[kind].get(unit.replace(" ", ""))
    if factor is None or (number.isdigit() and len(number) > 15):
        return None
    return float(number) * factor


def parse(value: object, kind: str, *, bare: bool = True) -> float:
    """Convert ``value`` to a finite float in SI units of ``kind`` (see ``KINDS``), within ``BOUNDS``.

    Numbers are taken as already in SI units (bytes, seconds, bytes/s, FLOP/s) when ``bare``
    (the Python API); text a user typed (YAML, a command line: ``bare=False``) needs a unit, since
    ``bandwidth: 100`` would silently mean 100 B/s. 0 may always stay bare. A string that is only a
    number needs a unit too.

    >>> parse("100Gbps", "bandwidth")
    12500000000.0
    >>> parse("64MiB", "bytes")
    67108864.0
    >>> parse("2us", "duration")
    2e-06
    """
    dim, si, example = KINDS[kind]
    noun = {"bytes": "size in bytes", "flops": "FLOP rate", "flop": "FLOP count"}.get(kind, kind)
    expected = f"expected a {noun} like {example}"
    if isinstance(value, bool):
        raise UnitError(expected, value)
    if isinstance(value, int | float):
        if value != 0 and not bare:
            raise UnitError(expected, value, " (a bare number needs a unit; 0 may stay bare)")
        return _bounded(float(value), kind, expected, value)
    if not isinstance(value, str):
        raise UnitError(expected, value)
    if len(value) > 64 or not _QUANTITY.match(value):
        raise UnitError(expected, value)
    plain = _plain(value, kind)
    if plain is not None:
        return _bounded(plain, kind, expected, value)
    reg = _registry()
    try:
        q = reg.Quantity(value.strip())
    except Exception:  # pint raises several unrelated types for garbage input
        raise UnitError(expected, value) from None
    if not isinstance(q, reg.Quantity) or q.dimensionless:  # "5": a number with no unit
        magnitude = float(q.magnitude if isinstance(q, reg.Quantity) else q)
        if magnitude != 0 and not bare:
            raise UnitError(expected, value, " (a bare number needs a unit; 0 may stay bare)")
        return _bounded(magnitude, kind, expected, value)
    if q.dimensionality != reg.get_dimensionality(dim):
        raise UnitError(expected, value, f" (that is a {q.dimensionality})")
    return _bounded(float(q.to(si).magnitude), kind, expected, value)


def _bounded(x: float, kind: str, expected: str, value: object) -> float:
    low, high = BOUNDS[kind]
    if not math.isfinite(x):
        raise UnitError(expected, value, " (not a finite number)")
    if not low <= x <= high:
        unit = {"bandwidth": "B/s", "duration": "s", "bytes": "B", "flops": "FLOP/s", "flop": "FLOP"}[kind]
        raise UnitError(expected, value, f" (must be between {low:g} and {high:g} {unit})")
    return x
