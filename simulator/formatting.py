"""Numbers as a person reads them: a summary value with its unit (``33.5 ms``, ``25.9 GB``).

Shared by the command line's tables and the HTML report (``simulator/report.py``), so neither
imports the other. The unit comes from the key's suffix (docs/config.md: every summary key is SI).
"""

from __future__ import annotations

from typing import Any

__all__ = ["fmt", "with_unit"]

_SCALED = [(1e-9, "n"), (1e-6, "µ"), (1e-3, "m"), (1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T"),
           (1e15, "P")]


def fmt(value: Any) -> str:
    """A plain value: floats to 6 significant digits, everything else as ``str``."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _si(x: float, unit: str) -> str:
    if x == 0:
        return f"0 {unit}"
    factor, prefix = next(((f, p) for f, p in reversed(_SCALED) if abs(x) >= f), _SCALED[0])
    return f"{x / factor:.4g} {prefix}{unit}"


def with_unit(key: str, value: Any) -> str:
    """A summary value as a person reads it: ``25.9 GB``, ``12.5 GB/s``, ``33.5 ms`` (the key says the unit)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return fmt(value)
    if key.endswith("_ci95"):
        return fmt(value)
    if key.endswith("_samples_per_s"):
        return f"{value:,.0f} samples/s" if abs(value) >= 100 else f"{value:.4g} samples/s"
    if key.endswith(("_per_iteration", "_bytes")) and "bytes" in key:
        return _si(float(value), "B")
    if key.endswith("_s") and not key.endswith("_per_s"):
        return _si(float(value), "s")
    if key.startswith("clock_staleness"):   # iterations behind the slowest replica (docs/config.md, sync modes)
        return f"{value:.4g} iterations"
    if key.startswith("staleness"):         # pushes applied between a replica's read and its push
        return f"{value:.4g} updates"
    return fmt(value)
