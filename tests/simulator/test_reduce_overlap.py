"""Reduction overlapped with transfer: a schedule pipelined in ``slices`` (``Schedule.slices``).

Hand-derived closed form, ring allreduce of n bytes on p devices of one switch (links of bandwidth
B, latency a per hop; p·c | n, chunk m = n/p), γ seconds per byte reduced, c slices of m/c bytes.
Step after step (c = 1) a reduce-scatter step costs ``2a + m/B + γm`` and an all-gather step
``2a + m/B``. Pipelined, one slice passes every step (the fill)::

    (p-1)(2a + m/(cB) + γm/c) + (p-1)(2a + m/(cB))

and the other c - 1 slices follow at the pace of the busiest resource: a device's up-link carries
2(p-1) slices of m/c bytes in all, a device reduces p-1 of them::

    (c - 1) · max(2(p-1) m/(cB), (p-1) γ m/c)

So the reduction hides behind the transfer (γ < 2/B) or the transfer behind the reduction.
"""

from __future__ import annotations

import pytest

import topologies
from simulator import collectives
from simulator.collectives import schedule, verify
from simulator.config import ConfigError
from simulator.network import Network
from tests.simulator.test_algorithm_options import PARALLEL, summary

P, B, A = 8, 10e9, 1e-6
N = P * 64 * 2**20
M = N / P


def closed_form(c: int, gamma: float, soft: float = 0.0, e: float = 1.0) -> float:
    step = 2 * A + soft + M / (c * e * B)
    fill = (P - 1) * (step + gamma * M / c) + (P - 1) * step
    pace = max(2 * (P - 1) * M / (c * e * B), (P - 1) * gamma * M / c)
    return fill + (c - 1) * pace


def on_switch(model: str = "fluid", gamma: float = 0.0, **link) -> Network:
    g = topologies.build("switch", n=P, bandwidth=B, latency=A)
    for _, _, data in g.edges(data=True):
        data.update(link)
    return Network(g, model, gamma=gamma)


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
@pytest.mark.parametrize("gamma", [0.0, 0.5 / B, 4.0 / B])      # no reduction, transfer-bound, reduce-bound
@pytest.mark.parametrize("c", [2, 4, 16])
def test_chunked_ring_is_the_hand_derived_pipeline(model, gamma, c):
    s = schedule("ring", P, N, slices=c)
    verify(s)                                  # slicing changes the cost, not what the steps do
    assert s.slices == c and s.steps is schedule("ring", P, N).steps
    assert on_switch(model, gamma).schedule_time(s) == pytest.approx(closed_form(c, gamma), rel=1e-12)
    analytic = collectives.analytic_time("ring", P, N, 2 * A, 1 / B, gamma, slices=c)
    assert analytic == pytest.approx(closed_form(c, gamma), rel=1e-12)


def test_with_link_classes_the_fill_pays_the_software_latency_and_the_pace_the_efficiency():
    net = on_switch(gamma=0.5 / B, **{"class": "nvlink"})
    got = net.schedule_time(schedule("ring", P, N, slices=8))
    assert got == pytest.approx(closed_form(8, 0.5 / B, soft=3.4e-6, e=370 / 450), rel=1e-12)


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
def test_one_slice_is_todays_cost_bit_for_bit(model):
    gamma = 0.5 / B
    plain, one = schedule("ring", P, N), schedule("ring", P, N, slices=1)
    assert one is not None and one.slices == 1
    net = on_switch(model, gamma)
    assert net.schedule_time(one) == net.schedule_time(plain)
    assert net.schedule_time(plain) == pytest.approx(closed_form(1, gamma), rel=1e-12)
    for algorithm in ("recursive_doubling", "rabenseifner", "double_binary_tree", "binomial_tree"):
        assert collectives.analytic_time(algorithm, P, N, A, 1 / B, gamma, slices=1) == collectives.analytic_time(
            algorithm, P, N, A, 1 / B, gamma)


