"""The parent keeps no private copy of every rank's buffer: inputs are generated in place, checked block by block.

Each rewrite is compared with the whole-array version it replaced (numpy, in this file).
"""

from __future__ import annotations

import numpy as np
import pytest

import kernels._base as base
from kernels.lowering import fill_inputs, lower, place_inputs
from simulator import collectives


def _whole_array_buffers(ranks, nelems, dtype, seed=base.SEED):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "i":
        return [rng.integers(-1000, 1001, nelems).astype(dtype) for _ in range(ranks)]
    return [rng.uniform(-1.0, 1.0, nelems).astype(dtype) for _ in range(ranks)]


def _whole_array_check(low, init, got, op):
    want, mask = base.expected(low, init, op)
    bad = mask & (np.abs(got.astype(np.float64) - want.astype(np.float64)) > base.tolerance(low, init, op))
    if bad.any():
        r, i = (int(x[0]) for x in np.nonzero(bad))
        return f"rank {r} element {i} is {got[r, i]!r}, numpy says {want[r, i]!r} ({int(bad.sum())} wrong elements)"
    return None


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32"])
def test_blockwise_generation_draws_the_same_buffers(monkeypatch, dtype):
    monkeypatch.setattr(base, "_BLOCK", 7)  # many partial blocks
    for a, b in zip(base.random_buffers(3, 50, dtype), _whole_array_buffers(3, 50, dtype), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("collective, algorithm", [("allreduce", "ring"), ("alltoall", "pairwise"),
                                                   ("broadcast", "binomial_tree"), ("reduce_scatter", "ring")])
def test_inputs_filled_in_place_equal_place_inputs(collective, algorithm):
    s = collectives.schedule(algorithm, 4, 4 * 96, collective)
    low = lower(s, 4)
    rows = [np.full(low.elems, 9.0, dtype=np.float32) for _ in range(4)]
    fill_inputs(low, rows, base._random_rows(4, 96, "float32"))
    np.testing.assert_array_equal(np.stack(rows), place_inputs(low, base.random_buffers(4, 96, "float32")))


@pytest.mark.parametrize("collective, algorithm", [("allreduce", "ring"), ("allgather", "ring"),
                                                   ("reduce_scatter", "ring"), ("broadcast", "binomial_tree")])
def test_the_blockwise_check_reports_what_the_whole_array_check_did(monkeypatch, collective, algorithm):
    monkeypatch.setattr(base, "_BLOCK", 5)
    s = collectives.schedule(algorithm, 4, 4 * 64, collective)
    low = lower(s, 4)
    init = place_inputs(low, base.random_buffers(4, 64, "float32"))
    got, _ = base.expected(low, init, "sum")
    base.check(low, list(init), list(got), "sum")  # right: passes
    assert _whole_array_check(low, init, got, "sum") is None
    _, mask = base.expected(low, init, "sum")
    cells = np.argwhere(mask)
    for r, i in (cells[-1], cells[len(cells) // 2], cells[3]):  # spoil three defined cells
        got[r, i] += 0.5
    with pytest.raises(base.KernelError) as e:
        base.check(low, list(init), list(got), "sum")
    assert str(e.value).endswith(_whole_array_check(low, init, got, "sum"))
