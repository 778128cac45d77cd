"""Collectives simulated on topologies, against the schedule's own α-β-γ cost and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from simulator import collectives
from simulator.network import Network
from simulator.run import collective_time

BW, LAT, GAMMA = 10e9, 1e-6, 2e-12
ALL = sorted(collectives.ALGORITHMS)


def topology_info(collective: str, algorithm: str, p: int) -> dict:
    return {"devices_per_node": 4} if algorithm == "hierarchical" else {}


@pytest.mark.parametrize(("collective", "algorithm"), ALL)
@pytest.mark.parametrize("p", [2, 5, 8, 12])
@pytest.mark.parametrize("size", [1, 1000, 2**20 + 7])
def test_ideal_switch_simulation_equals_the_schedule_cost(collective, algorithm, p, size):
    """One non-blocking switch: every flow meets only its own up- and down-link, so the
    fluid model must reproduce α + β·max(bytes in or out of a rank) + γ·max(reduced) per step,
    with α = two hops of latency."""
    info = topology_info(collective, algorithm, p)
    if algorithm == "hierarchical" and p % 4:
        pytest.skip("hierarchical needs whole nodes of 4")
    try:
        sched = collectives.schedule(algorithm, p, size, collective=collective, **info)
    except collectives.ScheduleError:
        pytest.skip(f"{algorithm} does not run on p={p}")
    # nvls: the switch reduces (its rank is the switch node, one hop from every device)
    reduce = {"reduce_efficiency": 1.0} if sched.switches else {}
    net = Network(topologies.build("switch", n=sched.ranks - sched.switches, bandwidth=BW, latency=LAT, **reduce),
                  "fluid", gamma=GAMMA)
    simulated = net.schedule_time(sched)
    hops = 1 if sched.switches else 2
    expected = collectives.analytic_time(algorithm, p, size, hops * LAT, 1 / BW, GAMMA, collective=collective, **info)
    assert simulated == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("p", [2, 3, 5, 8, 64])
@pytest.mark.parametrize("size", [64 * 2**20, 64 * 2**20 + 3])
def test_ring_allreduce_on_a_switch_equals_the_closed_form(p, size):
    t = collective_time("ring", topologies.build("switch", n=p, bandwidth=BW, latency=LAT), size)
    # Thakur, Rabenseifner & Gropp (2005); with uneven chunks each step moves the largest chunk
    chunk = -(-size // p)
    closed = 2 * (p - 1) * (2 * LAT) + 2 * (p - 1) * chunk / BW
    assert t == pytest.approx(closed, rel=1e-9)
    if size % p == 0:
        assert t == pytest.approx(2 * (p - 1) * 2 * LAT + 2 * (p - 1) / p * size / BW, rel=1e-9)


def _random_topology(draw_kind: str, seed: int):
    rng = np.random.default_rng(seed)
    bw = float(rng.uniform(1e9, 1e11))
    match draw_kind:
        case "fat_tree":
            return topologies.build("fat_tree", k=4, bandwidth=bw, latency=1e-6,
                                    oversubscription=float(rng.choice([1, 2, 4])))
        case "torus":
            return topologies.build("torus", dims=(4, 4), bandwidth=bw, latency=1e-6)
        case "ring":
            return topologies.build("ring", n=16, bandwidth=bw, latency=1e-6)
        case _:
            return topologies.build("hierarchical", nodes=4, devices_per_node=4, intra_bandwidth=bw * 10,
                                    inter_bandwidth=bw, inter_latency=2e-6, inter_kind="fat_tree")


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["fat_tree", "torus", "ring", "hierarchical"]),
       algorithm=st.sampled_from(collectives.algorithms("allreduce")),
       p=st.integers(2, 16), size=st.integers(1, 2**24), seed=st.integers(0, 2**16))
def test_simulated_time_is_never_below_the_congestion_free_bound(kind, algorithm, p, size, seed):
    """Sharing links can only slow flows down: fluid ≥ α-β (each flow alone on its path)."""
    g = _random_topology(kind, seed)
    info = {"devices_per_node": 4}
    try:
        sched = collectives.schedule(algorithm, p, size, **info)
    except collectives.ScheduleError:
        return
    if not Network(g).supports(sched):
        return  # nvls: no switch of these topologies reduces
    fluid = Network(g, "fluid").schedule_time(sched)
    alone = Network(g, "alpha_beta").schedule_time(sched)
    assert fluid >= alone * (1 - 1e-12)


def test_oversubscribed_fat_tree_slows_cross_pod_ring_by_the_bottleneck_factor():
    """k=4 fat-tree, 4:1 uplinks. A ring inside one pod's edge switch stays on full-rate host
    links; a ring over hosts in four different pods crosses the B/4 uplinks, which is the
    bottleneck of every step (the latency term is negligible at this size)."""
    g = topologies.build("fat_tree", k=4, bandwidth=10e9, latency=0.0, oversubscription=4.0)
    net = Network(g)
    n = 256 * 2**20
    within = net.schedule_time(collectives.schedule("ring", 2, n), np.array([0, 1]))
    hosts = topologies.devices(g)
    pods = [g.nodes[h]["pod"] for h in hosts]
    across = [pods.index(pod) for pod in sorted(set(pods))][:2]  # one host in each of two pods
    t_across = net.schedule_time(collectives.schedule("ring", 2, n), np.array(across))
    assert t_across / within == pytest.approx(4.0, rel=1e-9)


def test_hierarchical_allreduce_matches_its_two_level_formula():
    """nodes × g devices, intra bandwidth Bi, one NIC per node at Bn into a switch.

    Intra reduce-scatter and allgather: (g-1) steps each of n/g bytes at Bi.
    Inter ring allreduce of each n/g shard over the N nodes: g concurrent rings share each
    node's NIC, so each of the 2(N-1) steps moves g · n/(gN) = n/N bytes through a NIC at Bn.
    """
    nodes, g, bi, bn = 4, 4, 100e9, 10e9
    topo = topologies.build("hierarchical", nodes=nodes, devices_per_node=g, intra_bandwidth=bi,
                            inter_bandwidth=bn, inter_kind="switch")
    n = 64 * 2**20
    t = collective_time("hierarchical", topo, n)
    intra = 2 * (g - 1) * (n / g) / bi
    inter = 2 * (nodes - 1) * (n / nodes) / bn
    assert t == pytest.approx(intra + inter, rel=1e-9)


@pytest.mark.parametrize("size", [8, 4096, 2**20, 2**28])
def test_auto_picks_the_fastest_simulated_algorithm(size):
    from simulator.tuner import best_algorithm

    g = topologies.build("switch", n=16, bandwidth=BW, latency=LAT)
    net = Network(g)
    choice = best_algorithm(net, 16, [size], devices_per_node=1)
    best = choice.algorithm
    every = {name: net.schedule_time(collectives.schedule(name, 16, size, devices_per_node=1))
             for name in collectives.algorithms("allreduce") if name != "nvls"}  # this switch does not reduce
    assert {**choice.seconds, **choice.pruned}.keys() == every.keys()
    assert choice.seconds == pytest.approx({k: every[k] for k in choice.seconds})
    assert all(every[best] < bound <= every[k] * (1 + 1e-9) for k, bound in choice.pruned.items())
    assert every[best] == min(every.values())
    # latency-bound: a log(p)-step algorithm beats ring's 2(p-1) steps; bandwidth-bound: not a tree
    if size == 8:
        assert best in {"recursive_doubling", "rabenseifner", "binomial_tree", "double_binary_tree"}
    if size == 2**28:
        assert best in {"ring", "rabenseifner", "hierarchical"}
