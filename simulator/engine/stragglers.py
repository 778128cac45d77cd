"""Per-worker, per-iteration compute slowdowns drawn from named random streams.

A worker's factor for an iteration is ``persistent × noise``: ``persistent`` is
``slowdown`` for the ``slow_fraction`` of workers chosen once (stream
``"stragglers.slow"``), else 1; ``noise`` is drawn per iteration from the
worker's own stream ``("stragglers", rank)``:

- ``lognormal``: exp(N(0, σ²))  (median 1)
- ``normal``: max(0.1, N(1, σ²))
- ``exponential``: 1 + Exp(mean σ)  (a heavy right tail; never faster than nominal)

Device heterogeneity multiplies ``persistent``: a ``fraction`` of the workers (chosen
once, stream ``"stragglers.devices"``) runs on another device, slower or faster by
the ratio of its compute time to the cluster device's (``device_factors``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simulator import compute
from simulator.config.models import Stragglers
from simulator.rng import Streams
from simulator.workloads import Model

if TYPE_CHECKING:
    from simulator.devices import Device

__all__ = ["SlowdownModel", "device_factors"]

_BLOCK = 32    # noise values drawn per call to a rank's generator


def device_factors(spec: Stragglers, model: Model, device: Device, batch: int) -> list[tuple[float, float]]:
    """(fraction of workers, compute-time ratio to ``device``) for each entry of ``heterogeneity``."""
    from simulator.config import ConfigError
    from simulator.resolve import resolve_device  # resolve imports the engine's inputs, not the engine

    def seconds(dev: Device) -> float:
        return compute.forward_backward_time(model, dev, batch)

    nominal = seconds(device)
    out = []
    for i, share in enumerate(spec.heterogeneity):
        try:
            other = resolve_device(share.device, model.precision)
        except ConfigError as e:
            raise ConfigError(str(e).replace("cluster.device", f"stragglers.heterogeneity.{i}.device")) from None
        out.append((share.fraction, seconds(other) / nominal))
    return out


class SlowdownModel:
    def __init__(self, spec: Stragglers, workers: int, streams: Streams,
                 devices: list[tuple[float, float]] | None = None, segment: int = 0):
        self.spec = spec
        self.persistent = np.ones(workers)
        n_slow = int(round(spec.slow_fraction * workers))
        if n_slow:
            slow = streams.get("stragglers.slow").choice(workers, size=n_slow, replace=False)
            self.persistent[np.sort(slow)] = spec.slowdown
        if devices:
            order, at = streams.get("stragglers.devices").permutation(workers), 0
            for fraction, ratio in devices:
                n = int(round(fraction * workers))
                self.persistent[order[at:at + n]] *= ratio
                at += n
        # which devices are slow stays; the noise of each stretch of a job between failures is its own
        per_rank = (lambda r: streams.get("stragglers", r)) if segment == 0 else \
            (lambda r: streams.get("stragglers", r, segment))
        self._noisy = spec.distribution != "none" and spec.sigma > 0
        self._rngs = [per_rank(r) for r in range(workers)] if self._noisy else []
        self._base = self.persistent.tolist()
        # each rank's next noise values, drawn _BLOCK at a time (a generator's draws in one call are the
        # values the same number of single draws give, in order)
        self._drawn: list[list[float]] = [[] for _ in self._rngs]

    @property
    def noisy(self) -> bool:
        return self._noisy

    def factor(self, rank: int) -> float:
        """Slowdown of ``rank``'s next iteration (1.0 = nominal)."""
        if not self._noisy:
            return self._base[rank]
        drawn = self._drawn[rank]
        if not drawn:
            drawn += reversed(self._draw(self._rngs[rank]))
        return self._base[rank] * drawn.pop()

    def _draw(self, rng: np.random.Generator) -> list[float]:
        sigma = self.spec.sigma
        match self.spec.distribution:
            case "lognormal":
                return rng.lognormal(0.0, sigma, size=_BLOCK).tolist()
            case "normal":
                return [max(0.1, x) for x in rng.normal(1.0, sigma, size=_BLOCK).tolist()]
            case _:
                return [1.0 + x for x in rng.exponential(sigma, size=_BLOCK).tolist()]
