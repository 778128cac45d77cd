"""Roofline compute times: how long a layer, a pass or an iteration takes on one device.

A layer's forward work comes in pieces of one kind each (``Layer.work``: GEMM, attention,
elementwise, embedding; a transformer block has one of each of the first three). Every piece is
timed as the slower of its arithmetic and its memory traffic (Williams, Waterman & Patterson 2009,
"Roofline"), divided by the fraction of that roofline its kind reaches on the device
(``Device.efficiency``, :class:`simulator.devices.Efficiency`)::

    t = max(flops / peak_flops, bytes / memory_bandwidth) / efficiency[kind]

so a compute-bound GEMM runs at ``efficiency.gemm`` of peak FLOP/s and a memory-bound elementwise
kernel at ``efficiency.elementwise`` of the memory bandwidth. A layer takes the sum of its pieces.

The rules, kept deliberately simple and consistent:

* forward: ``flops = batch * work.flops``;
  ``bytes = batch * work.bytes + work.params * work.weight_bytes``
  (activations in and out for every sample, the working copy of the weights read once per batch: 16-bit at
  mixed precision, 4 bytes at fp32 or tf32, as :func:`simulator.workloads.with_precision` counts them);
* backward: twice the forward flops *and* bytes (gradients with respect to the
  activations and to the weights each cost about one forward; the saved
  activations and incoming gradients are read, outgoing gradients written), or a piece's
  own ``Work.backward_bytes`` where it counts them (an unfused attention core's softmax and dropout);
* optimizer step: memory-bound streaming over the parameters,
  ``OPTIMIZER_BYTES_PER_PARAM`` bytes each, an elementwise kernel.

Nothing here knows about communication, overlap or stragglers: the engine adds
those. :func:`iteration_compute_time` is the single-worker, communication-free
time that ``scaling_efficiency`` is measured against.
"""

from __future__ import annotations

import numpy as np

from simulator.devices import Device
from simulator.workloads import Layer, Model, Work

__all__ = [
    "BACKWARD_FACTOR",
    "OPTIMIZER_BYTES_PER_PARAM",
    "SERVER_APPLY_BYTES_PER_BYTE",
    "backward_times",
    "forward_backward_time",
    "forward_time",
    "iteration_compute_time",
    "layer_time",
    "reduce_time_per_byte",
    "server_apply_time",
    "step_time",
    "work_time",
]

BACKWARD_FACTOR = 2.0
"""Backward cost / forward cost, applied to both FLOPs and bytes."""

OPTIMIZER_BYTES_PER_PARAM = 16.0
"""Default optimizer traffic per parameter: one fp32 pass over weight, gradient and
two moments (Adam-like, fused); pass 28 to also count writing back weight and moments."""

SERVER_APPLY_BYTES_PER_BYTE = 3.0
"""Memory traffic of a parameter server applying one pushed gradient: read the gradient and the
parameters, write the parameters (3 bytes moved per byte pushed)."""

REDUCE_BYTES_PER_BYTE = 3.0
"""Memory traffic of reducing a received chunk into a local one: read two operands, write one."""

_PASSES = {"forward": 1.0, "backward": BACKWARD_FACTOR}


def work_time(work: Work, device: Device, batch: int, pass_: str = "forward") -> float:
    """Seconds of one piece of work for one batch: its roofline time over its kind's efficiency.

    Backward costs ``BACKWARD_FACTOR`` times the forward FLOPs and bytes, or the piece's own
    ``backward_bytes`` where it gives them (an unfused attention core's softmax and dropout).
    """
    factor = _PASSES[pass_]
    flops = factor * batch * work.flops
    if pass_ == "backward" and work.backward_bytes is not None:
        moved = batch * work.backward_bytes + factor * work.params * work.weight_bytes
    else:
        moved = factor * (batch * work.bytes + work.params * work.weight_bytes)
    return max(flops / device.peak_flops, moved / device.memory_bandwidth) / device.efficiency[work.kind]


