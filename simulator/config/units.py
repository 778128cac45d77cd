"""Pydantic field types that carry units: YAML says "100Gbps", the model holds bytes/s.

The registry itself is ``topologies.units`` (lowest layer, shared with topology
files); this module only wraps it as ``Annotated`` types, so nothing past
``simulator.config`` ever sees a unit string.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field

from topologies.units import UnitError, parse

__all__ = ["Bandwidth", "ByteSize", "Duration", "FlopRate", "FlopCount"]


def _quantity(kind: str, bare: bool = False):
    def convert(value: object) -> float:
        try:
            return parse(value, kind, bare=bare)
        except UnitError as e:  # pydantic turns ValueError into a located error
            raise ValueError(e.expected) from None

    return BeforeValidator(convert)


Bandwidth = Annotated[float, _quantity("bandwidth"), Field(gt=0)]
Duration = Annotated[float, _quantity("duration"), Field(ge=0)]
ByteSize = Annotated[float, _quantity("bytes"), Field(ge=0)]
FlopRate = Annotated[float, _quantity("flops"), Field(gt=0)]
FlopCount = Annotated[float, _quantity("flop", bare=True), Field(ge=0)]   # a count: no unit needed
