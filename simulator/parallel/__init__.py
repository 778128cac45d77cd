"""Model, pipeline and hybrid parallelism as data: where ranks run, how layers split, what fits.

The modules here decide *what* a data × tensor × pipeline job does; the SimPy
processes that decide *when* live in :mod:`simulator.engine` (one rank process per stage and replica), and every
communication duration still comes from :mod:`simulator.network`.

- :mod:`.placement` — the device-count rule and the rank → device mapping
  (tensor groups inside a node first, then pipeline stages, then data replicas);
- :mod:`.stages` — contiguous layer ranges per (virtual) stage, balanced by compute;
- :mod:`.schedules` — GPipe, 1F1B and interleaved 1F1B as per-stage op lists;
- :mod:`.tensor` — Megatron-style tensor parallelism: split layers, count all-reduces;
- :mod:`.memory` — parameters, gradients, optimizer state (ZeRO 0–3) and activations
  per device, and the fit check;
- :mod:`.plan` — elaboration: all of the above plus the network's prices, before time zero.
"""

from .placement import ParallelSizes, Placement, model_parallel, parallel_sizes, place
from .schedules import Op, build_schedule

__all__ = ["Op", "ParallelSizes", "Placement", "build_schedule", "model_parallel", "parallel_sizes", "place"]
