"""Device memory: model states under ZeRO 0–3, activations in flight, and the fit check.

Model states (Rajbhandari et al., "ZeRO", SC'20, §3.1 and Fig. 1): mixed-precision
Adam keeps, per parameter, fp16 weights (2 bytes), fp16 gradients (2) and K = 12
bytes of optimizer state (fp32 master weights, momentum, variance): 16 bytes. With
``N_d`` data-parallel ranks, ZeRO shards:

=====  ==================================  =========================
stage  bytes per device                    7.5 B params, N_d = 64
=====  ==================================  =========================
0      (2 + 2 + K)·Ψ                       120 GB
1      (2 + 2)·Ψ + K·Ψ/N_d                 31.4 GB
2      2·Ψ + (2 + K)·Ψ/N_d                 16.6 GB
3      (2 + 2 + K)·Ψ/N_d                   1.88 GB
=====  ==================================  =========================

where Ψ is the parameters a device holds before sharding (its stage's layers, 1/T
of every tensor-parallel one).

Activations (Korthikanti et al. 2022, "Reducing activation recomputation", Table 2):
a transformer block keeps, per microbatch of ``b`` sequences with T-way tensor parallelism,

===================================================  ================================
                                                     bytes per block
===================================================  ================================
no parallelism (T = 1)                               ``s·b·h·(34 + 5·a·s/h)``
tensor parallel (baseline)                           ``s·b·h·(10 + 24/T + 5·a·s/(h·T))``
tensor + sequence parallel                           ``s·b·h·(34/T + 5·a·s/(h·T))``
tensor parallel + selective recomputation            ``s·b·h·(10 + 24/T)``
tensor + sequence parallel + selective               ``s·b·h·34/T``
full recomputation                                   ``2·s·b·h``
===================================================  ================================

(selective recomputation drops the attention core's ``5·a·s/h`` term: the scores, softmax
and its dropout are rebuilt in backward). That term is the unfused attention core's
(``workload.attention: unfused``, :func:`simulator.workloads.block_work`): the softmax output (2 bytes
a score), the dropout mask (1) and the dropout output (2). A fused, FlashAttention-style core
(``fused``, the default) keeps no scores: besides Q, K, V and the output, which the ``34`` already
counts, it keeps the softmax statistics, one fp32 log-sum-exp per query and head (Dao 2023,
FlashAttention-2, Algorithm 1: ``L``), ``STATS_BYTES·a·s`` bytes, so its term is ``4·a/(h·T)``
instead of ``5·a·s/(h·T)`` (0 with selective recomputation, which re-runs the core).

At fp32 or tf32 (``workload.precision``) every value is 4 bytes and the 1-byte dropout masks stay 1 byte:
with ``e`` bytes per element, ``34`` is ``16·e + 2``, ``10`` is ``4·e + 2``, ``24`` is ``12·e``, ``5`` is
``2·e + 1`` and full recomputation keeps ``e·s·b·h``; the model states are :data:`STATE_BYTES`' (fp32: 4 + 4
+ 8, no master copy).

With full recomputation the block being recomputed needs its activations once more while its
backward runs. Other
layers keep their output (``Layer.activation_bytes``; the vocabulary-parallel
``lm_head`` 1/T of it). A stage holds one set per microbatch in flight; how many are
in flight at the peak is read off the pipeline schedule
(:func:`simulator.parallel.schedules.peak_in_flight`).

Not modelled: temporary buffers, fragmentation, the CUDA context, communication
buffers. The check is therefore a lower bound: a config that fails it cannot run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from simulator.config import ConfigError
from simulator.devices import Device
from simulator.workloads import Layer, Model

__all__ = [
    "STATE_BYTES", "STATS_BYTES", "DeviceMemory", "StateBytes", "check_fits",
    "layer_activation_bytes", "model_state_bytes", "recompute_working_bytes",
]

STATS_BYTES = 4        # a fused attention core's fp32 log-sum-exp per query row and head


@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter of a device's model states at one training precision."""

    params: int        # the working weights
    grads: int         # their gradients
    optimizer: int     # K: what the optimizer keeps


