"""A real learning problem trained inside the simulation: statistical efficiency next to hardware efficiency.

The timing of an iteration comes from the big model (``workload.model``); *what
the parameters become* comes from a small problem solved for real, in numpy, on
a synthetic data set drawn from the config seed:

- ``logistic_regression``: binary labels from a random hyperplane, ``label_noise``
  of them flipped (so the loss has a floor);
- ``softmax``: ``classes`` Gaussian clusters, a linear softmax classifier;
- ``mlp``: the same clusters, one hidden tanh layer of ``hidden`` units.

Every worker computes its gradient on its own mini-batch against the parameters
it actually read at that simulated moment; the engine applies updates in
simulated-time order. Data order is fixed by the seed: worker ``r``'s ``i``-th
mini-batch is global batch ``i·p + r`` of a per-epoch permutation, so BSP with p
workers of batch b sees exactly the data of sequential SGD with batch p·b.

Streams: ``"sgd.data"`` (the data set), ``("sgd.order", epoch)``, ``"sgd.init"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.config.models import Convergence
from simulator.rng import Streams

__all__ = ["LossPoint", "Problem", "make_problem"]


@dataclass(frozen=True, slots=True)
class LossPoint:
    time_s: float        # simulated time of the evaluation
    updates: int         # model updates applied so far (BSP: steps; ASP/SSP: pushes)
    gradients: int       # worker gradients applied so far (samples seen = gradients × batch)
    loss: float
    accuracy: float


@dataclass
class Problem:
    """A data set, a model (flat parameter vector) and its loss and gradient."""

    kind: str
    x: np.ndarray
    y: np.ndarray
    shapes: list[tuple[int, ...]]
    params0: np.ndarray
    batch: int
    workers: int
    _streams: Streams = field(repr=False, default=None)  # type: ignore[assignment]
    _orders: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def samples(self) -> int:
        return len(self.y)

    def batch_indices(self, global_batch: int, size: int | None = None) -> np.ndarray:
        """Sample indices of global mini-batch number ``global_batch`` (of ``size`` samples)."""
        size = size or self.batch
        pos = np.arange(global_batch * size, (global_batch + 1) * size)
        epochs, offsets = np.divmod(pos, self.samples)
        out = np.empty(size, dtype=np.int64)
        for e in np.unique(epochs).tolist():
            sel = epochs == e
            out[sel] = self._order(e)[offsets[sel]]
        return out

    def _order(self, epoch: int) -> np.ndarray:
        order = self._orders.get(epoch)
        if order is None:
            if len(self._orders) > 4:
                self._orders.pop(min(self._orders))
            order = self._orders[epoch] = self._streams.get("sgd.order", epoch).permutation(self.samples)
        return order

    # -- the model -----------------------------------------------------------------------
    def _unpack(self, params: np.ndarray) -> list[np.ndarray]:
        out, at = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(params[at:at + n].reshape(shape))
            at += n
        return out

    def _logits(self, params: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        p = self._unpack(params)
        if self.kind == "mlp":
            h = np.tanh(x @ p[0] + p[1])
            return h @ p[2] + p[3], h
        return x @ p[0] + p[1], None

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        if self.kind == "logistic_regression":
            return 1.0 / (1.0 + np.exp(-logits))
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def gradient(self, params: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Mean gradient of the loss over samples ``idx``, as a flat vector like ``params``."""
        x, y = self.x[idx], self.y[idx]
        logits, hidden = self._logits(params, x)
        prob = self._probabilities(logits)
        if self.kind == "logistic_regression":
            delta = (prob - y) / len(y)
            return np.concatenate([x.T @ delta, [delta.sum()]])
        delta = prob
        delta[np.arange(len(y)), y] -= 1.0
        delta /= len(y)
        if self.kind == "softmax":
            return np.concatenate([(x.T @ delta).ravel(), delta.sum(axis=0)])
        w2 = self._unpack(params)[2]
        back = (delta @ w2.T) * (1.0 - hidden**2)
        return np.concatenate([(x.T @ back).ravel(), back.sum(axis=0), (hidden.T @ delta).ravel(), delta.sum(axis=0)])

    def evaluate(self, params: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy) over the whole data set."""
        logits, _ = self._logits(params, self.x)
        if self.kind == "logistic_regression":
            # log(1 + e^z) - y z, computed stably
            loss = np.logaddexp(0.0, logits) - self.y * logits
            return float(loss.mean()), float(((logits > 0) == (self.y > 0.5)).mean())
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -logp[np.arange(len(self.y)), self.y]
        return float(loss.mean()), float((logits.argmax(axis=1) == self.y).mean())


def make_problem(spec: Convergence, streams: Streams, workers: int, batch: int) -> Problem:
    """Draw the data set and the initial parameters for ``spec`` from the config's streams."""
    rng = streams.get("sgd.data")
    n, d, k = spec.samples, spec.features, spec.classes
    if spec.problem == "logistic_regression":
        truth = rng.normal(0.0, 2.0 / np.sqrt(d), size=d)
        x = rng.normal(size=(n, d))
        y = (x @ truth > 0).astype(float)
        flip = rng.random(n) < spec.label_noise
        y[flip] = 1.0 - y[flip]
        shapes: list[tuple[int, ...]] = [(d,), ()]
    else:
        centres = rng.normal(0.0, 1.5 / np.sqrt(d) * np.sqrt(k), size=(k, d))
        y = rng.integers(0, k, size=n)
        x = centres[y] + rng.normal(size=(n, d))
        flip = rng.random(n) < spec.label_noise
        y[flip] = rng.integers(0, k, size=int(flip.sum()))
        shapes = [(d, k), (k,)] if spec.problem == "softmax" else [(d, spec.hidden), (spec.hidden,),
                                                                      (spec.hidden, k), (k,)]
    init = streams.get("sgd.init")
    parts = []
    for shape in shapes:
        fan_in = shape[0] if len(shape) == 2 else 1
        scale = 1.0 / np.sqrt(fan_in) if len(shape) == 2 and spec.problem == "mlp" else 0.0
        parts.append((init.normal(size=shape) * scale).ravel())
    return Problem(spec.problem, x, y, shapes, np.concatenate(parts), batch, workers, streams)
