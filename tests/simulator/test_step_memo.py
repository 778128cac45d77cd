"""Steps solved once per structure: proportional sizes scale, ring rotations are timed together.

Under max-min sharing the rates do not depend on the sizes and the order in which flows
finish depends on their ratios only, so multiplying every size by ``c`` multiplies every
finish time less its latency by ``c``. ``Network`` keeps one solve per (routes, sizes over
their gcd); these tests check the claim on coupled steps against fresh solves, and check
that ring steps timed from ``Step.rotation`` give exactly the per-step durations.
"""

from __future__ import annotations

import numpy as np
import pytest

import topologies
from simulator import collectives
from simulator.collectives import Step
from simulator.network import Fluid, Network


def coupled_step():
    """Incast and cross traffic on an oversubscribed fat tree: several bottleneck levels and epochs."""
    g = topologies.build("fat_tree", k=4, bandwidth=1e9, latency=1e-6, oversubscription=2)
    src = np.array([1, 2, 3, 4, 5, 8, 9, 12, 6, 7])
    dst = np.array([0, 0, 0, 0, 0, 0, 0, 0, 14, 15])
    sizes = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3], dtype=float) * 1000.0
    return g, src, dst, sizes


@pytest.mark.parametrize("c", [1, 2, 7, 1000, 12345])
def test_scaling_sizes_scales_finish_times_less_latency(c):
    g, src, dst, sizes = coupled_step()
    net = Network(g)
    base = net.finish_times(src, dst, sizes)
    scaled = net.finish_times(src, dst, c * sizes)
    latency = net.flows(src, dst, sizes).latency
    assert len(np.unique(np.round(base - latency, 15))) > 3          # really several epochs
    np.testing.assert_allclose(scaled - latency, c * (base - latency), rtol=1e-13)


def test_a_scaled_step_is_one_solve_and_equals_a_fresh_solve():
    g, src, dst, sizes = coupled_step()
    memo = Network(g)
    first = memo.step_time(src, dst, sizes)
    assert memo.steps_solved == 1
    for c in (2, 3, 1000):
        got = memo.step_time(src, dst, c * sizes)
        fresh = Network(g).step_time(src, dst, c * sizes)
        assert got == pytest.approx(fresh, rel=1e-13)
        assert got != first
    assert memo.steps_solved == 1
    memo.step_time(src, dst, sizes + np.arange(len(sizes)))          # other ratios: a solve of their own
    assert memo.steps_solved == 2


def test_the_first_solve_of_a_shape_is_exactly_the_unmemoised_one():
    g, src, dst, sizes = coupled_step()
    net = Network(g)
    flows = net.flows(src, dst, sizes)
    assert net.step_time(src, dst, sizes) == float(Fluid().finish_times(flows, net.routing.capacity).max())


def test_sizes_that_are_not_whole_bytes_are_never_scaled():
    g, src, dst, sizes = coupled_step()
    net = Network(g)
    net.step_time(src, dst, sizes + 0.5)
    net.step_time(src, dst, 2 * sizes + 1.0)
    assert net.steps_solved == 2


def plain_steps_time(net: Network, s, gamma: float) -> float:
    """Every step through ``step_time`` with copied arrays (no shared views, no rotation)."""
    total = 0.0
    for st in s.steps:
        nbytes = np.asarray(s.chunk_bytes, dtype=float)[st.chunk.copy()]
        total += net.step_time(st.src.copy(), st.dst.copy(), nbytes, st.reduce.copy())
    return total


@pytest.mark.parametrize("collective", ["allreduce", "reduce_scatter", "allgather"])
@pytest.mark.parametrize("size", [64 * 1000 + 3, 64 * 1000 + 13, 5, 1 << 20])
def test_ring_rotations_give_exactly_the_per_step_durations(collective, size):
    g = topologies.build("hierarchical", nodes=8, devices_per_node=8, intra_bandwidth=3e11, intra_latency=1e-6,
                         inter_bandwidth=1.25e10, inter_latency=2e-6)
    s = collectives.schedule("ring", 64, size, collective=collective)
    assert all(st.rotation is not None for st in s.steps)
    fast, _ = Network(g, gamma=3e-11).schedule_cost(s)
    assert fast == plain_steps_time(Network(g, gamma=3e-11), s, 3e-11)


def test_rotation_is_read_from_the_layout_and_refused_otherwise():
    s = collectives.schedule("ring", 8, 800)
    assert [st.rotation for st in s.steps[:3]] == [int(st.chunk[0]) for st in s.steps[:3]]
    for st in s.steps:
        assert np.array_equal(st.chunk, (st.rotation + np.arange(8)) % 8)
    copied = Step(s.steps[0].src, s.steps[0].dst, s.steps[0].chunk.copy(), s.steps[0].reduce)
    assert copied.rotation is None                                   # not a view: not shown
    base = np.arange(16, dtype=np.int32) % 8
    base[9] = 3
    base.flags.writeable = False
    assert Step(np.arange(8), np.roll(np.arange(8), -1), base[4:12], np.zeros(8, bool)).rotation is None


def test_rates_kept_per_alive_set_give_exactly_a_fresh_solve():
    g, src, dst, sizes = coupled_step()
    net = Network(g)
    batches = [net.flows(src, dst, sizes + extra) for extra in (0, np.arange(10) * 7.0, np.arange(10)[::-1] * 3.0)]
    reused = Fluid()
    for flows in batches:
        got = reused.finish_times(flows, net.routing.capacity)
        assert np.array_equal(got, Fluid().finish_times(flows, net.routing.capacity))
    assert len(reused._rates) < sum(len(np.unique(b.nbytes)) for b in batches)   # alive sets were met again


def test_a_network_reused_over_ring_sizes_gives_each_size_the_fresh_answer():
    g = topologies.build("hierarchical", nodes=8, devices_per_node=8, intra_bandwidth=3e11, intra_latency=1e-6,
                         inter_bandwidth=1.25e10, inter_latency=2e-6)
    net = Network(g, gamma=1e-11)
    place = np.arange(64)[::-1].copy()
    for size in (64 * 1000 + 3, 25 << 20, 64 * 1000 + 60, 7):
        s = collectives.schedule("ring", 64, size)
        assert s.steps is collectives.schedule("ring", 64, 1).steps          # steps shared between sizes
        assert net.schedule_cost(s, place) == Network(g, gamma=1e-11).schedule_cost(s, place)
        assert net.schedule_cost(s) == (plain_steps_time(Network(g, gamma=1e-11), s, 1e-11),
                                        float(len(s.steps) * s.chunk_bytes.sum()))
