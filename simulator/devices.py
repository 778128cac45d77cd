"""Accelerators and CPUs as roofline parameters: peak FLOP/s, memory bandwidth, capacity.

A :class:`Device` is the whole description of one worker's compute that the
simulator needs: :mod:`simulator.compute` turns a layer's FLOPs and bytes into
seconds with ``max(flops / peak_flops, bytes / memory_bandwidth) / efficiency[kind]`` per piece of work
(:class:`Efficiency`, one fraction per kind of work).
``CATALOG`` holds datasheet numbers for the devices a config may name
(``cluster.device: a100``); a config may also give the numbers itself, which the
config layer maps onto :class:`Device`.

This module deliberately knows nothing about networks, kernel-launch overheads
or clocks: interconnect bandwidth belongs to the topology, and measured
behaviour enters through calibrated profiles (``validation``), not here.

All quantities are SI: FLOP/s, bytes/s, bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

__all__ = ["CATALOG", "KINDS", "PRECISIONS", "WORK_KINDS", "Device", "Efficiency", "get_device"]

KINDS = ("cpu", "gpu", "tpu")

PRECISIONS = ("mixed", "fp32", "tf32")
"""The training precision (``workload.precision``): ``mixed`` (fp16/bf16 activations and working weights,
fp32 master weights: Micikevicius et al. 2018), ``fp32`` (everything in fp32, on the fp32 units), ``tf32``
(fp32 storage, matrix products on the tensor cores' TF32 path: A100 and later). It picks the device's peak
(:meth:`Device.at_precision`) and the bytes per element (:func:`simulator.workloads.with_precision`)."""

WORK_KINDS = ("gemm", "attention", "elementwise", "embedding")
"""What a piece of a layer's work is, for its efficiency (:class:`Efficiency`): dense matrix products
(fully-connected layers, convolutions, a transformer's projections and MLP), the attention core
(scores, softmax, context), memory-bound elementwise work (normalisation, activations, dropout,
residual adds, pooling) and embedding gathers."""


@dataclass(frozen=True)
class Efficiency:
    """The fraction of the device's roofline each kind of work reaches, each in (0, 1].

    A piece of work of kind ``k`` takes ``max(flops / peak_flops, bytes / memory_bandwidth) / e_k``:
    a compute-bound GEMM runs at ``e_gemm`` of peak FLOP/s, a memory-bound elementwise kernel at
    ``e_elementwise`` of the HBM bandwidth. These are single-kernel figures, not end-to-end MFU
    (which already holds pipeline bubbles and communication, which the engine adds).
    """

    gemm: float = 0.5
    attention: float = 0.5
    elementwise: float = 0.5
    embedding: float = 0.5

    def __post_init__(self) -> None:
        """Reject fractions outside (0, 1]."""
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0 < value <= 1:
                raise ValueError(f"efficiency {f.name} must be in (0, 1], got {value!r}")

    @classmethod
    def of(cls, value: float | Mapping[str, float] | Efficiency) -> Efficiency:
        """An ``Efficiency`` from a scalar (every kind), a mapping of kinds, or an ``Efficiency``."""
        if isinstance(value, Efficiency):
            return value
        if isinstance(value, Mapping):
            return cls(**{k: float(v) for k, v in value.items()})
        return cls(*(float(value),) * len(WORK_KINDS))

    def __getitem__(self, kind: str) -> float:
        """The fraction for one of :data:`WORK_KINDS`."""
        if kind not in WORK_KINDS:
            raise KeyError(f"unknown work kind {kind!r}; expected one of {', '.join(WORK_KINDS)}")
        return getattr(self, kind)

    def replace(self, **kinds: float) -> Efficiency:
        """A copy with some kinds changed."""
        return Efficiency(**{**{k: getattr(self, k) for k in WORK_KINDS}, **kinds})


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
        Dense peak at mixed precision, FLOP/s (tensor-core bf16/fp16 for GPUs, the P100's fp16 at twice its
        fp32 rate; bf16 MXU for TPUs; fp32 AVX-512 FMA for CPUs, which have no faster 16-bit path here).
    memory_bandwidth : float
        Peak DRAM/HBM bandwidth, bytes/s.
    memory_bytes : float
        Device memory capacity, bytes.
    efficiency : float, mapping or Efficiency, default 0.5
        The fraction of the roofline each kind of work reaches (:class:`Efficiency`); a scalar
        means every kind. Stored as an :class:`Efficiency`.
    fp32_flops, tf32_flops : float or None, default None
        Dense peak at ``fp32`` (the fp32 FMA units) and at ``tf32`` (tensor cores' TF32), FLOP/s; None where
        the device has no such path (:meth:`at_precision` then refuses that precision).
    """

    name: str
    kind: str
    peak_flops: float
    memory_bandwidth: float
    memory_bytes: float
    efficiency: Efficiency = Efficiency()
    fp32_flops: float | None = None
    tf32_flops: float | None = None

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
        for field in ("fp32_flops", "tf32_flops"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ValueError(f"device {self.name!r}: {field} must be > 0, got {value!r}")
        try:
            object.__setattr__(self, "efficiency", Efficiency.of(self.efficiency))
        except (TypeError, ValueError) as e:
            raise ValueError(f"device {self.name!r}: {e}") from None

    def at_precision(self, precision: str) -> Device:
        """This device as it trains at ``precision`` (:data:`PRECISIONS`): ``peak_flops`` becomes the peak of
        that precision's units. Raises ``ValueError`` naming the missing peak where the device has none."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "mixed":
            return self
        peak = getattr(self, f"{precision}_flops")
        if peak is None:
            raise ValueError(f"device {self.name!r} has no {precision} peak ({precision}_flops); give it, or "
                             "train at another precision")
        return replace(self, peak_flops=peak)

    @property
    def sustained_flops(self) -> float:
        """FLOP/s a compute-bound GEMM sustains: ``peak_flops * efficiency.gemm``."""
        return self.peak_flops * self.efficiency.gemm


# Per-kind efficiencies: single-device, single-kernel figures (not end-to-end MFU, which already
# holds pipeline bubbles and communication that the engine adds). Sources, per number:
#   gemm   - A100 SXM 0.87, H100 SXM 0.80: S. Bekman, "Machine Learning Engineering Open Book",
#            compute/accelerator, "Maximum Achievable Matmul FLOPS comparison table" (mamf-finder,
#            BF16, torch 2.6/2.7): 271.2 of 312 TFLOP/s (86.9 %), 794.5 of 989 (80.3 %).
#            V100 0.75, TPU v4 0.75, CPU 0.4: ASSUMPTIONS (no single-kernel figure found to cite;
#            V100 tensor-core cuBLAS GEMMs are commonly quoted at ~90-100 of 125 TFLOP/s; CPU: oneDNN
#            fp32 GEMM reaches 60-80 % of base-clock peak but AVX-512 code runs below base clock).
#   attention - A100 0.6: Dao 2023, FlashAttention-2 (arXiv:2307.08691): forward reaches 50-73 % of
#            A100 peak (backward lower); 0.6 for forward and backward together.
#            H100 0.6: Shah et al. 2024, FlashAttention-3 (arXiv:2407.08608): FP16 up to 740 TFLOP/s
#            (75 %) forward, FlashAttention-2 35 % on H100; 0.6 for a mixed forward/backward.
#            V100 0.4, TPU v4 0.5, CPU 0.3: ASSUMPTIONS (FlashAttention does not run on Volta).
#            The share applies to a fused core only (workload.attention: fused); an unfused core is
#            timed as the batched GEMMs and elementwise kernels it is (simulator.workloads.block_work).
#   elementwise (fraction of memory bandwidth) - V100 0.83: Jia et al. 2018, "Dissecting the NVIDIA
#            Volta GPU Architecture via Microbenchmarking" (arXiv:1804.06826), ~750 of 900 GB/s
#            measured global-memory bandwidth. A100 0.85, H100 0.85, TPU v4 0.8, CPU 0.75:
#            ASSUMPTIONS in line with STREAM/BabelStream-style copy kernels (measure with BabelStream
#            and override per device).
#   embedding (row gathers) - 0.5 on every device: ASSUMPTION (indexed rows, not one stream).
#   P100 (fp32, no tensor cores; its own sources, measured on a P100, none fitted to the accuracy table):
#     gemm 9.50 / 10.6 = 0.896: zzc0721/torch-performance-test-data#180, "Tesla P100-SXM2-16GB", torch 2.7 /
#            cu128, FP32 matmul (cuBLAS SGEMM: Pascal has no TF32) 8192x8192: 9.50 TFLOPS (4096: 9.04).
#     elementwise 443.8 / 732 = 0.606: mpicbg-scicomp/gearshifft#82 (2017-03-27), CUDA sample bandwidthTest on
#            a "Tesla P100-PCIE-16GB" (the same 4096-bit HBM2 at 715 MHz, 732 GB/s), device to device:
#            443,837.7 MB/s (bandwidthTest counts a copy's read and write: 2 x size / time).
#     attention 0.5, embedding 0.5: ASSUMPTIONS (no P100 figure found; FlashAttention does not run on Pascal).
CATALOG: dict[str, Device] = {
    # 2 x Intel Xeon Platinum 8358 (Ice Lake-SP, 32 cores, 2.6 GHz base, 2 AVX-512 FMA
    # units: 32 fp32 FLOP/cycle/core), Intel ARK: 8 channels DDR4-3200 per socket.
    # Peak = 2 * 32 * 2.6e9 * 32 = 5.32 TFLOP/s fp32; 2 * 8 * 25.6 GB/s = 409.6 GB/s;
    # 512 GB of DRAM (16 x 32 GB DIMMs, a common configuration).
    # Its peak is the fp32 one at every precision (no 16-bit matrix units on Ice Lake-SP).
    "cpu": Device("cpu", "cpu", 2 * 32 * 2.6e9 * 32, 2 * 8 * 25.6e9, 512e9, Efficiency(0.4, 0.3, 0.75, 0.5),
                  fp32_flops=2 * 32 * 2.6e9 * 32),
    # NVIDIA Tesla V100 SXM2 32GB datasheet: 125 TFLOPS tensor (fp16), 15.7 TFLOPS single precision,
    # 900 GB/s HBM2, 32 GB (no TF32: Volta).
    "v100": Device("v100", "gpu", 125e12, 900e9, 32e9, Efficiency(0.75, 0.4, 0.83, 0.5), fp32_flops=15.7e12),
    # NVIDIA Tesla P100 SXM2 16GB datasheet (DGX-1's GPU): 21.2 TFLOPS half precision, 10.6 TFLOPS single
    # (no tensor cores, no TF32), 732 GB/s HBM2, 16 GB. Its era trained in fp32: workload.precision: fp32.
    "p100": Device("p100", "gpu", 21.2e12, 732e9, 16e9,
                   Efficiency(9.50e12 / 10.6e12, 0.5, 443_837.7e6 / 732e9, 0.5), fp32_flops=10.6e12),
    # NVIDIA A100 80GB SXM datasheet: 312 TFLOPS bf16/fp16 tensor dense (624 with
    # sparsity), 19.5 TFLOPS fp32, 156 TFLOPS TF32 tensor dense (312 with sparsity), 2,039 GB/s HBM2e, 80 GB.
    "a100": Device("a100", "gpu", 312e12, 2.039e12, 80e9, Efficiency(0.87, 0.6, 0.85, 0.5), fp32_flops=19.5e12,
                   tf32_flops=156e12),
    # NVIDIA H100 SXM5 datasheet: 989 TFLOPS bf16 tensor dense (1,979 with sparsity),
    # 67 TFLOPS fp32, 989 TFLOPS TF32 tensor with sparsity (494.5 dense), 3.35 TB/s HBM3, 80 GB.
    "h100": Device("h100", "gpu", 989e12, 3.35e12, 80e9, Efficiency(0.80, 0.6, 0.85, 0.5), fp32_flops=67e12,
                   tf32_flops=494.5e12),
    # Google Cloud TPU v4 system architecture page (Jouppi et al. 2023): 275 TFLOPS bf16
    # per chip, 1,200 GB/s HBM2, 32 GiB.
    "tpu_v4": Device("tpu_v4", "tpu", 275e12, 1.2e12, 32 * 2**30, Efficiency(0.75, 0.5, 0.8, 0.5)),
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
