"""The network's one question: when do these concurrent flows finish?

A batch of flows is given as arrays (CSR incidence of flows on directed links),
so a collective step with thousands of transfers is one vectorised call.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["FlowBatch", "NetworkModel", "alone_finish_times", "segment_reduce"]


@dataclass(frozen=True)
class FlowBatch:
    """Flows that start together.

    Attributes
    ----------
    link_ptr : int64[n_flows + 1]
        Flow ``i`` crosses directed links ``links[link_ptr[i]:link_ptr[i+1]]``.
    links : int64[nnz]
        Directed link indices (into the capacity array of the routing).
    nbytes : float64[n_flows]
        Bytes each flow carries.
    latency : float64[n_flows]
        Sum of per-hop latencies on each flow's path, seconds.
    """

    link_ptr: np.ndarray
    links: np.ndarray
    nbytes: np.ndarray
    latency: np.ndarray

    @property
    def n(self) -> int:
        return len(self.nbytes)

    def flow_of_entry(self) -> np.ndarray:
        """For each entry of ``links``, the flow it belongs to."""
        return np.repeat(np.arange(self.n), np.diff(self.link_ptr))


class NetworkModel(Protocol):
    """How long bytes take. ``fluid`` shares links max-min fairly; ``alpha_beta`` ignores contention."""

    #: whether flows on one link share its capacity (then a link's bytes take at least bytes / capacity)
    shares_links: bool

    def finish_times(self, flows: FlowBatch, capacity: np.ndarray) -> np.ndarray:
        """Seconds from the common start until each flow's last byte arrives."""
        ...

    def last_finish_lower_bound(self, flows: FlowBatch, capacity: np.ndarray) -> float:
        """A number never above ``finish_times(flows, capacity).max()``, cheaper than solving for it."""
        ...


def segment_reduce(ufunc: np.ufunc, values: np.ndarray, ptr: np.ndarray, empty: float) -> np.ndarray:
    """``ufunc.reduce`` over each CSR segment ``values[ptr[i]:ptr[i+1]]``; ``empty`` for empty ones."""
    n = len(ptr) - 1
    out = np.full(n, empty, dtype=float)
    has = np.diff(ptr) > 0
    if has.any():
        out[has] = ufunc.reduceat(values, ptr[:-1][has])
    return out


def alone_finish_times(flows: FlowBatch, capacity: np.ndarray) -> np.ndarray:
    """Each flow alone on its path: path latency + bytes / bottleneck capacity (Hockney's α + nβ)."""
    bottleneck = segment_reduce(np.minimum, capacity[flows.links], flows.link_ptr, np.inf)
    return flows.latency + flows.nbytes / bottleneck


def digest(*arrays: np.ndarray) -> bytes:
    """A 16-byte key of the arrays' contents (the memo key of steps, routes and rates).

    SHA-256, cut to 16 bytes: CPUs with SHA extensions hash it about three times as fast as
    BLAKE2b, and memo keys are hashed by the thousand (one per coupled step and bucket).
    """
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.digest()[:16]
