"""Congestion-unaware model: each flow alone on its path, α_path + bytes / bottleneck bandwidth.

Hockney's α-β model generalised to a path. Useful as a lower bound and as the
"ideal network" that the fluid model reduces to when no link is shared.
"""

from __future__ import annotations

import numpy as np

from .base import FlowBatch

__all__ = ["AlphaBeta"]


class AlphaBeta:
    name = "alpha_beta"

    def finish_times(self, flows: FlowBatch, capacity: np.ndarray) -> np.ndarray:
        if flows.n == 0:
            return np.zeros(0)
        caps = capacity[flows.links]
        counts = np.diff(flows.link_ptr)
        bottleneck = np.full(flows.n, np.inf)
        has_links = counts > 0
        starts = flows.link_ptr[:-1][has_links]
        bottleneck[has_links] = np.minimum.reduceat(caps, starts) if len(caps) else np.inf
        return flows.latency + flows.nbytes / bottleneck
