"""CPU executors: every registered algorithm's result equals numpy's, on real rank processes.

One process executor per rank count is started for the whole module (processes
are started once per session, as the executor is meant to be used).
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_oracle import assert_matches, inputs, options

import kernels
from kernels.lowering import element_schedule
from simulator.collectives import ALGORITHMS, Schedule, ScheduleError, schedule

PAIRS = sorted(ALGORITHMS)
RANKS = (2, 3, 4, 8)


def nelems_for(ranks: int) -> tuple[int, ...]:
    """One element, a size p does not divide, a round size, and one past a page of float32."""
    return (1, 2 * ranks + 1, 1000, 1025)


@pytest.fixture(scope="module")
def executors():
    """``get(ranks)``: a process executor per rank count, started on first use, closed at the end."""
    started: dict[int, kernels.Executor] = {}

    def get(ranks: int) -> kernels.Executor:
        if ranks not in started:
            started[ranks] = kernels.executor("cpu", ranks, timeout_s=30)
        return started[ranks]

    yield get
    for ex in started.values():
        ex.close()


def build(collective: str, algorithm: str, ranks: int, nelems: int, dtype: str) -> Schedule:
    try:
        return element_schedule(algorithm, ranks, nelems, dtype, collective, **options(collective, algorithm, ranks))
    except ScheduleError as e:
        pytest.skip(f"{algorithm} {collective} does not serve p={ranks}: {e}")


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize(("collective", "algorithm"), PAIRS, ids=[f"{c}-{a}" for c, a in PAIRS])
def test_every_algorithm_matches_numpy(executors, collective, algorithm, ranks):
    for nelems in nelems_for(ranks):
        for dtype in kernels.DTYPES:
            s = build(collective, algorithm, ranks, nelems, dtype)
            bufs = inputs(s.ranks, nelems, dtype, seed=nelems * 7 + ranks)
            before = [b.copy() for b in bufs]
            out = executors(s.ranks).run(s, bufs)
            case = f"{algorithm} {collective} p={ranks} n={nelems} {dtype}"
            assert_matches(s, bufs, out, "sum", case)
            for b, orig in zip(bufs, before, strict=True):
                np.testing.assert_array_equal(b, orig, err_msg=f"{case}: inputs modified")


SUMMING_PAIRS = [pair for pair in PAIRS if pair[0] in ("allreduce", "reduce", "reduce_scatter", "ps_push")]


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize(("collective", "algorithm"), SUMMING_PAIRS, ids=[f"{c}-{a}" for c, a in SUMMING_PAIRS])
def test_max_and_min(executors, collective, algorithm, op):
    for dtype in kernels.DTYPES:
        s = build(collective, algorithm, 4, 37, dtype)
        bufs = inputs(s.ranks, 37, dtype, seed=3)
        assert_matches(s, bufs, executors(s.ranks).run(s, bufs, op=op), op, f"{algorithm} {collective} {op} {dtype}")


@pytest.mark.parametrize("algorithm", ["ring", "rabenseifner", "double_binary_tree"])
def test_thread_mode_gives_the_same_results(algorithm):
    with kernels.executor("cpu", 4, mode="thread") as ex:
        assert ex.mode == "thread"
        for dtype in kernels.DTYPES:
            s = build("allreduce", algorithm, 4, 1001, dtype)
            bufs = inputs(4, 1001, dtype, seed=5)
            assert_matches(s, bufs, ex.run(s, bufs), "sum", f"thread {algorithm} {dtype}")
        assert len(ex.time(s, "float32", repeats=3, warmup=1)) == 3


def test_both_reduces_of_an_exchange_read_the_values_from_before_the_step(executors):
    """Ranks 0 and 1 add each other's buffer in the same step: both must end with a + b.

    An executor that let rank 1 read rank 0's buffer after rank 0 had already
    added into it would give rank 1 ``a + b + b``.
    """
    s = Schedule.from_transfers("allreduce", "exchange", 2, [4 * 64],
                                [[(0, 1, 0, "reduce"), (1, 0, 0, "reduce")]])
    a, b = np.arange(64, dtype=np.int32), np.full(64, 1000, dtype=np.int32)
    out = executors(2).run(s, [a, b])
    np.testing.assert_array_equal(out[0], a + b)
    np.testing.assert_array_equal(out[1], a + b)


def test_copy_and_reduce_of_one_cell_in_one_step_see_the_old_value(executors):
    """Rank 1 copies its chunk to rank 2 while rank 0 reduces into it: rank 2 must get rank 1's original."""
    s = Schedule.from_transfers("reduce", "by_hand", 3, [4 * 8], [[(0, 1, 0, "reduce"), (1, 2, 0, "copy")]], root=1)
    bufs = [np.full(8, v, dtype=np.int32) for v in (1, 10, 100)]
    out = executors(3).run(s, bufs)
    np.testing.assert_array_equal(out[2], bufs[1])  # rank 1's value from before the step, not 11
    np.testing.assert_array_equal(out[1], bufs[0] + bufs[1])


