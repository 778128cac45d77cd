"""Accelerators and CPUs as roofline parameters: peak FLOP/s, memory bandwidth, capacity.

A :class:`Device` is the whole description of one worker's compute that the
simulator needs: :mod:`simulator.compute` turns a layer's FLOPs and bytes into
seconds with ``max(flops / (peak_flops * efficiency), bytes / memory_bandwidth)``.
``CATALOG`` holds datasheet numbers for the devices a config may name
(``cluster.device: a100``); a config may also give the numbers itself, which the
config layer maps onto :class:`Device`.

This module deliberately knows nothing about networks, kernel-launch overheads
or clocks: interconnect bandwidth belongs to the topology, and measured
behaviour enters through calibrated profiles (``validation``), not here.

All quantities are SI: FLOP/s, bytes/s, bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOG", "KINDS", "Device", "get_device"]

KINDS = ("cpu", "gpu", "tpu")


@dataclass(frozen=True)
class Device:
    """One worker's compute, as a roofline.

    Parameters
    ----------
    name : str
        Catalog key or a user-chosen label.
    kind : {"cpu", "gpu", "tpu"}
        Device family (informational; the roofline treats all alike).
    peak_flops : float
        Dense peak at the training precision, FLOP/s (tensor-core bf16/fp16 for
        GPUs, bf16 MXU for TPUs, fp32 AVX-512 FMA for CPUs).
    memory_bandwidth : float
        Peak DRAM/HBM bandwidth, bytes/s.
    memory_bytes : float
        Device memory capacity, bytes.
    efficiency : float, default 0.5
        Fraction of ``peak_flops`` that a real training kernel reaches on a
        compute-bound layer, in (0, 1]. Memory-bound work is modelled separately
        by the roofline, so this is the ceiling for large GEMMs/convolutions,
        not an end-to-end utilisation.
    """

    name: str
    kind: str
    peak_flops: float
    memory_bandwidth: float
    memory_bytes: float
    efficiency: float = 0.5

    def __post_init__(self) -> None:
        """Reject unknown kinds, non-positive quantities and efficiencies outside (0, 1]."""
        if self.kind not in KINDS:
            raise ValueError(
                f"device {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}"
            )
        for field in ("peak_flops", "memory_bandwidth", "memory_bytes"):
            value = getattr(self, field)
            if not value > 0:
                raise ValueError(f"device {self.name!r}: {field} must be > 0, got {value!r}")
        if not 0 < self.efficiency <= 1:
            raise ValueError(
                f"device {self.name!r}: efficiency must be in (0, 1], got {self.efficiency!r}"
            )

    @property
    def sustained_flops(self) -> float:
        """FLOP/s a compute-bound training kernel sustains: ``peak_flops * efficiency``."""
        return self.peak_flops * self.efficiency


# Efficiencies (fraction of dense peak reached by compute-bound training kernels):
#   GPUs/TPUs: Narayanan et al. 2021 (Megatron-LM, SC'21) sustain 138-163 TFLOP/s per
#   A100 on GPT models (44-52 % of 312); Chowdhery et al. 2022 (PaLM) reach 46 % MFU on
#   TPU v4; Dubey et al. 2024 (Llama 3, Table 4) report 38-43 % MFU on H100;
#   Shoeybi et al. 2019 sustain 39 TFLOP/s (31 %) on one V100, cuDNN convolutions do
#   better (~50 %). Elementwise work (BatchNorm, ReLU, softmax) is memory-bound and is
#   charged to bandwidth by the roofline, so these are kernel ceilings, not end-to-end
#   utilisation. CPU: oneDNN fp32 GEMM/conv reach 60-80 % of base-clock peak, but heavy
#   AVX-512 code runs below base clock; 0.4 covers both.
CATALOG: dict[str, Device] = {
    # 2 x Intel Xeon Platinum 8358 (Ice Lake-SP, 32 cores, 2.6 GHz base, 2 AVX-512 FMA
    # units: 32 fp32 FLOP/cycle/core), Intel ARK: 8 channels DDR4-3200 per socket.
    # Peak = 2 * 32 * 2.6e9 * 32 = 5.32 TFLOP/s fp32; 2 * 8 * 25.6 GB/s = 409.6 GB/s;
    # 512 GB of DRAM (16 x 32 GB DIMMs, a common configuration).
    "cpu": Device("cpu", "cpu", 2 * 32 * 2.6e9 * 32, 2 * 8 * 25.6e9, 512e9, 0.4),
    # NVIDIA Tesla V100 SXM2 32GB datasheet: 125 TFLOPS tensor (fp16), 900 GB/s HBM2, 32 GB.
    "v100": Device("v100", "gpu", 125e12, 900e9, 32e9, 0.4),
    # NVIDIA A100 80GB SXM datasheet: 312 TFLOPS bf16/fp16 tensor dense (624 with
    # sparsity), 2,039 GB/s HBM2e, 80 GB.
    "a100": Device("a100", "gpu", 312e12, 2.039e12, 80e9, 0.5),
    # NVIDIA H100 SXM5 datasheet: 989 TFLOPS bf16 tensor dense (1,979 with sparsity),
    # 3.35 TB/s HBM3, 80 GB.
    "h100": Device("h100", "gpu", 989e12, 3.35e12, 80e9, 0.4),
    # Google Cloud TPU v4 system architecture page (Jouppi et al. 2023): 275 TFLOPS bf16
    # per chip, 1,200 GB/s HBM2, 32 GiB.
    "tpu_v4": Device("tpu_v4", "tpu", 275e12, 1.2e12, 32 * 2**30, 0.5),
}


def get_device(name: str) -> Device:
    """Look a device up in :data:`CATALOG` (case-insensitive).

    Parameters
    ----------
    name : str
        Catalog key, e.g. ``"a100"``.

    Returns
    -------
    Device

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the known names.

    Examples
    --------
    >>> get_device("A100").peak_flops
    312000000000000.0
    """
    key = name.strip().lower()
    if key not in CATALOG:
        raise KeyError(f"unknown device {name!r}; known devices: {', '.join(sorted(CATALOG))}")
    return CATALOG[key]
