"""The SimPy environment every job runs in: SimPy's, with its event loop written out and one alarm.

``Environment.run()`` without ``until`` processes exactly the events SimPy's ``run``
would, in the same order (time, priority, insertion), with the body of
``Environment.step`` inlined: one Python call fewer per event. ``run(until)`` is SimPy's own.

The *alarm* is a timer its one owner moves (the flow model's next completion, which
every arrival and departure re-times): ``set_alarm`` takes its place in the order as
an event scheduled at that moment would (the same event-id counter), and replaces the
previous one, so a re-timed timer leaves nothing stale in the queue and no event object
is made for it. In a long asynchronous parameter-server run that is about half of
the events. A replaced alarm still moves the final clock as its stale timer event would
have when it came off the queue (``now`` after ``run()`` is the latest of the events and
of every alarm ever set), so a result read from ``env.now`` is the same as with timer events.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop
from typing import Any

import simpy
from simpy.events import NORMAL

__all__ = ["Environment"]


class Environment(simpy.Environment):
    """``simpy.Environment`` with ``step`` inlined into ``run()``, and one movable alarm."""

    def __init__(self, initial_time: float = 0):
        super().__init__(initial_time)
        self._alarm: tuple[float, int, int, Callable[[], None]] | None = None
        self._stale = initial_time       # the latest replaced or cleared alarm's time

    def set_alarm(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in ``delay`` seconds, ordered as an event scheduled now; replaces the last alarm."""
        old = self._alarm
        if old is not None and old[0] > self._stale:
            self._stale = old[0]
        self._alarm = (self._now + delay, NORMAL, next(self._eid), callback)

    def clear_alarm(self) -> None:
        old = self._alarm
        if old is not None and old[0] > self._stale:
            self._stale = old[0]
        self._alarm = None

    def run(self, until: Any = None) -> Any:
        if until is not None:
            if self._alarm is not None:
                raise RuntimeError("Environment.run(until) does not serve the alarm; run() does")
            return super().run(until)
        queue = self._queue
        while True:
            alarm = self._alarm
            if alarm is not None and (not queue or alarm < queue[0]):   # (time, priority, id): ids are unique
                self._alarm = None
                self._now = alarm[0]
                alarm[3]()
                continue
            if not queue:
                self._now = max(self._now, self._stale)
                return None
            self._now, _, _, event = heappop(queue)
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):    # a failed event nobody handled: crash
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc
