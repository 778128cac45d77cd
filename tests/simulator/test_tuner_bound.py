"""Branch and bound in ``algorithm: auto`` (``simulator/tuner.py``).

Truth comes from timing every candidate in full, as the tuner did before it pruned: the floor
(``Network.schedule_floor``) and the lower bound (``Network.schedule_lower_bound``) never exceed the
simulated time, the bound is that time exactly where it says so, and pruning never changes the choice.
"""

from __future__ import annotations

import numpy as np
import pytest

import topologies
from simulator import collectives
from simulator.network import FlowBatch, Fluid, Network
from simulator.tuner import best_algorithm


def hierarchical(nodes: int, per_node: int, **extra):
    return topologies.build("hierarchical", nodes=nodes, devices_per_node=per_node, intra_bandwidth="300GB/s",
                            intra_latency="1us", inter_bandwidth="100Gbps", inter_latency="2us", **extra)


TOPOLOGIES = {   # (graph, devices per node)
    "switch": (lambda: topologies.build("switch", n=16, bandwidth="100GB/s", latency="1us"), 1),
    "fat_tree": (lambda: topologies.build("fat_tree", k=4, bandwidth="100Gbps", latency="1us",
                                          oversubscription=2), 1),
    "leaf_spine": (lambda: topologies.build("leaf_spine", leaves=4, spines=2, hosts_per_leaf=4,
                                            bandwidth="100Gbps", latency="1us", oversubscription=2), 1),
    "torus": (lambda: topologies.build("torus", dims=(4, 4), bandwidth="100Gbps", latency="1us"), 1),
    "hierarchical": (lambda: hierarchical(4, 4, inter_kind="leaf_spine"), 4),
    "hierarchical_nvls": (lambda: hierarchical(1, 8, inter_kind="switch", intra_reduce_efficiency=0.85), 8),
    "hierarchical_fat_tree": (lambda: hierarchical(8, 2, inter_kind="fat_tree", nics_per_node=2), 2),
}


def every_candidate(graph, ranks: int, sizes: list[int], dpn: int, options: dict, model: str, gamma: float):
    """Each algorithm that runs here, timed in full on a network of its own (no memo shared)."""
    out = {}
    for name in collectives.algorithms("allreduce"):
        takes = collectives.OPTIONS.get(("allreduce", name), ())
        mine = {k: v for k, v in options.items() if k in takes}
        net = Network(graph, model, gamma=gamma)
        try:
            scheds = [collectives.schedule(name, ranks, n, devices_per_node=dpn, **mine) for n in sizes]
        except collectives.ScheduleError:
            continue
        if net.supports(scheds[0]):
            out[name] = sum(net.schedule_time(s) for s in scheds)
    return out


def test_the_load_term_is_the_exact_time_of_an_incast():
    # three 1000-byte flows into one 100 B/s link (plus private 1000 B/s links): 30 s, not 10 s alone
    flows = FlowBatch(np.array([0, 2, 4, 6]), np.array([1, 0, 2, 0, 3, 0]), np.full(3, 1000.0),
                      np.array([0.5, 0.25, 1.0]))
    capacity = np.array([100.0, 1000.0, 1000.0, 1000.0])
    exact = Fluid().finish_times(flows, capacity).max()
    assert exact == pytest.approx(31.0)     # the flow with latency 1 finishes last, at 1 + 30
    assert Fluid().last_finish_lower_bound(flows, capacity) == pytest.approx(30.25)   # smallest latency + 30


def test_the_bound_never_exceeds_random_flows_finish_times():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n_links, n = int(rng.integers(2, 8)), int(rng.integers(1, 12))
        paths = [np.sort(rng.choice(n_links, size=int(rng.integers(1, min(4, n_links) + 1)), replace=False))
                 for _ in range(n)]
        ptr = np.cumsum([0] + [len(p) for p in paths])
        nbytes = np.where(rng.random(n) < 0.1, 0.0, rng.uniform(1, 1e6, n))
        flows = FlowBatch(ptr, np.concatenate(paths), nbytes, rng.uniform(0, 1e-3, n))
        capacity = rng.uniform(1e3, 1e6, n_links)
        bound = Fluid().last_finish_lower_bound(flows, capacity)
        assert bound <= Fluid().finish_times(flows, capacity).max() * (1 + 1e-9)


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_the_floor_and_the_bound_never_exceed_the_simulated_time(topology, model):
    build, dpn = TOPOLOGIES[topology]
    graph = build()
    ranks = len(Network(graph).routing.devices)
    rng = np.random.default_rng(len(topology))
    bounded, floors = 0, []
    for name in collectives.algorithms("allreduce"):
        for size in [int(rng.integers(1, 2**12)), int(rng.integers(2**20, 2**26)), 2**24]:
            for options in ({}, {"slices": 4}):
                try:
                    sched = collectives.schedule(name, ranks, size, devices_per_node=dpn, **options)
                except collectives.ScheduleError:
                    continue
                gamma = float(rng.choice([0.0, 1e-11]))
                if not Network(graph).supports(sched):
                    continue
                bound, _, exact = Network(graph, model, gamma=gamma).schedule_lower_bound(sched)
                seconds = Network(graph, model, gamma=gamma).schedule_time(sched)
                floor = Network(graph, model, gamma=gamma).schedule_floor(sched)
                assert floor <= seconds * (1 + 1e-9), (name, size, options)
                floors.append(floor / seconds)
                if exact:
                    assert bound == seconds
                else:
                    bounded += 1
                    assert bound <= seconds * (1 + 1e-9), (name, size, options)
    if model == "fluid" and topology != "switch":
        assert bounded   # the case exercised the bound, not only exact steps
    if topology in {"switch", "leaf_spine", "hierarchical", "hierarchical_nvls"}:   # routes mostly forced
        assert max(floors) > 0.99   # there the floor is close to the time (a torus is all core: floor ~ 0)


