"""In-switch reduction (``nvls``): the switch adds, each worker sends and receives its data about once.

Closed forms (p workers, n bytes, p | n, c slices, α per message, β per byte): each worker sends
n (step 0) + n/p (step 2) and receives n/p (step 1) + n (step 3), reduces nothing; so step after
step (c = 1) the cost is ``4α + (2 + 2/p) n β`` and pipelined in c slices
``4α + (1 + 1/p) n β (c + 1)/c``. nccl-tests' busbw, ``2(p-1)/p · n / t``, then tends to
``2(p-1)/(p+1) / β``: 1.56/β at p = 8, above the ring's 1/β.

Published figure: NCCL's maintainers report ≈ 480 GB/s busbw for NVLS allreduce on 8×H100 (NVLink 4
through NVSwitch, 450 GB/s per direction) above 256 MB (NVIDIA/nccl-tests#212/#290, as cited in
topologies/link_classes.py); with the nvlink class (370/450) and NCCL's Hopper nvlsEfficiency 0.85
the model must land within 10 % of it.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import yaml

import topologies
from simulator import collectives
from simulator.collectives import schedule, verify
from simulator.collectives.analytic import port_totals, step_maxima
from simulator.errors import TrainsimInputError
from simulator.network import Network
from tests.simulator.test_algorithm_options import PARALLEL, error, summary
from topologies.link_classes import NVLS_HOPPER_EFFICIENCY

A, B = 1e-6, 1e-9


@pytest.mark.parametrize("p", [2, 3, 5, 8, 16])
def test_the_schedule_reduces_in_the_switch_and_moves_about_n_per_port(p):
    n = p * 1000
    s = schedule("nvls", p, n)
    verify(s)
    assert (s.ranks, s.switches, s.workers, len(s.steps)) == (p + 2, 2, p, 4)
    sent, received, reduced = port_totals(s)
    assert sent == received == n + n // p and reduced == 0     # the switch's p ports are not one port
    assert step_maxima(s) == (4, 2 * n + 2 * (n // p), 0)


@pytest.mark.parametrize("p", [2, 8, 12])
@pytest.mark.parametrize("slices", [1, 2, 32])
def test_analytic_time_is_the_closed_form(p, slices):
    n = p * 2**20
    t = collectives.analytic_time("nvls", p, n, A, B, 1e-10, slices=slices)
    if slices == 1:
        assert t == pytest.approx(4 * A + (2 + 2 / p) * n * B, rel=1e-12)
    else:
        assert t == pytest.approx(4 * A + (1 + 1 / p) * n * B * (slices + 1) / slices, rel=1e-12)
    assert collectives.schedule("nvls", p, n).slices == 32      # the default: pipelined


def h100_nvswitch(efficiency: float | None = NVLS_HOPPER_EFFICIENCY):
    g = topologies.build("switch", n=8, bandwidth="450GB/s", latency=0, reduce_efficiency=efficiency)
    for _, _, data in g.edges(data=True):
        data["class"] = "nvlink"
    return g


def busbw(net: Network, algorithm: str, size: int) -> float:
    t = net.schedule_time(schedule(algorithm, 8, size))
    return size / t * collectives.bus_factor("allreduce", 8) / 1e9


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
@pytest.mark.parametrize("size", [256 * 2**20, 2**30])
def test_h100_nvls_busbw_is_within_ten_percent_of_nccls_480(model, size):
    net = Network(h100_nvswitch(), model)
    nvls, ring = busbw(net, "nvls", size), busbw(net, "ring", size)
    assert 480 * 0.9 <= nvls <= 480 * 1.1
    assert nvls > ring * 1.2                           # in-switch reduction beats the ring's 370
    # the model's own asymptote: 2(p-1)/(p+1) x 450 x 370/450 x 0.85, less the fill of 32 slices
    assert nvls < 14 / 9 * 370 * 0.85


def test_switch_efficiency_scales_only_the_switchs_traffic():
    full, derated = Network(h100_nvswitch(1.0)), Network(h100_nvswitch(0.5))
    size = 2**28
    t_full = full.schedule_time(schedule("nvls", 8, size))
    latency = 4 * 3.4e-6                                # nvlink's software latency, once per step
    assert derated.schedule_time(schedule("nvls", 8, size)) - latency == pytest.approx(2 * (t_full - latency),
                                                                                      rel=1e-9)
    assert derated.schedule_time(schedule("ring", 8, size)) == full.schedule_time(schedule("ring", 8, size))
    assert derated.efficiency_summary()["network_reduce_efficiency"] == 0.5


def test_no_gamma_is_paid_for_reducing_in_the_switch():
    g = h100_nvswitch()
    s = schedule("nvls", 8, 2**24)
    assert Network(g, gamma=1e-9).schedule_time(s) == Network(g).schedule_time(s)
    assert Network(g, gamma=1e-9).schedule_time(schedule("ring", 8, 2**24)) > Network(g).schedule_time(
        schedule("ring", 8, 2**24))


def test_a_topology_without_a_reducing_switch_is_refused_in_one_line():
    net = Network(topologies.build("switch", n=8, bandwidth="450GB/s"))
    assert not net.supports(schedule("nvls", 8, 64))
    with pytest.raises(TrainsimInputError, match="no switch that reduces") as e:
        net.schedule_time(schedule("nvls", 8, 64))
    assert "\n" not in str(e.value)
    # two servers: no one switch reduces for devices of both (trees of switches are not modelled)
    h = topologies.build("hierarchical", nodes=2, devices_per_node=4, intra_bandwidth="450GB/s",
                         inter_bandwidth="400Gbps", inter_kind="switch", intra_reduce_efficiency=0.85)
    net = Network(h)
    assert net.supports(schedule("nvls", 4, 64), np.arange(4)) and not net.supports(schedule("nvls", 8, 64))
    assert net.schedule_time(schedule("nvls", 4, 2**20), np.arange(4, 8)) > 0


def test_topology_files_declare_reducing_switches(tmp_path):
    g = h100_nvswitch()
    path = tmp_path / "nvswitch.yaml"
    topologies.save(g, path)
    back = topologies.load(path)
    assert back.nodes["s0"]["reduces"] is True and back.nodes["s0"]["reduce_efficiency"] == 0.85
    assert busbw(Network(back), "nvls", 2**28) == pytest.approx(busbw(Network(g), "nvls", 2**28))
    doc = yaml.safe_load(path.read_text())
    for bad, message in (({"reduces": "yes"}, "'reduces' must be true or false"),
                         ({"reduces": True, "reduce_efficiency": 1.5}, "'reduce_efficiency' must be a number in"),
                         ({"reduce_efficiency": 0.5}, "applies to a switch with reduces: true")):
        broken = copy.deepcopy(doc)
        node = next(n for n in broken["nodes"] if n["name"] == "s0")
        node.pop("reduces", None)
        node.pop("reduce_efficiency", None)
        node.update(bad)
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump(broken))
        with pytest.raises(topologies.TopologyError, match=message):
            topologies.load(tmp_path / "bad.yaml")
    device = copy.deepcopy(doc)
    device["nodes"][0]["reduces"] = True
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(device))
    with pytest.raises(topologies.TopologyError, match="applies to a switch, not a device"):
        topologies.load(tmp_path / "bad.yaml")


# --- from a config -----------------------------------------------------------------



def job(parallel: str = "data", algorithm: str = "nvls", reduction: dict | None = None, **communication) -> dict:
    """BERT-large on one 8-GPU NVSwitch whose switch reduces."""
    topology = {"kind": "switch", "devices": 8, "link": {"bandwidth": "450GB/s", "latency": "1us",
                                                          "class": "nvlink"}}
    if reduction is not None:
        topology["reduction"] = reduction
    return {
        "name": f"{parallel}-{algorithm}", "seed": 1,
        "cluster": {"topology": topology, "device": "h100"},
        "workload": {"model": "bert_large", "batch_per_device": 8},
        "parallelism": dict(PARALLEL[parallel]),
        "communication": {"algorithm": algorithm, "bucket_size": "50MiB", **communication},
        "training": {"iterations": 3, "warmup": 1},
    }




@pytest.mark.parametrize("parallel", list(PARALLEL))
def test_nvls_from_a_config_in_every_parallelism(parallel):
    nvls = summary(job(parallel, reduction={"efficiency": 0.85}))
    ring = summary(job(parallel, "ring"))
    assert nvls["algorithm"] == "nvls" and nvls["network_reduce_efficiency"] == 0.85
    if PARALLEL[parallel]["data"] >= 4:
        assert nvls["communication_s"] < ring["communication_s"]
    else:   # 2 ranks: nvls moves (1 + 1/2) n per port, the ring n
        assert nvls["communication_s"] > ring["communication_s"]
    slower = summary(job(parallel, reduction={"efficiency": 0.5}))
    assert slower["communication_s"] > nvls["communication_s"]


def test_auto_may_choose_nvls_where_a_switch_reduces():
    chosen = summary(job("data", "auto", reduction={"efficiency": 0.85}))
    assert "nvls" in chosen["auto_candidates_s"]
    assert chosen["algorithm"] == min(chosen["auto_candidates_s"], key=chosen["auto_candidates_s"].get)
    plain = summary(job("data", "auto"))
    assert "nvls" not in {**plain["auto_candidates_s"], **plain["auto_pruned_lower_bound_s"]}


def test_refusals_name_the_key():
    assert error(job()).startswith("communication.algorithm: nvls reduces in the switch, but no switch")
    assert "cluster.topology.reduction: only the nvls allreduce reduces in the switch" in error(
        job("data", "ring", reduction={}))
    zero = job(reduction={})
    zero["parallelism"]["zero"] = 1
    assert ("communication.algorithm: nvls has no reduce_scatter, and this job's gradients need one "
            "(parallelism.zero: 1); choose ring or rabenseifner") in error(zero)
    two = job(reduction={})
    two["cluster"]["topology"] = {"kind": "hierarchical", "nodes": 2, "devices_per_node": 4,
                                  "intra": {"bandwidth": "450GB/s"}, "reduction": {"efficiency": 0.85},
                                  "inter": {"kind": "switch", "bandwidth": "400Gbps"}}
    assert "communication.algorithm: nvls: reduces in a switch, but no switch that reduces" in error(two)
    ps = job(reduction={}, pattern="parameter_server")
    del ps["communication"]["algorithm"]
    assert "communication.pattern is parameter_server" in error(ps)
    many = job("data", "auto", reduction={"efficiency": 0.85})   # auto, but no group a switch can reduce for
    many["cluster"]["topology"] = two["cluster"]["topology"]
    assert error(many) == ("cluster.topology.reduction: auto cannot use the in-switch (nvls) allreduce here "
                           "(no switch reduces for a whole data-parallel group); remove it")
    zero_auto = job("data", "auto", reduction={"efficiency": 0.85})
    zero_auto["parallelism"]["zero"] = 2
    assert "(this job's gradients need a allgather and a reduce_scatter); remove it" in error(zero_auto)
    assert "efficiency" in error(job(reduction={"efficiency": 1.5}))


def test_cli_collective_runs_nvls_and_refuses_it_without_a_reducing_switch():
    import json

    base = [sys.executable, "-m", "simulator", "collective", "--algorithm", "nvls", "--ranks", "8",
            "--size", "256MiB", "--topology", "switch", "--bandwidth", "450GB/s", "--latency", "0",
            "--param", "class=nvlink"]
    ok = subprocess.run([*base, "--param", "reduce_efficiency=0.85", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    row = json.loads(ok.stdout)
    assert 432 <= row["busbw_GBps"] <= 528 and row["analytic_s"] == pytest.approx(row["simulated_s"], rel=1e-9)
    refused = subprocess.run(base, capture_output=True, text=True)
    assert refused.returncode == 2 and "no switch of this topology reduces" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr


def test_trainsim_run_writes_an_nvls_job_with_its_link_traffic(tmp_path):
    cfg = job("data", reduction={"efficiency": 0.85})
    path = tmp_path / "nvls.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "simulator", "run", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "plots" / "links.png").exists()
    written = yaml.safe_load((tmp_path / "out" / "summary.json").read_text())
    assert written["algorithm"] == "nvls" and written["network_reduce_efficiency"] == 0.85


def test_local_sgd_averages_with_nvls():
    base = job("data", reduction={"efficiency": 0.85})
    base["sync"] = {"mode": "local_sgd", "period": 2}
    ring = copy.deepcopy(base)
    ring["communication"]["algorithm"] = "ring"
    del ring["cluster"]["topology"]["reduction"]
    assert summary(base)["communication_s"] < summary(ring)["communication_s"]
