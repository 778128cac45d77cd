"""The global model of the convergence problem, read and updated at simulated moments.

``Learner`` holds the parameters the servers (or the allreduce) hold. A worker
``read``s a copy when its pull happens, computes its gradient on its own
mini-batch against that copy, and the engine applies it shard by shard when the
server does (``apply_shard``), so updates land in simulated-time order. The loss
over the whole data set is evaluated every ``eval_every`` iterations' worth of
gradients and at the end.

``UpdateLog`` records, for every parameter-server push, its staleness: the
updates its shards received between the replica's pull of that shard and the push
being applied there (max over shards), and its clock staleness (the replica's clock
minus the slowest replica's clock when it read; ≤ s under SSP, 0 under BSP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from simulator.convergence import LossPoint, Problem

__all__ = ["Learner", "LearnerState", "UpdateLog"]


@dataclass(frozen=True)
class LearnerState:
    """Where a learner stands: what a checkpoint keeps and a job restarted (or resized) continues from."""

    params: np.ndarray
    updates: int = 0
    gradients: int = 0
    batches: int = 0           # worker mini-batches drawn so far (the data order continues from here)
    time_s: float = 0.0        # simulated time at which the job that continues starts


class Learner:
    def __init__(self, env: simpy.Environment, problem: Problem, lr: float, shards: int,
                 eval_every: int, target_loss: float | None, start: LearnerState | None = None):
        self.env, self.problem, self.lr = env, problem, lr
        start = start or LearnerState(problem.params0)
        self.params = start.params.copy()
        self.slices = [s for s in np.array_split(np.arange(len(self.params)), shards)]
        self.eval_every_gradients = eval_every * problem.workers
        self.target_loss = target_loss
        self.updates = start.updates      # model updates (a BSP step, or one asynchronous push)
        self.gradients = start.gradients  # worker gradients applied
        self.batches, self.time_offset = start.batches, start.time_s
        self.curve: list[LossPoint] = []
        self._next_eval = 0
        self.compressor = None     # communication.compression: what the wire carried is what is applied
        self.local: list[np.ndarray] | None = None   # local SGD: each replica's own model
        self.diverged_at: int | None = None          # the update after which the loss stopped being finite
        self.evaluate()

    def state(self, iterations: int) -> LearnerState:
        """The state after ``iterations`` iterations of this job (every replica drew that many batches)."""
        return LearnerState(self.params.copy(), self.updates, self.gradients,
                            self.batches + iterations * self.problem.workers, self.time_offset + self.env.now)

    def read(self) -> np.ndarray:
        return self.params.copy()

    def gradient(self, params: np.ndarray, rank: int, iteration: int) -> np.ndarray:
        if self.diverged_at is not None:        # nothing left to learn
            return np.zeros_like(params)
        with np.errstate(all="ignore"):
            batch = self.batches + iteration * self.problem.workers + rank
            return self.problem.gradient(params, self.problem.batch_indices(batch))

    def apply_shard(self, shard: int, grad: np.ndarray, scale: float) -> None:
        sl = self.slices[shard]
        self.params[sl] -= self.lr * scale * grad[sl]

    def apply_mean(self, grads: list[np.ndarray]) -> None:
        """One synchronous step: the mean of every worker's gradient (an allreduce), as the wire carried it."""
        mean = np.mean(grads, axis=0) if self.compressor is None else self.compressor.aggregate(grads)
        self.params -= self.lr * mean
        self.counted(updates=1, gradients=len(grads))

    def local_step(self, iteration: int, replicas: int, average: bool) -> None:
        """Local SGD: every replica steps its own model on its own batch; ``average``: then they average.

        ``params`` is the average of the replicas' models (what averaging now would give), which is
        what is evaluated.
        """
        if self.local is None:
            self.local = [self.params.copy() for _ in range(replicas)]
        for d, own in enumerate(self.local):
            own -= self.lr * self.gradient(own, d, iteration)
        self.params = np.mean(self.local, axis=0)
        if average:
            self.local = [self.params.copy() for _ in range(replicas)]
        self.counted(updates=1, gradients=replicas)

    def pushed(self, worker: int, grad: np.ndarray) -> np.ndarray:
        """A worker's gradient as its push carried it (fp16/bf16 to a parameter server)."""
        return grad if self.compressor is None else self.compressor.one(worker, grad)

    def counted(self, updates: int, gradients: int) -> None:
        self.updates += updates
        self.gradients += gradients
        if self.gradients >= self._next_eval:
            self.evaluate()

    def evaluate(self) -> None:
        """The loss over the whole data set now; a non-finite one marks the run diverged (and ends learning)."""
        if self.diverged_at is not None:
            return
        with np.errstate(all="ignore"):
            loss, acc = self.problem.evaluate(self.params)
        if not (np.isfinite(loss) and np.all(np.isfinite(self.params))):
            self.diverged_at = self.updates
            return
        self.curve.append(LossPoint(float(self.time_offset + self.env.now), self.updates, self.gradients, loss, acc))
        self._next_eval = self.gradients + self.eval_every_gradients

    def finish(self) -> None:
        if not self.curve or self.curve[-1].gradients != self.gradients:
            self.evaluate()

    def summary(self) -> dict[str, float | int | None]:
        hit = next((p for p in self.curve if self.target_loss is not None and p.loss <= self.target_loss), None)
        last = self.curve[-1]
        if self.diverged_at is not None:    # no final model to speak of: say when it blew up
            return {"final_loss": None, "final_accuracy": None, "diverged": True,
                    "diverged_at_update": int(self.diverged_at),
                    "time_to_target_s": None if hit is None else float(hit.time_s),
                    "updates_to_target": None if hit is None else hit.updates,
                    "gradients_to_target": None if hit is None else hit.gradients}
        return {"final_loss": last.loss, "final_accuracy": last.accuracy,
                "time_to_target_s": None if hit is None else float(hit.time_s),
                "updates_to_target": None if hit is None else hit.updates,
                "gradients_to_target": None if hit is None else hit.gradients}