def test_schedules_cut_between_bytes_of_an_element_are_realigned():
    """``schedule(..)`` splits bytes; 10 float32 over 4 ranks gives 10-byte chunks. The result is still exact."""
    bufs = inputs(4, 10, "int32", seed=1)
    s = schedule("ring", 4, bufs[0].nbytes)
    assert s.chunk_bytes.tolist() == [10, 10, 10, 10]
    out = kernels.run_collective(s, bufs)
    for r in range(4):
        np.testing.assert_array_equal(out[r], np.sum(bufs, axis=0))


def test_run_collective_keeps_the_input_shape_and_dtype():
    bufs = [np.full((3, 5), r, dtype=np.float64) for r in range(3)]
    out = kernels.run_collective(schedule("recursive_doubling", 3, bufs[0].nbytes), bufs)
    assert [o.shape for o in out] == [(3, 5)] * 3
    assert all(o.dtype == np.float64 and (o == 3.0).all() for o in out)


def test_time_returns_one_positive_duration_per_repeat(executors):
    s = element_schedule("ring", 4, 4096, "float32")
    seconds = executors(4).time(s, "float32", repeats=4, warmup=1)
    assert seconds.shape == (4,) and (seconds > 0).all()
    assert executors(4).time(s, "int32", repeats=1, op="max").shape == (1,)


def test_time_check_catches_a_wrong_result(monkeypatch):
    """``check=True`` compares with numpy: an executor that gets one element wrong fails loudly."""
    from kernels.cpu import ThreadExecutor

    real = ThreadExecutor._execute

    def off_by_one(self, low, init, op, warmup, repeats, snapshot):
        work, seconds = real(self, low, init, op, warmup, repeats, snapshot)
        if work is not None:
            work[1, 3] += 1
        return work, seconds

    monkeypatch.setattr(ThreadExecutor, "_execute", off_by_one)
    with kernels.executor("cpu", 2, mode="thread") as ex:
        s = element_schedule("ring", 2, 64, "int32")
        with pytest.raises(kernels.KernelError, match=r"rank 1 element 3 .* numpy says"):
            ex.time(s, "int32", repeats=1)
        ex.time(s, "int32", repeats=1, check=False)  # not checked: no error


def test_bad_arguments_are_value_errors(executors):
    ex = executors(2)
    s = element_schedule("ring", 2, 8, "float32")
    with pytest.raises(ValueError, match="expected 2 buffers"):
        ex.run(s, [np.zeros(8, np.float32)])
    with pytest.raises(ValueError, match="dtype: expected one of float32, float64, int32"):
        ex.run(s, [np.zeros(16, np.float16)] * 2)
    with pytest.raises(ValueError, match="is for 32 bytes per rank"):
        ex.run(s, [np.zeros(9, np.float32)] * 2)
    with pytest.raises(ValueError, match="op: expected one of sum, max, min"):
        ex.run(s, [np.zeros(8, np.float32)] * 2, op="prod")
    with pytest.raises(ValueError, match="addresses 3 ranks"):
        ex.run(element_schedule("ring", 3, 8, "float32"), [np.zeros(8, np.float32)] * 2)
    with pytest.raises(ValueError, match="device: expected one of cpu, cuda"):
        kernels.executor("tpu", 2)
    with pytest.raises(ValueError, match="mode: expected one of process, thread"):
        kernels.executor("cpu", 2, mode="fiber")


@pytest.mark.parametrize("algorithm, ranks, info", [
    ("double_binary_tree", 6, {"pipeline_chunks": 5}),
    ("hierarchical", 6, {"devices_per_node": 2, "inter": "rabenseifner"}),
    ("hierarchical", 8, {"devices_per_node": 2, "inter": "double_binary_tree", "intra": "rabenseifner",
                         "pipeline_chunks": 3}),
])
def test_algorithm_options_run_on_the_thread_executor(algorithm, ranks, info):
    """Pipelined trees and composed hierarchical schedules (communication.algorithm_options) agree with numpy."""
    with kernels.executor("cpu", ranks, mode="thread") as ex:
        for dtype in ("float64", "int32"):
            s = element_schedule(algorithm, ranks, 203, dtype, **info)
            bufs = inputs(ranks, 203, dtype, seed=7)
            assert_matches(s, bufs, ex.run(s, bufs), "sum", f"thread {algorithm} {info} {dtype}")


@pytest.mark.parametrize("collective", ["reduce_scatter", "allgather"])
@pytest.mark.parametrize("ranks, info", [
    (8, {"devices_per_node": 2, "inter": "rabenseifner", "intra": "rabenseifner"}),
    (8, {"devices_per_node": 4, "intra": "rabenseifner"}),
    (6, {"devices_per_node": 2}),
    (6, {"devices_per_node": 3}),
])
def test_hierarchical_reduce_scatter_and_allgather_run_on_the_thread_executor(collective, ranks, info):
    """Two levels with strided shards (rank r owns chunk r, a message carries chunks l, g + l, ...) agree with numpy."""
    with kernels.executor("cpu", ranks, mode="thread") as ex:
        for dtype in ("float64", "int32"):
            s = element_schedule("hierarchical", ranks, 203, dtype, collective, **info)
            bufs = inputs(ranks, 203, dtype, seed=11)
            assert_matches(s, bufs, ex.run(s, bufs), "sum", f"thread hierarchical {collective} {info} {dtype}")
