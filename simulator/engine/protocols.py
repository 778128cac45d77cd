"""Training protocols for parameter servers: when a replica may read, and which pushes count.

A data-parallel *replica* (one worker, or the P × T devices of one pipeline) pushes
its gradient as *units* — one per gradient part of each of its stage processes — and
reads the parameters before each iteration. Each protocol answers, with the
:class:`~.quorum.Quorum` primitive and no timing of its own:

- ``gate(replica, clock)``: an event to wait for before reading parameters for the
  replica's ``clock``-th iteration (``None``: go ahead);
- ``more(replica, clock)``: does the replica run another iteration?
- ``tag(replica, clock)``: the step its gradient belongs to (the record's iteration);
- ``accept(tag, replica)``: does the server apply this replica's units of step ``tag``
  (``False``: they are dropped)? Asked as each unit arrives; the answer for a
  (step, replica) is decided at its first unit and kept, so a gradient counts whole or not at all.

and is told ``unit_applied(replica, clock, tag, unit)`` when an accepted unit has been
applied on every shard it touches, and ``replica_applied(replica, clock)`` when all of a
replica's units of one iteration have been applied. With ``communication.overlap`` a
replica reads each part as soon as that part allows (``key_gate``), as per-key servers
answer pulls (MXNet's dist_sync, BytePS): the same rule, applied to one part at a time.

``BSP`` (with ``backup_workers`` b, Chen et al. 2016): the gradients of the first
D − b replicas whose push of step g starts arriving are applied, the rest dropped;
step g completes when those (D − b) × units have been applied; a replica reads only
once the step it pushed to has completed. ``SSP`` with bound s (Ho et al., NIPS 2013): a replica at clock c
reads only once every replica's first c − s pushes are applied, so it is never more
than s iterations ahead of the slowest; s = 0 is BSP. ``ASP``: never waits.

BSP's decisions that several stage processes of one replica ask about (``tag``, and
``more`` through it) are taken once per (replica, clock) and remembered, so a
replica's stages agree.
"""

from __future__ import annotations

import numpy as np
import simpy

from simulator.config.models import Sync

from .quorum import Quorum

__all__ = ["ASP", "BSP", "SSP", "Protocol", "make_protocol"]


class Protocol:
    name = "protocol"
    per_worker_clock = False     # iteration time is per replica (no global step)

    def __init__(self, env: simpy.Environment, replicas: int, iterations: int, units: int):
        self.env, self.replicas, self.iterations, self.units = env, replicas, iterations, units
        self.applied_clock = [0] * replicas                         # pushes of each replica applied
        self.slowest = 0                                            # the fewest of them (kept up to date)
        self._at_slowest = replicas                                 # replicas with that few
        self.clocks = Quorum(env, replicas)                         # clock c: every replica's c-th push applied

    @property
    def contributors(self) -> int:
        """Replicas' gradients averaged into one step's worth of updates (the per-push learning-rate share)."""
        return self.replicas

    @property
    def steps_done(self) -> int:
        return self.slowest

    def _count_applied(self, replica: int) -> None:
        """One more push of ``replica`` applied; the slowest count moves on when no replica is left at it."""
        n = self.applied_clock[replica]
        self.applied_clock[replica] = n + 1
        if n == self.slowest:
            self._at_slowest -= 1
            if self._at_slowest == 0:        # counts only grow by one: every replica is at slowest + 1 or more
                self.slowest = n + 1
                self._at_slowest = self.applied_clock.count(n + 1)

    def gate(self, replica: int, clock: int) -> simpy.Event | None:
        return None

    def more(self, replica: int, clock: int) -> bool:
        return clock < self.iterations

    def tag(self, replica: int, clock: int) -> int:
        return clock

    def accept(self, tag: int, replica: int) -> bool:
        return True

    def unit_applied(self, replica: int, clock: int, tag: int, unit: tuple) -> None:
        pass

    def key_gate(self, replica: int, clock: int, unit: tuple) -> simpy.Event | None:
        """With overlap: an event to wait for before pulling ``unit`` for ``clock`` (asked once the replica's
        own ``unit`` of ``clock − 1`` is applied); ``None``: go ahead."""
        return None

    def replica_applied(self, replica: int, clock: int) -> None:
        self._count_applied(replica)
        self.clocks.arrive(clock)

    def step_ends(self) -> np.ndarray | None:
        """When each global step completed (every replica's push of that clock applied)."""
        return np.array([self.clocks.reached_at[c] for c in range(self.iterations)])


