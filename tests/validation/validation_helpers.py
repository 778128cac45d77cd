"""Synthetic measurements from known α, β, γ (plus seeded noise): the truth calibration must recover."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator.sizes import parse_sizes
from validation.calibrate import features
from validation.records import Measurement, Measurements

Regimes = Sequence[tuple[float, tuple[float, float, float]]]  # (sizes below this bound, (α, β, γ))

ONE = [(np.inf, (5e-6, 2e-10, 1e-10))]
#: eager below 256 KiB (small α, slow copies), rendezvous above (bigger α, faster per byte)
TWO = [(256 * 1024, (3e-6, 4e-10, 1e-10)), (np.inf, (20e-6, 2e-10, 3e-10))]


def synthetic(regimes: Regimes = ONE, *, algorithms: Sequence[str] = ("ring", "recursive_doubling"),
              ranks: Sequence[int] = (2, 4, 8), sizes: str = "4KiB..64MiB:x2", noise: float = 0.01,
              repeats: int = 5, seed: int = 1) -> Measurements:
    """Repetitions of t = α·steps + β·moved + γ·reduced, times lognormal noise of ``noise`` (relative)."""
    rng = np.random.default_rng(seed)
    rows = []
    for alg in algorithms:
        for p in ranks:
            for n in parse_sizes(sizes):
                alpha, beta, gamma = next(c for bound, c in regimes if n < bound)
                steps, moved, reduced = features(alg, p, n)[:3]
                t = alpha * steps + beta * moved + gamma * reduced
                jitter = np.exp(rng.normal(0, noise, repeats))
                rows += [Measurement("cpu", alg, "allreduce", p, n, "float32", i, t * float(jitter[i]))
                         for i in range(repeats)]
    return Measurements(rows, {"synthetic": True})
