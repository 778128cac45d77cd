"""What a checkpoint costs: the model states a restart needs, written at a storage bandwidth.

A checkpoint holds one copy of the model states a restart needs — the weights and the
optimizer's state, ``(2 + 12)`` bytes per parameter at mixed precision, ``(4 + 8)`` at fp32
(:data:`simulator.parallel.memory.STATE_BYTES`), no gradients — spread evenly over the job's devices
(each data-parallel rank writes its share, as PyTorch's distributed checkpoint and Megatron's distributed optimizer do).

- ``storage: shared``: every byte crosses one storage link of ``bandwidth`` (a parallel
  file system's aggregate bandwidth): ``bytes / bandwidth``;
- ``storage: per_node``: each node writes its devices' share to its own storage at
  ``bandwidth``: the fullest node's share over ``bandwidth``;
- ``asynchronous``: the blocking part is each device's share copied to host memory at
  ``snapshot_bandwidth``; the write then runs in the background (not on the fabric).

A restart reads the same bytes back at the same bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config.models import Checkpoint
from simulator.parallel.memory import STATE_BYTES
from simulator.workloads import Model

__all__ = ["CheckpointCost", "checkpoint_cost", "young_daly_interval"]


@dataclass(frozen=True)
class CheckpointCost:
    bytes: float          # one checkpoint, all devices
    write_s: float        # a blocking write (and a restart's reload)
    snapshot_s: float     # asynchronous: the blocking device-to-host copy


def checkpoint_cost(spec: Checkpoint, model: Model, hosts: np.ndarray) -> CheckpointCost:
    """``hosts``: the node of every device of the job (one entry per device)."""
    states = STATE_BYTES[model.precision]   # the weights and the optimizer's state, at the training precision
    total = float(states.params + states.optimizer) * float(model.parameters)
    if spec.every is None or spec.bandwidth is None:
        return CheckpointCost(total, 0.0, 0.0)
    per_device = total / len(hosts)
    if spec.storage == "shared":
        write = total / spec.bandwidth
    else:
        write = per_device * int(np.bincount(np.asarray(hosts, dtype=np.int64)).max()) / spec.bandwidth
    return CheckpointCost(total, write, per_device / spec.snapshot_bandwidth)


def young_daly_interval(checkpoint_s: float, mtbf_s: float) -> float:
    """Young's first-order optimum checkpoint interval sqrt(2·δ·M) (Young 1974; Daly 2006, for δ << M)."""
    return float(np.sqrt(2.0 * checkpoint_s * mtbf_s))
