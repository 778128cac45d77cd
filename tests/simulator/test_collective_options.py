"""Algorithm options at the schedule level: pipelined double binary trees, hierarchical with chosen phases.

Truth from outside the builders: verify's multiset postcondition, hand-derived closed forms (the
pipelined tree's below, the textbook forms of each hierarchical phase), and the simulator on
topologies where those forms must hold exactly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import topologies
from simulator import collectives
from simulator.collectives import ScheduleError, analytic_time, schedule, verify
from simulator.network import Network

INTER = ["ring", "recursive_doubling", "rabenseifner", "double_binary_tree"]


def dbt_closed_form(p: int, n: int, q: int, alpha: float, beta: float, gamma: float) -> float:
    """Pipelined double binary tree, p = 2^j >= 4, q >= 2j - 1 pieces of s = n / (2q) per tree.

    Every rank is an inner node (two children, height i, depth j - i) of one tree and a leaf of the
    other. At step k it sends: up piece k-i, down piece k-2j+i to two children, as the other tree's
    leaf up piece k; it receives piece k-i+1 from two children, k-2j+i+1 from its parent, k-2j+1 as
    a leaf (each while 0 <= piece < q). The busiest port is then 2 pieces in the first and last j
    steps, 3 in steps j and q+j-2, 4 in the q-3 between: 4q + 4j - 6 pieces in 2j + q - 1 steps.
    Reductions: two children's pieces in steps 0..q+j-3, the root's one child's piece in step q+j-2.
    """
    j = int(math.log2(p))
    s = n / (2 * q)
    return (2 * j + q - 1) * alpha + (4 * q + 4 * j - 6) * s * beta + (2 * q + 2 * j - 3) * s * gamma


@pytest.mark.parametrize("p", [4, 8, 16, 64, 128])
@pytest.mark.parametrize("q", [1, 7, 16, 33])
def test_pipelined_tree_cost_is_the_closed_form(p, q):
    if q != 1 and q < 2 * math.log2(p) - 1:
        pytest.skip("closed form derived for q >= 2 log2 p - 1 (and q = 1)")
    n = 2 * q * 3 * 2**10
    got = analytic_time("double_binary_tree", p, n, 1e-6, 1e-9, 3e-11, pipeline_chunks=q)
    assert got == pytest.approx(dbt_closed_form(p, n, q, 1e-6, 1e-9, 3e-11), rel=1e-12)


def test_pipelined_tree_on_a_switch_is_the_closed_form():
    """p = 4: no rank sends two pieces to one peer in a step, so the fluid switch is the port model."""
    graph = topologies.build("switch", n=4, bandwidth="25GB/s", latency="1us")
    net = Network(graph, "fluid", gamma=1e-11)
    n, q = 128 * 2**20, 16
    simulated = net.schedule_time(schedule("double_binary_tree", 4, n, pipeline_chunks=q), np.arange(4))
    assert simulated == pytest.approx(dbt_closed_form(4, n, q, 2e-6, 1 / 25e9, 1e-11), rel=1e-12)


def run_cli(capsys, *argv) -> list:
    from simulator.cli import main

    assert main(["collective", *argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return out if isinstance(out, list) else [out]


def test_cli_param_reaches_the_tree_and_raises_busbw(capsys):
    common = ["--algorithm", "double_binary_tree", "--ranks", "8", "--size", "128MiB", "--topology", "switch"]
    plain = run_cli(capsys, *common)[0]
    piped = run_cli(capsys, *common, "--param", "pipeline_chunks=16")[0]
    assert piped["busbw_GBps"] > 2 * plain["busbw_GBps"]
    assert piped["options"] == "pipeline_chunks=16" and "options" not in plain
    assert piped["analytic_s"] < plain["analytic_s"] / 2      # the analytic column costs the same schedule


def test_cli_param_refusals(capsys):
    from simulator.cli import main

    assert main(["collective", "--algorithm", "ring", "--ranks", "8", "--param", "pipeline_chunks=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--param: ring allreduce takes no option 'pipeline_chunks'; it takes slices")
    assert "\n" not in err
    assert main(["collective", "--algorithm", "hierarchical", "--ranks", "8", "--topology", "hierarchical",
                 "--param", "devices_per_node=2", "--param", "intra_bandwidth=300GB/s",
                 "--param", "pipeline_chunks=4"]) == 2
    assert "pipeline_chunks applies to inter: double_binary_tree only" in capsys.readouterr().err


@pytest.mark.parametrize("inter", INTER)
@pytest.mark.parametrize("intra", ["ring", "rabenseifner"])
@pytest.mark.parametrize("g", [1, 2, 4])
@pytest.mark.parametrize("m", [2, 3, 5, 6, 8])
def test_composed_hierarchical_verifies(inter, intra, g, m):
    extra = {"pipeline_chunks": 3} if inter == "double_binary_tree" else {}
    for size in (0, 7, 1000 + g * m + 1):
        verify(schedule("hierarchical", g * m, size, devices_per_node=g, inter=inter, intra=intra, **extra))


def test_composed_hierarchical_refusals():
    with pytest.raises(ScheduleError, match="intra: rabenseifner .*needs a power-of-two.*got p=3"):
        schedule("hierarchical", 12, 1200, devices_per_node=3, intra="rabenseifner")
    with pytest.raises(ScheduleError, match="inter must be one of ring, recursive_doubling, rabenseifner"):
        schedule("hierarchical", 8, 800, devices_per_node=2, inter="bruck")
    with pytest.raises(ScheduleError, match="pipeline_chunks applies to inter: double_binary_tree only"):
        collectives.check_options("hierarchical", {"inter": "rabenseifner", "pipeline_chunks": 4})


def test_defaults_are_the_two_dimensional_ring():
    legacy = schedule("hierarchical", 12, 12345, devices_per_node=4)
    explicit = schedule("hierarchical", 12, 12345, devices_per_node=4, inter="ring", intra="ring")
    assert len(legacy.steps) == len(explicit.steps) == 2 * 3 + 2 * 2
    assert legacy.chunk_bytes.tolist() == explicit.chunk_bytes.tolist()
    for a, b in zip(legacy.steps, explicit.steps, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a.messages(), b.messages(), strict=True))


def phase_closed_form(inter: str, m: int, n: float, a: float, b: float, c: float) -> float:
    """Textbook allreduce forms (Thakur, Rabenseifner & Gropp 2005) for m = 2^k ranks, n bytes."""
    k = math.log2(m)
    if inter == "ring":
        return 2 * (m - 1) * a + 2 * (m - 1) / m * n * b + (m - 1) / m * n * c
    if inter == "recursive_doubling":
        return k * (a + n * b + n * c)
    if inter == "rabenseifner":
        return 2 * k * a + 2 * (m - 1) / m * n * b + (m - 1) / m * n * c
    return dbt_closed_form(m, n, 16, a, b, c)   # m = 4: the port model holds on the fabric's switch


@pytest.mark.parametrize("inter", INTER)
@pytest.mark.parametrize("intra", ["ring", "rabenseifner"])
def test_hierarchical_time_is_the_sum_of_its_phases(inter, intra):
    """4 nodes x 2 devices, one NIC per node: the two local indices' inter-node exchanges share it."""
    g, m, n, gamma = 2, 4, 64 * 2**20, 2e-12
    bi, li, be, le = 300e9, 1e-6, 12.5e9, 2e-6
    graph = topologies.build("hierarchical", nodes=m, devices_per_node=g, intra_bandwidth=bi, intra_latency=li,
                             inter_bandwidth=be, inter_latency=le, inter_kind="switch")
    net = Network(graph, "fluid", gamma=gamma)
    extra = {"pipeline_chunks": 16} if inter == "double_binary_tree" else {}
    sched = schedule("hierarchical", g * m, n, devices_per_node=g, inter=inter, intra=intra, **extra)
    simulated = net.schedule_time(sched, np.arange(g * m))
    a1, b1 = 2 * li, 1 / bi                 # device -> intra switch -> device
    a2, b2 = 2 * li + 2 * le, g / be        # ... -> NIC -> switch -> NIC -> ...; g equal flows share each NIC
    # intra reduce-scatter and allgather over g = 2 (ring and halving/doubling coincide there)
    rs = (g - 1) * (a1 + n / g * b1 + n / g * gamma)
    ag = (g - 1) * (a1 + n / g * b1)
    expected = rs + phase_closed_form(inter, m, n / g, a2, b2, gamma) + ag
    assert simulated == pytest.approx(expected, rel=1e-12)
