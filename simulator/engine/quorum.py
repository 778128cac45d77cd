"""The one synchronisation primitive: count arrivals per key, release at a quorum.

A ``Quorum`` is what a barrier, an allreduce's "every replica has this bucket",
BSP's "p − b pushes of this step are applied", backup workers' "the first p − b
count, the rest are dropped" and SSP's "every worker has finished clock c" have
in common: arrivals are counted per key, and the key's event fires the moment the
count reaches the quorum. Arrivals beyond the quorum are reported as not counted
(that is how late backup-worker gradients are dropped). The quorum can be
changed while the simulation runs (a member fails or joins): keys whose count
already meets the new quorum are released at once. In the spirit of SimPy's
``Condition``, but keyed, so one object serves every iteration.
"""

from __future__ import annotations

from collections.abc import Hashable

import simpy

__all__ = ["Quorum"]


class Quorum:
    """Arrivals counted per key; ``reached(key)`` fires when ``need`` of them have arrived.

    Parameters
    ----------
    need : arrivals that release a key (>= 1).
    """

    def __init__(self, env: simpy.Environment, need: int):
        if need < 1:
            raise ValueError(f"a quorum needs at least one member, got {need}")
        self.env, self.need = env, need
        self._count: dict[Hashable, int] = {}
        self._events: dict[Hashable, simpy.Event] = {}
        self.reached_at: dict[Hashable, float] = {}   # key -> when its quorum was reached
        self._single: set[Hashable] = set()             # keys whose only waiter is waiting (``wait``)

    def arrive(self, key: Hashable) -> bool:
        """One arrival for ``key``; ``False`` if the quorum was already met (the arrival does not count)."""
        if key in self.reached_at:
            return False
        n = self._count.get(key, 0) + 1
        self._count[key] = n
        if n >= self.need:
            self._release(key)
        return True

    def reached(self, key: Hashable) -> simpy.Event:
        """An event that fires (or has fired) when ``key`` reaches its quorum."""
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = self.env.event()
            if key in self.reached_at:
                ev.succeed()
        return ev

    def is_reached(self, key: Hashable) -> bool:
        return key in self.reached_at

    def set_need(self, need: int) -> None:
        """Change the quorum (membership changed); keys that now meet it are released at once."""
        if need < 1:
            raise ValueError(f"a quorum needs at least one member, got {need}")
        self.need = need
        for key in [k for k, n in self._count.items() if n >= need]:
            self._release(key)

    def _release(self, key: Hashable) -> None:
        self._count.pop(key, None)
        if key in self._single:     # its one waiter is waiting: nothing to remember
            self._single.discard(key)
            self._events.pop(key).succeed()
            return
        self.reached_at[key] = self.env.now
        ev = self._events.get(key)
        if ev is not None:          # someone waits; a later ``reached`` gets an event that has fired
            ev.succeed()

    def wait(self, key: Hashable) -> simpy.Event:
        """``reached(key)`` for its only waiter: the key is forgotten once it has fired (long runs stay small)."""
        if key in self.reached_at:
            del self.reached_at[key]
            ev = self.env.event()
            ev.succeed()
            return ev
        ev = self._events[key] = self.env.event()
        self._single.add(key)
        return ev

    def forget(self, key: Hashable) -> None:
        """Drop a released key's event (memory for long runs); ``reached_at`` is kept."""
        self._events.pop(key, None)