class ASP(Protocol):
    name = "asp"
    per_worker_clock = True

    def step_ends(self) -> None:
        return None


class SSP(Protocol):
    name = "ssp"

    def __init__(self, env: simpy.Environment, replicas: int, iterations: int, units: int, staleness: int):
        super().__init__(env, replicas, iterations, units)
        self.staleness = staleness
        self.keys = Quorum(env, replicas)                  # (clock, unit): every replica's unit of that clock applied

    def unit_applied(self, replica: int, clock: int, tag: int, unit: tuple) -> None:
        self.keys.arrive((clock, unit))

    def key_gate(self, replica: int, clock: int, unit: tuple) -> simpy.Event | None:
        needed = clock - self.staleness - 1
        if needed < 0 or self.keys.is_reached((needed, unit)):
            return None
        return self.keys.reached((needed, unit))

    def gate(self, replica: int, clock: int) -> simpy.Event | None:
        needed = clock - self.staleness - 1     # every replica's pushes 0..needed applied
        if needed < 0 or self.clocks.is_reached(needed):
            return None
        return self.clocks.reached(needed)


class BSP(Protocol):
    name = "bsp"

    def __init__(self, env: simpy.Environment, replicas: int, iterations: int, units: int, backup_workers: int = 0):
        super().__init__(env, replicas, iterations, units)
        self.backup = backup_workers
        self.accepted = Quorum(env, replicas - backup_workers)                # step: the first D − b replicas count
        self.steps = Quorum(env, (replicas - backup_workers) * units)         # step: every counted unit applied
        self.keys = Quorum(env, replicas - backup_workers)                    # (step, unit): its counted ones applied
        self._steps_done = 0
        self._decided: dict[tuple[str, int, int], int | bool] = {}            # per replica: tags and acceptances

    @property
    def contributors(self) -> int:
        return self.replicas - self.backup

    @property
    def steps_done(self) -> int:
        return self._steps_done

    def gate(self, replica: int, clock: int) -> simpy.Event | None:
        """Wait for the step this replica's previous iteration pushed to (decided once per replica and clock)."""
        last = self._decided.get(("tag", replica, clock - 1))
        if last is None or self.steps.is_reached(last):
            return None
        return self.steps.reached(last)

    def more(self, replica: int, clock: int) -> bool:
        return self.tag(replica, clock) < self.iterations

    def tag(self, replica: int, clock: int) -> int:
        """The step after the replica's previous one, or the current step if it fell behind (a late backup)."""
        key = ("tag", replica, clock)
        if key not in self._decided:
            previous = self._decided.get(("tag", replica, clock - 1), -1)
            self._decided[key] = max(int(previous) + 1, self._steps_done)
            done = self._decided.pop(("tag", replica, clock - 2), None)   # nothing asks about it any more
            if done is not None:
                self._decided.pop(("accept", replica, done), None)
        return int(self._decided[key])

    def key_gate(self, replica: int, clock: int, unit: tuple) -> simpy.Event | None:
        """``unit`` of the step this replica's previous iteration pushed to has all its counted pushes applied."""
        last = (self._decided[("tag", replica, clock - 1)], unit)
        return None if self.keys.is_reached(last) else self.keys.reached(last)

    def accept(self, tag: int, replica: int) -> bool:
        # a step that has completed without it, or D − b others already counted: a late backup gradient
        key = ("accept", replica, tag)
        if key not in self._decided:
            self._decided[key] = tag == self._steps_done and self.accepted.arrive(tag)
        return bool(self._decided[key])

    def unit_applied(self, replica: int, clock: int, tag: int, unit: tuple) -> None:
        self.keys.arrive((tag, unit))
        self.steps.arrive(tag)
        if self.steps.is_reached(tag):
            self._steps_done += 1
            self.steps.forget(tag)

    def replica_applied(self, replica: int, clock: int) -> None:
        self._count_applied(replica)

    def step_ends(self) -> np.ndarray:
        return np.array([self.steps.reached_at[g] for g in range(self._steps_done)])


def make_protocol(sync: Sync, env: simpy.Environment, replicas: int, iterations: int, units: int) -> Protocol:
    match sync.mode:
        case "asp":
            return ASP(env, replicas, iterations, units)
        case "ssp":
            return SSP(env, replicas, iterations, units, sync.staleness)
        case _:
            return BSP(env, replicas, iterations, units, sync.backup_workers)