def test_more_slices_hide_more_of_the_reduction_but_never_beat_the_busiest_link():
    gamma = 0.5 / B
    net = on_switch(gamma=gamma)
    times = [net.schedule_time(schedule("ring", P, N, slices=c)) for c in (1, 2, 8, 64)]
    assert times == sorted(times, reverse=True)
    assert times[-1] > 2 * (P - 1) * M / B                        # the up-link carries 2(p-1)m in all


def test_every_algorithm_takes_slices_and_the_analytic_cost_agrees_on_an_ideal_switch():
    net = on_switch(gamma=0.5 / B)
    for algorithm in collectives.algorithms("allreduce"):
        if algorithm in ("nvls", "hierarchical"):
            continue
        s = schedule(algorithm, P, N, slices=4)
        want = collectives.analytic_time(algorithm, P, N, 2 * A, 1 / B, 0.5 / B, slices=4)
        assert net.schedule_time(s) == pytest.approx(want, rel=1e-9), algorithm
    with pytest.raises(collectives.ScheduleError, match="slices must be an integer >= 1"):
        schedule("ring", P, N, slices=0)


# --- from a config: every parallelism, bsp and local SGD -------------------------------------



def job(parallel: str = "data", algorithm: str = "ring", options: dict | None = None, **sync) -> dict:
    cfg = {
        "name": f"{parallel}-{algorithm}", "seed": 1,
        "cluster": {"topology": {"kind": "hierarchical", "nodes": 2, "devices_per_node": 4,
                                 "intra": {"bandwidth": "300GB/s", "latency": "1us"},
                                 "inter": {"kind": "switch", "bandwidth": "100Gbps", "latency": "2us"}},
                    "device": {"name": "a100", "memory_bandwidth": "20GB/s"}},   # a slow reduction: γ matters
        "workload": {"model": "bert_large", "batch_per_device": 8},
        "parallelism": dict(PARALLEL[parallel]),
        "communication": {"algorithm": algorithm, "bucket_size": "50MiB"},
        "training": {"iterations": 3, "warmup": 1},
    }
    if options is not None:
        cfg["communication"]["algorithm_options"] = options
    if sync:
        cfg["sync"] = sync
    return cfg




@pytest.mark.parametrize("parallel", list(PARALLEL))
@pytest.mark.parametrize("algorithm", ["ring", "hierarchical"])
def test_slices_hide_the_reduction_in_every_parallelism(parallel, algorithm):
    plain = summary(job(parallel, algorithm))
    sliced = summary(job(parallel, algorithm, {"slices": 8}))
    assert sliced["communication_s"] < plain["communication_s"]
    assert sliced["bytes_sent_per_iteration"] == pytest.approx(plain["bytes_sent_per_iteration"])
    assert summary(job(parallel, algorithm, {"slices": 1})) == plain


def test_local_sgd_averaging_is_sliced_too():
    plain = summary(job("data", mode="local_sgd", period=2))
    assert summary(job("data", options={"slices": 8}, mode="local_sgd", period=2))["communication_s"] < plain[
        "communication_s"]


def test_slices_are_refused_where_no_collective_takes_them():
    bad = job("data", options={"slices": 0})
    with pytest.raises(ConfigError, match="slices must be an integer >= 1"):
        summary(bad)
    ps = job("data", options={"slices": 4})
    ps["communication"] = {"pattern": "parameter_server", "algorithm_options": {"slices": 4}}
    with pytest.raises(ConfigError, match="parameter_server no collective carries the gradients"):
        summary(ps)


def test_cli_collective_takes_slices(capsys):
    from simulator.cli import main

    assert main(["collective", "--algorithm", "ring", "--ranks", "8", "--size", "64MiB", "--param", "slices=8",
                 "--json"]) == 0
    import json

    row = json.loads(capsys.readouterr().out)
    assert row["options"] == "slices=8" and row["analytic_s"] == pytest.approx(row["simulated_s"], rel=1e-9)
