"""Pipeline schedules as data: for each stage, the ordered list of its forward and backward ops.

An :class:`Op` is ``(stage, microbatch, kind, chunk)``; a schedule is one tuple of
ops per stage, executed in that order by the stage. Data dependencies are implied
and the same for every schedule: a forward of virtual stage ``u`` needs the forward
of ``u − 1`` (same microbatch) to have arrived, a backward of ``u`` needs the
backward of ``u + 1``; virtual stage ``u = chunk · P + stage``. What differs between
schedules is only the order, which sets the bubble and the activation memory:

- ``gpipe`` (Huang et al. 2019): all M forwards, then all M backwards. Bubble
  (P−1)/(M+P−1) of the time with uniform stages; every stage holds M microbatches'
  activations at its peak.
- ``1f1b`` (PipeDream-Flush; Narayanan et al. 2021, Fig. 4): stage s runs
  ``min(P−s−1, M)`` warm-up forwards, then alternates one forward, one backward,
  then drains. Same bubble as GPipe, but at most ``min(P−s, M)`` microbatches in flight.
- ``interleaved`` (Narayanan et al. 2021, §2.2; Megatron-LM's
  ``forward_backward_pipelining_with_interleaving``): each stage holds ``v`` model
  chunks and runs them in groups of P microbatches; the bubble shrinks by v, at the
  cost of v times more point-to-point transfers. Needs M a multiple of P.

:func:`check` verifies a schedule (each (microbatch, chunk) forward once and backward
once per stage, forward first); :func:`peak_in_flight` reads the activation memory a
schedule needs off its op list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["SCHEDULES", "Op", "build_schedule", "check", "gpipe", "interleaved", "one_f_one_b", "peak_in_flight"]


@dataclass(frozen=True, slots=True)
class Op:
    stage: int
    microbatch: int
    kind: Literal["F", "B"]
    chunk: int = 0

    def virtual_stage(self, stages: int) -> int:
        return self.chunk * stages + self.stage


Schedule = tuple[tuple[Op, ...], ...]  # one op list per stage


def gpipe(stages: int, microbatches: int) -> Schedule:
    """All forwards, then all backwards (in microbatch order)."""
    return tuple(tuple([Op(s, m, "F") for m in range(microbatches)] + [Op(s, m, "B") for m in range(microbatches)])
                 for s in range(stages))


def one_f_one_b(stages: int, microbatches: int) -> Schedule:
    """PipeDream-Flush 1F1B: warm-up forwards, steady one-forward-one-backward, cool-down backwards."""
    out = []
    for s in range(stages):
        warm = min(stages - s - 1, microbatches)
        ops = [Op(s, m, "F") for m in range(warm)]
        for i in range(microbatches - warm):
            ops += [Op(s, warm + i, "F"), Op(s, i, "B")]
        ops += [Op(s, m, "B") for m in range(microbatches - warm, microbatches)]
        out.append(tuple(ops))
    return tuple(out)


def interleaved(stages: int, microbatches: int, chunks: int) -> Schedule:
    """Interleaved 1F1B with ``chunks`` model chunks per stage (Megatron-LM's order).

    The k-th forward of a stage is microbatch ``(k // (P·v))·P + k % P`` of chunk
    ``(k // P) % v``; backwards visit the chunks in reverse. Stage s warms up with
    ``2(P−s−1) + (v−1)·P`` forwards (all of them when M = P).
    """
    p, v, m = stages, chunks, microbatches
    if m % p:
        raise ValueError(f"interleaved schedule needs microbatches ({m}) to be a multiple of stages ({p})")
    total = m * v

    def op(s: int, k: int, kind: Literal["F", "B"]) -> Op:
        c = (k // p) % v
        return Op(s, (k // (p * v)) * p + k % p, kind, c if kind == "F" else v - 1 - c)

    out = []
    for s in range(p):
        warm = total if m == p else min(2 * (p - s - 1) + (v - 1) * p, total)
        ops = [op(s, k, "F") for k in range(warm)]
        for i in range(total - warm):
            ops += [op(s, warm + i, "F"), op(s, i, "B")]
        ops += [op(s, k, "B") for k in range(total - warm, total)]
        out.append(tuple(ops))
    return tuple(out)


SCHEDULES = ("gpipe", "1f1b", "interleaved")


def build_schedule(name: str, stages: int, microbatches: int, chunks: int = 1) -> Schedule:
    """The schedule ``name`` (one of :data:`SCHEDULES`), checked."""
    if name == "gpipe":
        sched = gpipe(stages, microbatches)
    elif name == "1f1b":
        sched = one_f_one_b(stages, microbatches)
    elif name == "interleaved":
        sched = interleaved(stages, microbatches, chunks)
    else:
        raise ValueError(f"unknown pipeline schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    check(sched, stages, microbatches, chunks if name == "interleaved" else 1)
    return sched


def check(sched: Schedule, stages: int, microbatches: int, chunks: int) -> None:
    """Raise ``ValueError`` unless every stage runs F then B of every (microbatch, chunk) exactly once."""
    if len(sched) != stages:
        raise ValueError(f"schedule has {len(sched)} stage lists, expected {stages}")
    want = {(m, c) for m in range(microbatches) for c in range(chunks)}
    for s, ops in enumerate(sched):
        seen: dict[str, list[tuple[int, int]]] = {"F": [], "B": []}
        for op in ops:
            if op.stage != s:
                raise ValueError(f"stage {s}'s list holds {op}")
            if op.kind == "B" and (op.microbatch, op.chunk) not in seen["F"]:
                raise ValueError(f"stage {s}: backward of microbatch {op.microbatch} chunk {op.chunk} "
                                 "before its forward")
            seen[op.kind].append((op.microbatch, op.chunk))
        for kind, got in seen.items():
            if sorted(got) != sorted(want):
                raise ValueError(f"stage {s}: {kind} ops cover {sorted(got)}, expected each of {sorted(want)} once")


def peak_in_flight(ops: Sequence[Op], chunk_bytes: Sequence[float] | None = None) -> float:
    """Largest activation memory a stage holds while running ``ops`` in order.

    A forward stores its chunk's activations until the matching backward frees them.
    ``chunk_bytes[c]`` is what one microbatch of chunk ``c`` stores (default 1 each,
    so the result counts microbatches in flight).
    """
    live = peak = 0.0
    for op in ops:
        size = 1.0 if chunk_bytes is None else float(chunk_bytes[op.chunk])
        live += size if op.kind == "F" else -size
        peak = max(peak, live)
    return peak