CASES = [   # (topology, sizes, options)
    ("switch", [8], {}),
    ("switch", [2**26, 3 * 2**20 + 5], {}),
    ("fat_tree", [2**24, 2**24, 123457], {}),
    ("leaf_spine", [2**22, 2**25], {"pipeline_chunks": 8}),
    ("torus", [2**20], {}),
    ("hierarchical", [2**26, 2**26, 2**20 + 3], {}),
    ("hierarchical", [4096], {}),
    ("hierarchical", [2**24], {"inter": "rabenseifner", "slices": 2}),
    ("hierarchical_nvls", [2**26, 2**22], {}),
    ("hierarchical_nvls", [64], {}),
]


@pytest.mark.parametrize("gamma", [0.0, 2e-11])
@pytest.mark.parametrize(("topology", "sizes", "options"), CASES)
def test_pruning_never_changes_the_choice(topology, sizes, options, gamma):
    build, dpn = TOPOLOGIES[topology]
    graph = build()
    ranks = len(Network(graph).routing.devices)
    every = every_candidate(graph, ranks, sizes, dpn, options, "fluid", gamma)
    choice = best_algorithm(Network(graph, gamma=gamma), ranks, sizes, options=options, devices_per_node=dpn)
    order = list(every)
    assert choice.algorithm == min(every, key=lambda k: (every[k], order.index(k)))
    assert set(choice.seconds) | set(choice.pruned) == set(every)
    assert not set(choice.seconds) & set(choice.pruned)
    assert choice.seconds == pytest.approx({k: every[k] for k in choice.seconds}, rel=1e-12)
    for name, bound in choice.pruned.items():
        assert bound <= every[name] * (1 + 1e-9)
        assert bound > choice.seconds[choice.algorithm]
    if topology == "hierarchical_nvls":
        assert "nvls" in every


def test_some_cases_prune():
    graph = hierarchical(4, 4, inter_kind="leaf_spine")
    choice = best_algorithm(Network(graph), 16, [2**26], devices_per_node=4)
    assert choice.algorithm == "hierarchical"
    assert {"recursive_doubling", "rabenseifner"} <= set(choice.pruned)


def test_a_floor_that_prunes_routes_nothing():
    graph = hierarchical(4, 4, inter_kind="leaf_spine")
    net = Network(graph)
    floors = {name: net.schedule_floor(collectives.schedule(name, 16, 2**26, devices_per_node=4))
              for name in ("hierarchical", "recursive_doubling")}
    assert floors["recursive_doubling"] > 2 * floors["hierarchical"]
    assert net.routing._paths == {} and net.steps_solved == 0


def test_with_a_calibrated_profile_nothing_is_pruned():
    from pathlib import Path

    from simulator.network.profile import load_profile

    profile = load_profile(Path(__file__).resolve().parents[2] / "validation" / "profiles" / "cpu-xeon-2core.yaml")
    graph = TOPOLOGIES["hierarchical"][0]()
    choice = best_algorithm(Network(graph, profile=profile), 16, [2**26, 4096], devices_per_node=4)
    every = {name: sum(profile.schedule_time(collectives.schedule(name, 16, n, devices_per_node=4))
                       for n in (2**26, 4096))
             for name in collectives.algorithms("allreduce")}   # a profile prices nvls too (Network.supports)
    assert choice.pruned == {}           # closed forms: every candidate priced, none reported as a bound
    assert choice.seconds == pytest.approx(every, rel=1e-12)
    assert choice.algorithm == min(every, key=every.get)
