"""Gradient compression: the bytes on the wire, the collective that carries them, their cost, their effect.

``communication.compression`` (one method per job, applied to every gradient bucket):

========  ==============================================  ===================================
method    on the wire, per rank and bucket of n values     collective
========  ==============================================  ===================================
fp32      4n bytes                                         allreduce (the default)
fp16      2n (IEEE half)                                   allreduce, summed in place
bf16      2n (bfloat16)                                    allreduce, summed in place
qsgd      ⌈b·n/8⌉ + 4 (b bits a value, one fp32 norm)      allgather: quantised vectors do not sum
topk      8k, k = ⌈ρ·n⌉ (int32 index + fp32 value)         allgather: supports differ per rank
powersgd  4r(m + n) per weight matrix m×n, 4v for the      two allreduces (P, then Q): PowerSGD
          v values outside matrices (biases, norms)        is linear, so P and Q sum in place
========  ==============================================  ===================================

QSGD: Alistarh et al. 2017, stochastic rounding to s = 2^(b−1) − 1 levels of |g|/‖g‖ plus a sign
(unbiased). Top-k: the k largest magnitudes (Aji & Heafield 2017; Lin et al. 2018, Deep Gradient
Compression, which also all-gathers the (index, value) pairs). PowerSGD: Vogels et al. 2019, rank r,
one power iteration warm-started from the previous Q, P orthogonalised; each worker keeps the
residual M − P̂P̂ᵀM. Error feedback (the residual is added to the next gradient, Seide et al. 2014;
Karimireddy et al. 2019) is on by default for topk and powersgd.

Costs (:func:`costs`) are rooflines on the worker's device, as the rest of ``compute``: fp16 and
bf16 cost nothing (mixed-precision training produces its gradients at that precision); selections
and quantisation are memory-bound passes over the bucket; PowerSGD's products are GEMMs (2·m·n·r FLOPs
each: P = MQ, Q = MᵀP, and the decompression P Qᵀ) plus a Gram–Schmidt of P (2·m·r²); decoding p
gathered vectors reads each and accumulates into the bucket.

:class:`Compressor` applies the same methods to the convergence problem's gradients (numpy, seeded),
so the learner trains on what the wire carried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from simulator.config.models import Compression
from simulator.devices import Device
from simulator.rng import Streams

__all__ = ["Compressor", "Encoding", "INPLACE", "costs", "encode"]

INPLACE = {"fp32": 4, "fp16": 2, "bf16": 2}     # bytes a value where the collective sums in place
FP32, INDEX = 4, 4


@dataclass(frozen=True)
class Encoding:
    """One bucket as the wire carries it: the collectives (name, size argument) in order, and bytes per rank."""

    collectives: tuple[tuple[str, int], ...]
    wire_bytes: int               # bytes one rank contributes to the bucket's sync
    raw_bytes: int                # the fp32 gradient it stands for (4n)


def encode(spec: Compression, values: int, matrices: tuple[tuple[int, int], ...], ranks: int) -> Encoding:
    """The bucket of ``values`` gradient values (``matrices`` among them) under ``spec``, over ``ranks``."""
    raw = FP32 * values
    method = spec.method
    if method in INPLACE:
        nbytes = INPLACE[method] * values
        return Encoding((("allreduce", nbytes),), nbytes, raw)
    if method == "qsgd":
        nbytes = math.ceil(spec.bits * values / 8) + FP32
        return Encoding((("allgather", nbytes * ranks),), nbytes, raw)
    if method == "topk":
        nbytes = (FP32 + INDEX) * topk_count(spec.ratio, values)
        return Encoding((("allgather", nbytes * ranks),), nbytes, raw)
    inside = min(values, sum(m * n for m, n in matrices))
    p = FP32 * sum(spec.rank * m for m, n in matrices) + FP32 * (values - inside)   # P's and the vectors
    q = FP32 * sum(spec.rank * n for m, n in matrices)
    return Encoding((("allreduce", p), ("allreduce", q)) if q else (("allreduce", p),), p + q, raw)


def topk_count(ratio: float, values: int) -> int:
    return min(values, math.ceil(ratio * values)) if values else 0


def costs(spec: Compression, values: int, matrices: tuple[tuple[int, int], ...], ranks: int,
          device: Device) -> tuple[float, float]:
    """(compress, decompress) seconds of one bucket on ``device``, roofline."""
    bw, flops = device.memory_bandwidth, device.sustained_flops
    n = values
    method = spec.method
    if method in INPLACE:                    # mixed-precision training produces them at that precision
        return 0.0, 0.0
    ef = 12 * n if spec.error_feedback else 0   # add the residual (read 2, write 1) and keep the new one
    if method == "qsgd":
        wire = math.ceil(spec.bits * n / 8)
        return (8 * n + wire + ef) / bw, ranks * (wire + 8 * n) / bw    # norm pass + quantise; decode + add
    if method == "topk":
        k = topk_count(spec.ratio, n)
        # a threshold pass and a gather pass over the bucket, write the pairs; scatter-add every rank's pairs
        return (8 * n + 8 * k + ef) / bw, (4 * n + ranks * 16 * k) / bw
    r = spec.rank
    gemm = sum(2 * m * c * r for m, c in matrices)
    orth = sum(2 * m * r * r for m, c in matrices)
    inside = sum(m * c for m, c in matrices)
    compress = max((2 * gemm + orth) / flops, (2 * FP32 * inside + ef) / bw)
    decompress = max(gemm / flops, FP32 * inside / bw)
    return compress, decompress


class Compressor:
    """The job's compression applied to every worker's gradient of the convergence problem (flat vectors)."""

    def __init__(self, spec: Compression, shapes: list[tuple[int, ...]], workers: int, streams: Streams):
        self.spec, self.shapes, self.workers = spec, shapes, workers
        self.residual = [None] * workers
        self._rng = [streams.get("compression", w) for w in range(workers)]
        self._q: dict[int, np.ndarray] = {}
        offsets = np.cumsum([0] + [int(np.prod(s)) for s in shapes])
        self._slices = [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        self._init = streams.get("compression.powersgd.init")

    def aggregate(self, grads: list[np.ndarray]) -> np.ndarray:
        """The mean of what the workers' compressed gradients decode to (error feedback included)."""
        if self.spec.method == "powersgd":
            return self._powersgd(grads)
        return np.mean([self.one(w, g) for w, g in enumerate(grads)], axis=0)

    def one(self, worker: int, grad: np.ndarray) -> np.ndarray:
        """What worker ``worker``'s gradient decodes to, for element-wise methods."""
        spec = self.spec
        if spec.method == "fp32":
            return grad
        if spec.method == "fp16":
            return grad.astype(np.float16).astype(np.float64)
        if spec.method == "bf16":
            return _bf16(grad)
        v = grad + (self.residual[worker] if spec.error_feedback and self.residual[worker] is not None else 0.0)
        if spec.method == "qsgd":
            out = _qsgd(v, spec.bits, self._rng[worker])
        else:
            out = np.zeros_like(v)
            k = topk_count(spec.ratio, len(v))
            if k:
                idx = np.argpartition(np.abs(v), len(v) - k)[len(v) - k:]
                out[idx] = v[idx]
        if spec.error_feedback:
            self.residual[worker] = v - out
        return out

    def _powersgd(self, grads: list[np.ndarray]) -> np.ndarray:
        """PowerSGD: P = mean(M_i Q), orthogonalised; Q = mean(M_iᵀ P̂); the mean decodes to P̂ Qᵀ."""
        r, ef = self.spec.rank, self.spec.error_feedback
        vs = [g + (self.residual[w] if ef and self.residual[w] is not None else 0.0) for w, g in enumerate(grads)]
        out = np.mean(vs, axis=0)                      # vectors go uncompressed (fp32 allreduce)
        decoded = [v.copy() for v in vs]
        for j, (shape, sl) in enumerate(zip(self.shapes, self._slices, strict=True)):
            if len(shape) != 2:
                continue
            m, n = shape
            rank = min(r, m, n)
            q = self._q.get(j)
            if q is None:
                q = self._q[j] = self._init.normal(size=(n, rank))
            mats = [v[sl].reshape(m, n) for v in vs]
            p, _ = np.linalg.qr(np.mean([a @ q for a in mats], axis=0))
            q = np.mean([a.T @ p for a in mats], axis=0)
            self._q[j] = q
            out[sl] = (p @ q.T).ravel()
            for w, a in enumerate(mats):
                decoded[w][sl] = (p @ (p.T @ a)).ravel()   # what this worker's share decodes to
        if ef:
            self.residual = [v - d for v, d in zip(vs, decoded, strict=True)]
        return out


def _bf16(x: np.ndarray) -> np.ndarray:
    """Round to bfloat16 (nearest, ties to even) and back."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return rounded.view(np.float32).astype(np.float64)


def _qsgd(v: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    """QSGD: |v_i|/‖v‖ rounded stochastically to one of s = 2^(bits−1) − 1 levels, sign kept (unbiased)."""
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        return np.zeros_like(v)
    s = 2 ** (bits - 1) - 1
    level = np.abs(v) / norm * s
    low = np.floor(level)
    q = low + (rng.random(v.shape) < level - low)
    return np.sign(v) * q * norm / s