STATE_BYTES = {
    "mixed": StateBytes(2, 2, 12),   # fp16/bf16 weights and gradients; fp32 master weights, momentum, variance
    "fp32": StateBytes(4, 4, 8),     # fp32 weights and gradients; Adam's momentum and variance (no master copy)
    "tf32": StateBytes(4, 4, 8),     # as fp32: TF32 is how GEMMs compute, not how values are stored
}
"""Model-state bytes per parameter by ``workload.precision`` (ZeRO's Ψ accounting, §3.1)."""


def model_state_bytes(params: float, zero: int = 0, data_parallel: int = 1, precision: str = "mixed") -> float:
    """Bytes of weights, gradients and optimizer state one device holds (see the table above; at
    ``precision`` the 2 + 2 + K become :data:`STATE_BYTES`' figures)."""
    n = data_parallel
    w, g, k = STATE_BYTES[precision].params, STATE_BYTES[precision].grads, STATE_BYTES[precision].optimizer
    if zero == 0:
        return (w + g + k) * params
    if zero == 1:
        return (w + g) * params + k * params / n
    if zero == 2:
        return w * params + (g + k) * params / n
    if zero == 3:
        return (w + g + k) * params / n
    raise ValueError(f"ZeRO stage must be 0..3, got {zero!r}")


def layer_activation_bytes(layer: Layer, model: Model, tensor: int = 1, recompute: str | bool = "none",
                           sequence_parallel: bool = False) -> float:
    """Bytes ``layer`` keeps for its backward, per sample (one sequence or image): Table 2 above, with the
    attention core's term as ``model.attention`` has it."""
    recompute = {True: "full", False: "none"}.get(recompute, recompute) if isinstance(recompute, bool) else recompute
    if layer.kind == "transformer" and model.hidden and model.seq_len:
        s, h, a, e = model.seq_len, model.hidden, model.heads or 1, model.element_bytes
        if recompute == "full":
            return float(e) * s * h
        if recompute == "selective":
            attention = 0.0
        elif model.attention == "unfused":
            attention = (2 * e + 1) * a * s / (h * tensor)
        else:
            attention = STATS_BYTES * a / (h * tensor)
        rest = (16 * e + 2) / tensor if sequence_parallel else (4 * e + 2) + 12 * e / tensor
        return s * h * (rest + attention)
    if layer.kind == "lm_head":
        return layer.activation_bytes / tensor
    return layer.activation_bytes


def recompute_working_bytes(layers: Iterable[Layer], model: Model, tensor: int, recompute: str = "full",
                            sequence_parallel: bool = False) -> float:
    """Per sample: what the largest block rebuilds while its backward runs (full: all its activations;
    selective: its attention core's)."""
    def rebuilt(la: Layer) -> float:
        whole = layer_activation_bytes(la, model, tensor, "none", sequence_parallel)
        return whole if recompute == "full" else whole - layer_activation_bytes(la, model, tensor, recompute,
                                                                                 sequence_parallel)
    return max((rebuilt(la) for la in layers if la.kind == "transformer"), default=0.0) if recompute != "none" \
        else 0.0


@dataclass(frozen=True)
class DeviceMemory:
    """What one device of a stage needs, bytes."""

    device: int
    stage: int | None      # None: no pipeline
    params: float          # parameters held before ZeRO sharding (count)
    model_states: float
    activations: float     # at the peak
    in_flight: float       # microbatches whose activations are held at the peak

    @property
    def total(self) -> float:
        return self.model_states + self.activations


def check_fits(mem: DeviceMemory, device: Device, where: str, what: str, hint: str = "") -> None:
    """``ConfigError`` naming the device, the need and the capacity when ``mem`` exceeds ``device``."""
    if mem.total <= device.memory_bytes:
        return
    gb = 1e9
    stage = "" if mem.stage is None else f" (stage {mem.stage}, {mem.in_flight:g} microbatches in flight)"
    raise ConfigError(
        f"{where}: {what} needs {mem.total / gb:.1f} GB on device {mem.device}{stage} "
        f"({mem.model_states / gb:.1f} GB model states + {mem.activations / gb:.1f} GB activations) "
        f"but {device.name} has {device.memory_bytes / gb:.1f} GB{hint}")
