"""Pipeline sends and receives: activations forward, gradients backward, between stage processes.

A forward of virtual stage ``u`` needs the activation of ``u − 1`` (same microbatch),
a backward the gradient of ``u + 1``. The sender puts it on a :class:`Link` (one per
direction between two stages' devices, one transfer at a time, first come first
served) and the :class:`Board` holds the arrival event its receiver waits for.
Durations come from the plan (``ParallelPlan.send_f`` / ``send_b``).
"""

from __future__ import annotations

import simpy

__all__ = ["Board", "Link"]


class Board:
    """Arrival events of op inputs, keyed (iteration, replica, virtual stage, microbatch, kind)."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._events: dict[tuple, simpy.Event] = {}

    def event(self, key: tuple) -> simpy.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = self.env.event()
        return ev

    def arrive_after(self, key: tuple, delay: float) -> None:
        """The input ``key`` arrives ``delay`` seconds from now."""
        waiting = self._events.get(key)
        if waiting is None:
            self._events[key] = self.env.timeout(delay)  # a Timeout is the arrival event itself
        else:
            self.env.timeout(delay).callbacks.append(lambda _: waiting.succeed())

    def forget(self, key: tuple) -> None:
        del self._events[key]


class Link:
    """Transfers between two stages' devices in one direction, one at a time, first come first served.

    Durations are known when a transfer is queued, so the link keeps only the time it
    becomes free (cheaper than a SimPy resource and a process per transfer, and the same).
    """

    def __init__(self, env: simpy.Environment):
        self.env, self.free_at = env, 0.0

    def send(self, seconds: float, board: Board, key: tuple) -> None:
        start = max(self.env.now, self.free_at)
        self.free_at = start + seconds
        board.arrive_after(key, self.free_at - self.env.now)
