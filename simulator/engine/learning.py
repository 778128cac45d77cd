"""The global model of the convergence problem, read and updated at simulated moments.

``Learner`` holds the parameters the servers (or the allreduce) hold. A worker
``read``s a copy when its pull happens, computes its gradient on its own
mini-batch against that copy, and the engine applies it shard by shard when the
server does (``apply_shard``), so updates land in simulated-time order. The loss
over the whole data set is evaluated every ``eval_every`` iterations' worth of
gradients and at the end.

``UpdateLog`` records, for every parameter-server push, its staleness: the
updates its shards received between the worker's pull and the push being
applied (max over shards), and its clock staleness (the worker's clock minus the
slowest worker's clock when it read; ≤ s under SSP).
"""

from __future__ import annotations

import numpy as np
import simpy

from simulator.convergence import LossPoint, Problem

__all__ = ["Learner", "UpdateLog"]


class Learner:
    def __init__(self, env: simpy.Environment, problem: Problem, lr: float, shards: int,
                 eval_every: int, target_loss: float | None):
        self.env, self.problem, self.lr = env, problem, lr
        self.params = problem.params0.copy()
        self.slices = [s for s in np.array_split(np.arange(len(self.params)), shards)]
        self.eval_every_gradients = eval_every * problem.workers
        self.target_loss = target_loss
        self.updates = 0           # model updates (a BSP step, or one asynchronous push)
        self.gradients = 0         # worker gradients applied
        self.curve: list[LossPoint] = []
        self._next_eval = 0
        self.evaluate()

    def read(self) -> np.ndarray:
        return self.params.copy()

    def gradient(self, params: np.ndarray, rank: int, iteration: int) -> np.ndarray:
        return self.problem.gradient(params, self.problem.worker_batch(rank, iteration))

    def apply_shard(self, shard: int, grad: np.ndarray, scale: float) -> None:
        sl = self.slices[shard]
        self.params[sl] -= self.lr * scale * grad[sl]

    def apply_mean(self, grads: list[np.ndarray]) -> None:
        """One synchronous step: the mean of every worker's gradient (an allreduce)."""
        self.params -= self.lr * np.mean(grads, axis=0)
        self.counted(updates=1, gradients=len(grads))

    def counted(self, updates: int, gradients: int) -> None:
        self.updates += updates
        self.gradients += gradients
        if self.gradients >= self._next_eval:
            self.evaluate()

    def evaluate(self) -> None:
        loss, acc = self.problem.evaluate(self.params)
        self.curve.append(LossPoint(float(self.env.now), self.updates, self.gradients, loss, acc))
        self._next_eval = self.gradients + self.eval_every_gradients

    def finish(self) -> None:
        if not self.curve or self.curve[-1].gradients != self.gradients:
            self.evaluate()

    def summary(self) -> dict[str, float | int | None]:
        hit = next((p for p in self.curve if self.target_loss is not None and p.loss <= self.target_loss), None)
        last = self.curve[-1]
        return {"final_loss": last.loss, "final_accuracy": last.accuracy,
                "time_to_target_s": None if hit is None else float(hit.time_s),
                "updates_to_target": None if hit is None else hit.updates,
                "gradients_to_target": None if hit is None else hit.gradients}


class UpdateLog:
    """Staleness of every applied push, and (with a learner) the gradients behind them."""

    def __init__(self, workers: int, shards: int, protocol, learner: Learner | None):
        self.protocol, self.learner = protocol, learner
        self.read_versions = np.zeros((workers, shards), dtype=np.int64)
        self.read_slowest = np.zeros(workers, dtype=np.int64)
        self.grads: list[np.ndarray | None] = [None] * workers
        self._worst = np.zeros(workers, dtype=np.int64)
        self.staleness: list[int] = []
        self.clock_staleness: list[int] = []

    def read(self, rank: int, versions: np.ndarray, clock: int) -> np.ndarray | None:
        self.read_versions[rank] = versions
        self.read_slowest[rank] = int(self.protocol.applied_clock.min())
        return self.learner.read() if self.learner is not None else None

    def pushed(self, rank: int, grad: np.ndarray | None) -> None:
        self.grads[rank] = grad

    def queued(self, rank: int, versions_before: np.ndarray) -> None:
        """``rank``'s push is queued; each shard will apply it at version ``versions_before[j]``."""
        self._worst[rank] = int((versions_before - self.read_versions[rank]).max())

    def shard_applied(self, shard: int, rank: int, tag: int) -> None:
        """Shard ``shard`` applies ``rank``'s push now: the learner's parameters change there."""
        self.learner.apply_shard(shard, self.grads[rank], 1.0 / self.protocol.contributors)

    def completed(self, rank: int) -> None:
        """``rank``'s push is applied on every shard (and the protocol has been told)."""
        self.grads[rank] = None
        if self.protocol.asynchronous:
            self.staleness.append(int(self._worst[rank]))
            self.clock_staleness.append(int(self.protocol.applied_clock[rank] - 1 - self.read_slowest[rank]))
        if self.learner is not None:
            # asynchronous: every push is an update; synchronous: a step of `contributors` pushes is one
            updates = 1 if self.protocol.asynchronous else self.protocol.steps_done - self.learner.updates
            self.learner.counted(updates=updates, gradients=1)

    def dropped(self, rank: int) -> None:
        self.grads[rank] = None
