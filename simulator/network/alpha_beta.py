"""Congestion-unaware model: each flow alone on its path, α_path + bytes / bottleneck bandwidth.

Hockney's α-β model generalised to a path. Useful as a lower bound and as the
"ideal network" that the fluid model reduces to when no link is shared.
"""

from __future__ import annotations

import numpy as np

from .base import FlowBatch, alone_finish_times

__all__ = ["AlphaBeta"]


class AlphaBeta:
    name = "alpha_beta"
    shares_links = False
    scales_linearly = True

    def finish_times(self, flows: FlowBatch, capacity: np.ndarray) -> np.ndarray:
        return alone_finish_times(flows, capacity)

    def last_finish_lower_bound(self, flows: FlowBatch, capacity: np.ndarray) -> float:
        """The last finish time itself (no solve to save)."""
        return float(alone_finish_times(flows, capacity).max(initial=0.0))
