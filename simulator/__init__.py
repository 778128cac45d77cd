"""trainsim's model: config → cluster → SimPy processes → results.

The package namespace is lazy (PEP 562): ``import simulator.collectives`` (which
the Numba kernels do) must not drag in pydantic, SimPy or the engine.
"""

from __future__ import annotations

import importlib

__all__ = ["Result", "collective_time", "collectives", "load_config", "simulate"]

_LAZY = {
    "load_config": "simulator.config",
    "simulate": "simulator.run",
    "collective_time": "simulator.run",
    "Result": "simulator.results",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "collectives":
        return importlib.import_module("simulator.collectives")
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
