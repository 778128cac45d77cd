"""Flows that start and end at arbitrary simulated times, sharing links max-min fairly.

Collective steps start all their flows together and are timed by ``Network`` in
one call. Asynchronous traffic (parameter-server pushes and pulls under ASP/SSP)
has no such structure: a flow arrives whenever a worker finishes computing. Here
the same fluid model runs *inside* the SimPy clock: every arrival and every
completion re-shares the links (progressive filling, as in ``fluid.py``), the
remaining bytes of every live flow advance at their rates in between, and the
next completion is scheduled as one SimPy timeout.

Flows live in fixed slots of padded arrays (``links[slot, hop]``; the padding is a
link of infinite capacity), so the allocation and the advance are two small
Numba kernels over the live slots; Python only does the SimPy bookkeeping.
Arrivals at the same simulated instant are re-shared once (a zero-delay event).

A group of flows (one worker's push to its k servers) completes when its last
flow does; each flow also pays its path latency once, after its last byte (the
same convention as ``Fluid``), so a batch of flows started together finishes at
exactly the times ``Network.finish_times`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import simpy
from numba import njit

from . import Network

__all__ = ["FlowSimulator"]

_DONE = 1e-9  # a flow with less than this fraction of its bytes left has finished


@njit(cache=True, nogil=True)
def advance(alive, remaining, rate, size, hw, dt, slack, done):  # pragma: no cover - compiled
    n = 0
    for i in range(hw):
        if alive[i]:
            remaining[i] -= rate[i] * dt
            if remaining[i] <= _DONE * size[i] or remaining[i] <= rate[i] * slack:
                done[n] = i
                n += 1
    return n

@njit(cache=True, nogil=True)
def _index(alive, links, hops, hw, capacity, count, left, degree, start, fill, touched, act, frozen, members):
    """Live flows into ``act``, per-link flow counts, and a link → flows index; returns (flows, links)."""
    na = 0
    nt = 0
    for i in range(hw):
        if alive[i]:
            act[na] = i
            na += 1
            frozen[i] = 0
            for h in range(hops[i]):
                link = links[i, h]
                if count[link] == 0:
                    touched[nt] = link
                    nt += 1
                    left[link] = capacity[link]
                count[link] += 1
    offset = 0
    for t in range(nt):
        link = touched[t]
        degree[link] = count[link]
        start[link] = offset
        fill[link] = offset
        offset += count[link]
    for k in range(na):
        i = act[k]
        for h in range(hops[i]):
            link = links[i, h]
            members[fill[link]] = i
            fill[link] += 1
    return na, nt


@njit(cache=True, nogil=True)
def _lowest_share(touched, nt, count, left):
    level = np.inf
    for t in range(nt):
        link = touched[t]
        if count[link] > 0:
            share = left[link] / count[link]
            if share < level:
                level = share
    return level


@njit(cache=True, nogil=True)
def _freeze_at(level, touched, nt, count, left, degree, start, members, frozen, newly):
    """Mark the unfrozen flows on every link whose fair share is ``level``; returns how many."""
    threshold = level * (1.0 + 1e-12)
    nn = 0
    for t in range(nt):
        link = touched[t]
        if count[link] > 0 and left[link] / count[link] <= threshold:
            for q in range(start[link], start[link] + degree[link]):
                i = members[q]
                if frozen[i] == 0:
                    frozen[i] = 1
                    newly[nn] = i
                    nn += 1
    return nn


@njit(cache=True, nogil=True)
def allocate(alive, links, hops, hw, capacity, rate, remaining,
             count, left, degree, start, fill, touched, act, newly, frozen, members):  # pragma: no cover
    """Max-min rates of the live flows (progressive filling); returns the time to the next completion.

    The arrays after ``remaining`` are scratch space (passed separately: a tuple of arrays is slow
    to unbox). Each round saturates the links with the lowest fair share and freezes the flows on
    them, found through a link → flows index, so a round costs the touched links plus the frozen flows.
    """
    na, nt = _index(alive, links, hops, hw, capacity, count, left, degree, start, fill, touched, act, frozen,
                    members)
    unfrozen = na
    while unfrozen > 0:
        level = _lowest_share(touched, nt, count, left)
        nn = _freeze_at(level, touched, nt, count, left, degree, start, members, frozen, newly)
        for m in range(nn):
            i = newly[m]
            rate[i] = level
            for h in range(hops[i]):
                link = links[i, h]
                left[link] = max(left[link] - level, 0.0)
                count[link] -= 1
        unfrozen -= nn
    soonest = np.inf
    for k in range(na):
        i = act[k]
        soonest = min(soonest, remaining[i] / rate[i])
    return soonest


@dataclass
class _Group:
    event: simpy.Event
    pending: int
    done_at: float


class FlowSimulator:
    """Asynchronous flows on a ``Network``'s routes, advanced by the SimPy clock.

    ``transfer(src, dst, nbytes)`` starts one flow per (src, dst) device-rank pair now
    and returns an event that fires when the last of them has arrived.
    """

    def __init__(self, env: simpy.Environment, network: Network, slots: int = 256):
        self.env, self.net = env, network
        routing = network.routing
        self._pad = len(routing.capacity)
        self._capacity = np.append(routing.capacity, np.inf)
        self._advance, self._allocate = advance, allocate
        self._routes: dict[tuple[int, int], tuple[np.ndarray, float]] = {}
        self._hops = 1
        self._grow(slots)
        n_links = len(self._capacity)
        self._link_scratch = tuple(np.zeros(n_links, dtype=np.int64) for _ in range(4))  # count, degree, start, fill
        self._left = np.zeros(n_links)
        self._touched = np.zeros(n_links, dtype=np.int64)
        self._members = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []
        self._hw = 0                      # slots in use are below this high-water mark
        self._groups: list[_Group | None] = [None] * slots
        self._last = 0.0                  # simulated time the remaining bytes refer to
        self._generation = 0              # a timer from an older allocation is ignored
        self._pending_allocation = False
        self.bytes_carried = 0.0
        self.flows_started = 0

    # -- slots ----------------------------------------------------------------------
    def _grow(self, n: int) -> None:
        old = getattr(self, "_alive", None)
        links = np.full((n, self._hops), self._pad, dtype=np.int64)
        arrays = {"_alive": np.zeros(n, dtype=np.bool_), "_remaining": np.zeros(n), "_rate": np.zeros(n),
                  "_size": np.zeros(n), "_latency": np.zeros(n), "_group": np.zeros(n, dtype=np.int64),
                  "_nhops": np.zeros(n, dtype=np.int64), "_frozen": np.zeros(n, dtype=np.int64),
                  "_act": np.zeros(n, dtype=np.int64), "_newly": np.zeros(n, dtype=np.int64),
                  "_done": np.zeros(n, dtype=np.int64)}
        if old is not None:
            m = len(old)
            links[:m, : self._links.shape[1]] = self._links
            for name, arr in arrays.items():
                arr[:m] = getattr(self, name)
            self._groups.extend([None] * (n - m))
        self._links = links
        for name, arr in arrays.items():
            setattr(self, name, arr)

    def _widen(self, hops: int) -> None:
        links = np.full((len(self._alive), hops), self._pad, dtype=np.int64)
        links[:, : self._links.shape[1]] = self._links
        self._links, self._hops = links, hops

    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        if self._hw == len(self._alive):
            self._grow(2 * len(self._alive))
        self._hw += 1
        return self._hw - 1

    def _route(self, src: int, dst: int) -> tuple[np.ndarray, float]:
        route = self._routes.get((src, dst))
        if route is None:
            r = self.net.routing
            links = r.path_links(r.device_node(src), r.device_node(dst))
            route = self._routes[(src, dst)] = (links, float(r.latency[links].sum()))
        return route

    # -- the public verb --------------------------------------------------------------
    def transfer(self, src: Sequence[int], dst: Sequence[int], nbytes: Sequence[float]) -> simpy.Event:
        """Start flows ``src[i] → dst[i]`` of ``nbytes[i]`` now; the event fires when all have arrived."""
        event = self.env.event()
        group = _Group(event, 0, self.env.now)
        # no catch-up here: new flows have rate 0 until the re-allocation at this same instant,
        # which advances everything from the last allocation first
        for s, d, n in zip(src, dst, nbytes, strict=True):
            links, latency = self._route(int(s), int(d))
            if n <= 0 or len(links) == 0:  # nothing to send, or a server on the worker's own device
                continue
            self._add(links, latency, float(n), group)
        if group.pending == 0:
            self._finish(group)
        elif not self._pending_allocation:
            self._pending_allocation = True
            self.env.timeout(0).callbacks.append(self._reallocate)
        return event

    def _add(self, links: np.ndarray, latency: float, nbytes: float, group: _Group) -> None:
        if len(links) > self._hops:
            self._widen(len(links))
        i = self._slot()
        self._links[i, :] = self._pad
        self._links[i, : len(links)] = links
        self._nhops[i] = len(links)
        self._remaining[i] = self._size[i] = nbytes
        self._rate[i] = 0.0
        self._latency[i] = latency
        self._alive[i] = True
        self._groups[i] = group
        group.pending += 1
        self.bytes_carried += nbytes
        self.flows_started += 1

    # -- the clock ----------------------------------------------------------------------
    def _catch_up(self) -> None:
        """Advance every live flow to now and retire the ones that have finished."""
        dt = self.env.now - self._last
        self._last = self.env.now
        slack = 1e-13 * max(1.0, self.env.now)  # float round-off of the clock, in seconds
        n = self._advance(self._alive, self._remaining, self._rate, self._size, self._hw, dt, slack, self._done)
        for i in self._done[:n].tolist():
            self._alive[i] = False
            group = self._groups[i]
            self._groups[i] = None
            self._free.append(i)
            group.done_at = max(group.done_at, self.env.now + self._latency[i])
            group.pending -= 1
            if group.pending == 0:
                self._finish(group)

    def _finish(self, group: _Group) -> None:
        # succeed the group's event after its last flow's path latency: what Event.succeed does,
        # with a delay (one event instead of a timeout plus a callback)
        event = group.event
        event._ok, event._value = True, None
        self.env.schedule(event, delay=max(0.0, group.done_at - self.env.now))

    def _reallocate(self, _event: simpy.Event | None = None) -> None:
        self._pending_allocation = False
        self._catch_up()
        self._generation += 1
        if self._hw == 0 or not self._alive[: self._hw].any():
            self._hw = 0
            self._free.clear()
            return
        count, degree, start, fill = self._link_scratch
        if len(self._members) < self._hw * self._hops:
            self._members = np.zeros(2 * self._hw * self._hops, dtype=np.int64)
        soonest = self._allocate(self._alive, self._links, self._nhops, self._hw, self._capacity, self._rate,
                                 self._remaining, count, self._left, degree, start, fill, self._touched, self._act,
                                 self._newly, self._frozen, self._members)
        generation = self._generation
        self.env.timeout(soonest).callbacks.append(lambda _: self._on_timer(generation))

    def _on_timer(self, generation: int) -> None:
        if generation == self._generation:
            self._reallocate()
