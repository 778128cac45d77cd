"""The alpha-beta-gamma cost derived from each schedule equals the textbook closed form.

The closed forms below are written out here, independently of the code, from
Thakur, Rabenseifner & Gropp (2005), Patarasuk & Yuan (2009), Bruck et al.
(1997) and Chan et al. (2007). Each is checked term by term (alpha alone, beta
alone, gamma alone) and mixed, to 1e-12 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.collectives import ALGORITHMS, Schedule, Step, analytic_time, bus_factor, schedule
from simulator.collectives.analytic import per_rank_bytes, schedule_cost


def log2(p: int) -> int:
    return int(math.log2(p))


def clog2(p: int) -> int:
    return math.ceil(math.log2(p))


# (collective, algorithm) -> (which p it holds for, cost(p, n, a, b, g))
CLOSED_FORMS = {
    ("allreduce", "ring"): (
        "any",
        lambda p, n, a, b, g: 2 * (p - 1) * a + 2 * (p - 1) / p * n * b + (p - 1) / p * n * g,
    ),
    # reduced in the switch (no g), (1 + 1/p) n per port each way, pipelined in its default 32 slices
    ("allreduce", "nvls"): ("any", lambda p, n, a, b, g: 4 * a + (1 + 1 / p) * n * b * 33 / 32),
    ("allreduce", "rabenseifner"): (
        "pow2",
        lambda p, n, a, b, g: 2 * log2(p) * a + 2 * (p - 1) / p * n * b + (p - 1) / p * n * g,
    ),
    ("allreduce", "recursive_doubling"): (
        "pow2",
        lambda p, n, a, b, g: log2(p) * (a + n * b + n * g),
    ),
    ("allreduce", "binomial_tree"): (
        "any",
        lambda p, n, a, b, g: 2 * clog2(p) * (a + n * b) + clog2(p) * n * g,
    ),
    ("reduce_scatter", "ring"): (
        "any",
        lambda p, n, a, b, g: (p - 1) * a + (p - 1) / p * n * (b + g),
    ),
    ("reduce_scatter", "recursive_halving"): (
        "pow2",
        lambda p, n, a, b, g: log2(p) * a + (p - 1) / p * n * (b + g),
    ),
    ("reduce_scatter", "pairwise"): ("any", lambda p, n, a, b, g: (p - 1) * (a + n / p * (b + g))),
    ("allgather", "ring"): ("any", lambda p, n, a, b, g: (p - 1) * a + (p - 1) / p * n * b),
    ("allgather", "recursive_doubling"): (
        "pow2",
        lambda p, n, a, b, g: log2(p) * a + (p - 1) / p * n * b,
    ),
    ("allgather", "bruck"): ("any", lambda p, n, a, b, g: clog2(p) * a + (p - 1) / p * n * b),
    ("broadcast", "binomial_tree"): ("any", lambda p, n, a, b, g: clog2(p) * (a + n * b)),
    ("broadcast", "scatter_allgather"): (
        "pow2",
        lambda p, n, a, b, g: (log2(p) + p - 1) * a + 2 * (p - 1) / p * n * b,
    ),
    ("reduce", "binomial_tree"): ("any", lambda p, n, a, b, g: clog2(p) * (a + n * b + n * g)),
    ("alltoall", "pairwise"): ("any", lambda p, n, a, b, g: (p - 1) * (a + n * b / p)),
}


# MPICH's non-power-of-two allreduce: fold to p' = 2^floor(log2 p), run the core, copy back.
def _core(p: int) -> int:
    return 2 ** log2(p)


FOLDED_FORMS = {
    "recursive_doubling": lambda p, n, a, b, g: (
        (a + n * b + n * g) + log2(p) * (a + n * b + n * g) + (a + n * b)
    ),
    "rabenseifner": lambda p, n, a, b, g: (
        (a + n * b + n * g)
        + 2 * log2(p) * a
        + 2 * (_core(p) - 1) / _core(p) * n * b
        + (_core(p) - 1) / _core(p) * n * g
        + (a + n * b)
    ),
}

ANY_P = [2, 3, 4, 5, 6, 7, 8, 12, 16, 31, 32, 64]
POW2_P = [2, 4, 8, 16, 32, 64]
COEFFICIENTS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (2.5e-6, 1.0e-9, 3.0e-10)]


def close(got: float, want: float) -> bool:
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300)


def cases():
    for (collective, algorithm), (holds, form) in CLOSED_FORMS.items():
        for p in POW2_P if holds == "pow2" else ANY_P:
            yield pytest.param(collective, algorithm, p, form, id=f"{collective}-{algorithm}-p{p}")


@pytest.mark.parametrize(("collective", "algorithm", "p", "form"), list(cases()))
def test_analytic_time_equals_the_closed_form(collective, algorithm, p, form):
    n = p * 3 * 5 * 7 * 1024  # p divides n
    for a, b, g in COEFFICIENTS:
        got = analytic_time(algorithm, p, n, a, b, g, collective=collective)
        assert close(got, form(p, n, a, b, g)), (a, b, g, got, form(p, n, a, b, g))


def test_every_algorithm_with_a_closed_form_is_covered():
    assert set(CLOSED_FORMS) | {
        ("allreduce", "hierarchical"),
        ("allreduce", "double_binary_tree"),
        ("ps_push", "sharded"),
        ("ps_pull", "sharded"),
    } == set(ALGORITHMS)


@pytest.mark.parametrize("algorithm", sorted(FOLDED_FORMS))
@pytest.mark.parametrize("p", [3, 5, 6, 7, 12, 24, 33])
def test_non_power_of_two_allreduce_pays_for_the_fold(algorithm, p):
    n = _core(p) * 9 * 1024
    for a, b, g in COEFFICIENTS:
        got = analytic_time(algorithm, p, n, a, b, g)
        assert close(got, FOLDED_FORMS[algorithm](p, n, a, b, g))


@pytest.mark.parametrize(("p", "g"), [(8, 2), (8, 4), (16, 4), (12, 3), (6, 6), (6, 1), (64, 8)])
def test_hierarchical_is_intra_reduce_scatter_inter_ring_allreduce_intra_allgather(p, g):
    n = p * 5 * 1024
    m = p // g
    for a, b, c in COEFFICIENTS:
        intra_rs = (g - 1) * a + (g - 1) / g * n * (b + c)
        inter = 2 * (m - 1) * a + 2 * (m - 1) / m * (n / g) * b + (m - 1) / m * (n / g) * c
        intra_ag = (g - 1) * a + (g - 1) / g * n * b
        got = analytic_time("hierarchical", p, n, a, b, c, devices_per_node=g)
        assert close(got, intra_rs + inter + intra_ag)


@pytest.mark.parametrize(("p", "k"), [(1, 1), (4, 1), (4, 2), (3, 3), (2, 8)])
def test_parameter_server_is_one_step_bounded_by_the_busiest_port(p, k):
    n = k * 7 * 1024
    for a, b, g in COEFFICIENTS:
        busiest = max(n, p * n / k)  # a worker sends n; a server receives p shards of n/k
        push = analytic_time("sharded", p, n, a, b, g, collective="ps_push", servers=k)
        pull = analytic_time("sharded", p, n, a, b, g, collective="ps_pull", servers=k)
        assert close(push, a + busiest * b + p * n / k * g)
        assert close(pull, a + busiest * b)


def test_double_binary_tree_on_two_ranks_by_hand():
    # tree A: 1 -> 0 carries half 0; tree B (mirrored): 0 -> 1 carries half 1.
    # step 0: both halves reduce up (n/2 each way); step 1: both broadcast down.
    n = 1000
    for a, b, g in COEFFICIENTS:
        assert close(analytic_time("double_binary_tree", 2, n, a, b, g), 2 * a + n * b + n / 2 * g)


def test_a_step_cost_takes_the_busiest_rank_and_empty_steps_are_free():
    # rank 0 sends chunks 0 and 1 (30 B) to rank 1 and 2; rank 2 receives 20 + 5 B and reduces 5 B.
    busy = Step.from_transfers([(0, 1, 0, "copy"), (0, 2, 1, "copy"), (1, 2, 2, "reduce")])
    empty = Step.from_transfers([])
    s = Schedule("allreduce", "by_hand", 3, [10, 20, 5], (empty, busy, empty))
    sent, received, reduced = per_rank_bytes(busy, s.chunk_bytes, 3)
    assert sent.tolist() == [30, 5, 0]
    assert received.tolist() == [0, 10, 25]
    assert reduced.tolist() == [0, 0, 5]
    assert schedule_cost(s, 1.0, 0.0, 0.0) == 1.0
    assert schedule_cost(s, 0.0, 1.0, 0.0) == 30.0
    assert schedule_cost(s, 0.0, 0.0, 1.0) == 5.0


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(sorted(ALGORITHMS)),
    p=st.sampled_from([2, 4, 8, 16]),
    n=st.integers(0, 10**6),
)
def test_analytic_time_is_the_cost_of_the_schedule(pair, p, n):
    collective, algorithm = pair
    info = {"devices_per_node": 2, "servers": 3}
    s = schedule(algorithm, p, n, collective, **info)
    coefficients = (3e-6, 2e-9, 5e-10)
    assert close(
        analytic_time(algorithm, p, n, *coefficients, collective=collective, **info),
        schedule_cost(s, *coefficients),
    )
    # the cost of a step can be recomputed from per_rank_bytes, rank by rank (a switch rank's ports and
    # reductions are the switch's, not one rank's); sliced, one slice's pass plus c - 1 at the busiest pace
    a, b, g = coefficients
    keep, c = s.ranks - s.switches, s.slices
    by_hand = 0.0
    totals = np.zeros((3, s.ranks))
    for step in s.steps:
        if len(step):
            sent, received, reduced = (x[:keep] for x in per_rank_bytes(step, s.chunk_bytes, s.ranks))
            by_hand += a + (b * max(sent.max(), received.max()) + g * reduced.max()) / c
            totals[:, :keep] += (sent, received, reduced)
    by_hand += (c - 1) * max(b * totals[0].max(), b * totals[1].max(), g * totals[2].max()) / c
    assert close(by_hand, schedule_cost(s, *coefficients))


@pytest.mark.parametrize(
    ("collective", "p", "factor"),
    [
        ("allreduce", 8, 1.75),
        ("allreduce", 2, 1.0),
        ("allgather", 8, 0.875),
        ("reduce_scatter", 4, 0.75),
        ("alltoall", 5, 0.8),
        ("broadcast", 8, 1.0),
        ("reduce", 3, 1.0),
    ],
)
def test_bus_factors_are_nccl_tests(collective, p, factor):
    assert bus_factor(collective, p) == pytest.approx(factor, rel=1e-15)


def test_bus_factor_for_an_unknown_collective_is_an_error():
    with pytest.raises(ValueError, match="ps_push"):
        bus_factor("ps_push", 4)


def test_ring_cost_at_scale_is_cheap_and_exact():
    p, n = 4096, 4096 * 2**18
    got = analytic_time("ring", p, n, 1e-6, 1e-10, 1e-11)
    want = 2 * (p - 1) * 1e-6 + 2 * (p - 1) / p * n * 1e-10 + (p - 1) / p * n * 1e-11
    assert close(got, want)
    assert np.isfinite(got)
