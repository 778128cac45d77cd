"""The reduce operators, written once as plain ``@njit`` functions.

CPU kernels (:mod:`kernels._cpu_rank`) call the scalar operators inside their
loops; CUDA kernels (:mod:`kernels.cuda`) call :func:`combine` from
``@cuda.jit`` code, which Numba compiles for the GPU unchanged (Numba's
``test_cpu_gpu_compat.py`` idiom). An operator is chosen by its small integer
code so that one GPU kernel serves every operator; the CPU keeps one loop per
operator (see ``_cpu_rank``) so that LLVM vectorises each without a branch.

This module holds no kernels and allocates nothing.
"""

from __future__ import annotations

from numba import njit

__all__ = ["MAX", "MIN", "OPS", "SUM", "combine", "op_max", "op_min", "op_sum"]

SUM, MAX, MIN = 0, 1, 2
#: operator name -> code
OPS = {"sum": SUM, "max": MAX, "min": MIN}


@njit(cache=True)
def op_sum(a, b):
    """``a + b`` (in the arrays' dtype once stored: int32 sums wrap like numpy's)."""
    return a + b


@njit(cache=True)
def op_max(a, b):
    """The larger of ``a`` and ``b``."""
    return a if a >= b else b


@njit(cache=True)
def op_min(a, b):
    """The smaller of ``a`` and ``b``."""
    return a if a <= b else b


@njit(cache=True)
def combine(op, a, b):
    """``op(a, b)`` for the operator code ``op`` (:data:`SUM`, :data:`MAX`, :data:`MIN`)."""
    if op == SUM:
        return op_sum(a, b)
    if op == MAX:
        return op_max(a, b)
    return op_min(a, b)
