"""CUDA executor: the same oracle as the CPU tests.

In CI this runs on the CUDA simulator (``tests/conftest.py`` sets
``NUMBA_ENABLE_CUDASIM=1`` before Numba is imported), on small sizes and
fewer cases, because every simulated GPU thread is a Python thread. The
``gpu``-marked tests need a real device: run them with
``NUMBA_ENABLE_CUDASIM=0 python -m pytest -m gpu tests/kernels``; without a GPU
they skip.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_oracle import assert_matches, inputs, options
from numba import config, cuda

import kernels
from kernels.lowering import element_schedule
from simulator.collectives import ALGORITHMS, ScheduleError

PAIRS = sorted(ALGORITHMS)
SIMULATED = bool(config.ENABLE_CUDASIM)

needs_simulator = pytest.mark.skipif(not SIMULATED, reason="runs on the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)")
needs_gpu = pytest.mark.skipif(SIMULATED or not cuda.is_available(), reason="needs a real CUDA GPU")


@pytest.fixture(scope="module")
def executors():
    started: dict[int, kernels.Executor] = {}

    def get(ranks: int) -> kernels.Executor:
        if ranks not in started:
            started[ranks] = kernels.executor("cuda", ranks)
        return started[ranks]

    yield get
    for ex in started.values():
        ex.close()


def check_case(executors, collective, algorithm, ranks, nelems, dtype, op="sum"):
    try:
        s = element_schedule(algorithm, ranks, nelems, dtype, collective, **options(collective, algorithm, ranks))
    except ScheduleError as e:
        pytest.skip(f"{algorithm} {collective} does not serve p={ranks}: {e}")
    bufs = inputs(s.ranks, nelems, dtype, seed=nelems + ranks)
    out = executors(s.ranks).run(s, bufs, op=op)
    assert_matches(s, bufs, out, op, f"cuda {algorithm} {collective} p={ranks} n={nelems} {dtype} {op}")


@needs_simulator
@pytest.mark.parametrize("ranks", [2, 3, 4, 8])
@pytest.mark.parametrize(("collective", "algorithm"), PAIRS, ids=[f"{c}-{a}" for c, a in PAIRS])
def test_every_algorithm_matches_numpy_on_the_simulator(executors, collective, algorithm, ranks):
    check_case(executors, collective, algorithm, ranks, 2 * ranks + 1, "int32")
    check_case(executors, collective, algorithm, ranks, 1, "float32")
    check_case(executors, collective, algorithm, ranks, 3 * ranks - 1, "float64")


@needs_simulator
@pytest.mark.parametrize("dtype", kernels.DTYPES)
@pytest.mark.parametrize("op", ["sum", "max", "min"])
def test_ring_at_8_ranks_every_dtype_and_op_on_the_simulator(executors, dtype, op):
    check_case(executors, "allreduce", "ring", 8, 19, dtype, op)


@needs_simulator
def test_grid_stride_loops_cover_chunks_larger_than_the_grid(executors):
    """The simulator's grid is 2 x 4-thread blocks: a 37-element chunk needs the grid-stride loop."""
    check_case(executors, "allreduce", "recursive_doubling", 2, 75, "float64")


@needs_simulator
def test_time_on_the_simulator_checks_and_returns_one_value_per_repeat(executors):
    s = element_schedule("ring", 2, 16, "float32")
    seconds = executors(2).time(s, "float32", repeats=2, warmup=1)
    assert seconds.shape == (2,) and (seconds > 0).all()


def test_devices_available_lists_cuda_exactly_when_numba_can_use_it():
    assert kernels.devices_available() == (["cpu", "cuda"] if cuda.is_available() else ["cpu"])


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("ranks", [2, 3, 4, 8])
@pytest.mark.parametrize(("collective", "algorithm"), PAIRS, ids=[f"{c}-{a}" for c, a in PAIRS])
def test_every_algorithm_matches_numpy_on_a_gpu(executors, collective, algorithm, ranks):
    for nelems in (1, 2 * ranks + 1, 100_003):
        for dtype in kernels.DTYPES:
            check_case(executors, collective, algorithm, ranks, nelems, dtype)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_on_a_gpu(executors, op):
    for dtype in kernels.DTYPES:
        check_case(executors, "allreduce", "ring", 4, 1 << 20, dtype, op)


@pytest.mark.gpu
@needs_gpu
def test_gpu_timing_is_positive_and_checked(executors):
    s = element_schedule("ring", 4, 1 << 22, "float32")
    seconds = executors(4).time(s, "float32", repeats=3)
    assert seconds.shape == (3,) and (seconds > 0).all() and np.isfinite(seconds).all()