def layer_time(layer: Layer, device: Device, batch: int, *, pass_: str = "forward", core: bool = False) -> float:
    """Roofline time of one layer for one batch: the sum of its pieces of work.

    Parameters
    ----------
    layer : Layer
    device : Device
    batch : int
        Samples per batch on this device (> 0).
    pass_ : {"forward", "backward"}
        Backward costs ``BACKWARD_FACTOR`` times the forward FLOPs and bytes (or a piece's
        ``backward_bytes``).
    core : bool, default False
        Only the pieces of its attention core (``Work.core``: what selective recomputation re-runs).

    Returns
    -------
    float
        Seconds: ``sum over pieces of max(flops / peak_flops, bytes / memory_bandwidth) / efficiency[kind]``.

    Examples
    --------
    >>> from simulator.devices import Device
    >>> d = Device("toy", "gpu", peak_flops=1e12, memory_bandwidth=1e12, memory_bytes=1e9,
    ...            efficiency=0.5)
    >>> layer_time(Layer("fc", params=0, forward_flops=1e9, activation_bytes=1.0), d, 2)
    0.004
    """
    if pass_ not in _PASSES:
        raise ValueError(f"pass_ must be 'forward' or 'backward', got {pass_!r}")
    if not batch > 0:
        raise ValueError(f"batch must be > 0, got {batch!r}")
    return float(sum(work_time(w, device, batch, pass_) for w in layer.work if w.core or not core))


def forward_time(model: Model, device: Device, batch: int) -> float:
    """Forward pass of the whole model for one batch, seconds (layers run one after another)."""
    return float(sum(layer_time(layer, device, batch) for layer in model.layers))


def backward_times(model: Model, device: Device, batch: int) -> np.ndarray:
    """Backward time of each layer for one batch, seconds, in model (forward) order.

    Index ``i`` belongs to ``model.layers[i]``; the backward pass runs them from
    the last index to the first, which is the order :func:`gradient_buckets` uses.
    """
    return np.array([layer_time(layer, device, batch, pass_="backward") for layer in model.layers])


def forward_backward_time(model: Model, device: Device, batch: int) -> float:
    """Forward plus backward pass of the whole model for one batch, seconds (no optimizer step)."""
    return forward_time(model, device, batch) + float(backward_times(model, device, batch).sum())


def server_apply_time(nbytes: float | np.ndarray, device: Device) -> float | np.ndarray:
    """Seconds a parameter server on ``device`` takes to apply ``nbytes`` of pushed gradient.

    Memory-bound: ``SERVER_APPLY_BYTES_PER_BYTE × nbytes / memory_bandwidth``.
    """
    return SERVER_APPLY_BYTES_PER_BYTE * nbytes / device.memory_bandwidth


def reduce_time_per_byte(device: Device) -> float:
    """γ of the α-β-γ model on ``device``: seconds per byte reduced into a local buffer."""
    return REDUCE_BYTES_PER_BYTE / device.memory_bandwidth


def step_time(
    model: Model, device: Device, *, bytes_per_param: float = OPTIMIZER_BYTES_PER_PARAM
) -> float:
    """Optimizer update time, seconds: memory-bound streaming over every parameter (an elementwise
    kernel: at ``efficiency.elementwise`` of the memory bandwidth).

    Parameters
    ----------
    model : Model
    device : Device
    bytes_per_param : float, default OPTIMIZER_BYTES_PER_PARAM
        Bytes read and written per parameter by the update.
    """
    if not bytes_per_param >= 0:
        raise ValueError(f"bytes_per_param must be >= 0, got {bytes_per_param!r}")
    return model.parameters * bytes_per_param / (device.memory_bandwidth * device.efficiency.elementwise)


def iteration_compute_time(model: Model, device: Device, batch: int) -> float:
    """Forward + backward + optimizer step for one batch on one device, seconds.

    No communication: this is the single-worker time that throughput and
    ``scaling_efficiency`` are measured against.
    """
    return forward_backward_time(model, device, batch) + step_time(model, device)
