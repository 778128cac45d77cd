"""Validation: measure real collectives → calibrate α, β, γ → compare predicted with measured.

Three steps with files between them (DESIGN.md, "Data flow")::

    measure(...)   → Measurements  → measurements.csv + provenance.json
    calibrate(...) → HardwareProfile → profile.yaml      (cluster.profile in a config)
    compare(...)   → Comparison    → comparison.csv + predicted_vs_measured.png

``trainsim validate`` runs all three (:func:`validation.pipeline.validate`);
``trainsim calibrate`` and ``trainsim compare`` run the last two on files. Held-out points
are never fitted and are the only ones MAPE is reported on. See ``docs/validation.md``.

``import validation`` pulls in neither numba nor matplotlib: only ``measure`` imports
``kernels`` (when called) and only plotting imports matplotlib. The three functions share
their modules' names, so the package binds the *functions*; import helpers with
``from validation.calibrate import fit``.
"""

from __future__ import annotations

from .calibrate import calibrate
from .compare import compare
from .measure import measure

__all__ = ["calibrate", "compare", "measure"]