class UpdateLog:
    """Staleness of every applied parameter-server push, and (with a learner) the gradients behind them.

    Keyed by (replica, clock): a replica's stages may already read clock c + 1 while
    another stage's units of clock c are still being applied.
    """

    def __init__(self, protocol, learner: Learner | None):
        self.protocol, self.learner = protocol, learner
        self._read_versions: dict[tuple[int, int], list[int]] = {}
        self._read_slowest: dict[tuple[int, int], int] = {}
        self._params: dict[tuple[int, int], np.ndarray] = {}
        self._grads: dict[tuple[int, int], np.ndarray] = {}
        self._worst: dict[tuple[int, int], int] = {}
        self.staleness: list[int] = []
        self.clock_staleness: list[int] = []

    def read(self, replica: int, clock: int, versions: list[int]) -> None:
        """The replica reads the parameters for ``clock`` now (its first stage starts pulling)."""
        key = (replica, clock)
        self._read_versions[key] = versions
        self._read_slowest[key] = self.protocol.slowest
        if self.learner is not None:
            self._params[key] = self.learner.read()

    def queued(self, replica: int, clock: int, shards: tuple[int, ...], versions_before: list[int]) -> None:
        """The push completes at each of ``shards`` at the versions before it (the updates queued ahead)."""
        read = self._read_versions[(replica, clock)]
        worst = max((v - read[j] for j, v in zip(shards, versions_before, strict=True)), default=0)
        if worst > self._worst.get((replica, clock), 0):
            self._worst[(replica, clock)] = worst

    def apply_shard(self, replica: int, clock: int, shard: int) -> None:
        """Shard ``shard`` applies the replica's gradient now: the learner's parameters change there."""
        key = (replica, clock)
        grad = self._grads.get(key)
        if grad is None:
            grad = self._grads[key] = self.learner.pushed(replica, self.learner.gradient(self._params[key], replica,
                                                                                           clock))
        self.learner.apply_shard(shard, grad, 1.0 / self.protocol.contributors)

    def completed(self, replica: int, clock: int, applied: bool, synchronous: bool) -> None:
        """Every unit of the replica's push has been applied or dropped (``applied``: some were applied)."""
        key = (replica, clock)
        self._read_versions.pop(key, None)
        self._params.pop(key, None)
        self._grads.pop(key, None)
        worst = self._worst.pop(key, 0)
        slowest = self._read_slowest.pop(key, 0)
        if not applied:
            return
        self.staleness.append(int(worst))
        self.clock_staleness.append(int(self.protocol.applied_clock[replica] - 1 - slowest))
        if self.learner is not None:
            # asynchronous: every push is an update; synchronous: a step of `contributors` pushes is one
            updates = self.protocol.steps_done - self.learner.updates if synchronous else 1
            self.learner.counted(updates=updates, gradients=1)

    def summary(self) -> dict[str, float | int]:
        s = np.array(self.staleness or [0])
        c = np.array(self.clock_staleness or [0])
        return {"staleness_mean": float(s.mean()), "staleness_max": int(s.max()),
                "clock_staleness_max": int(c.max())}

    def tables(self) -> dict[str, list[dict[str, int]]]:
        return {"staleness": [{"update": i, "staleness": s, "clock_staleness": c}
                              for i, (s, c) in enumerate(zip(self.staleness, self.clock_staleness, strict=True))]}
