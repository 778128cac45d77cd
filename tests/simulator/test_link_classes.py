"""Link classes (topologies/link_classes.py): efficiency scales bandwidth, software latency adds per message.

Closed forms, for a ring allreduce of S bytes on p devices of one switch (links of bandwidth B,
latency a per hop, p | S): 2(p−1) steps, each a rotation in which every device sends one chunk of
S/p bytes two hops (device → switch → device), no two flows on one directed link, so a step lasts
``2a + S/(p·B)``. With efficiency e each link carries e·B, so the bandwidth term is S/(p·e·B):
exactly 1/e times today's. A message pays its route's largest software latency L once, so each
step lasts L longer and the ring ``2(p−1)·L`` longer. A launch latency λ is paid once per collective.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import topologies
from simulator import collectives
from simulator.config import ConfigError, load_config
from simulator.network import Network
from simulator.run import simulate
from tests.simulator.test_engine_matrix import job
from topologies.link_classes import CLASSES

P, S, B, A = 8, 8 * 2**24, 100e9, 1e-6


def ring_time(graph, model="fluid", launch=0.0) -> float:
    net = Network(graph, model, launch_latency=launch)
    return net.schedule_time(collectives.schedule("ring", P, S))


def switch(**attrs):
    g = topologies.build("switch", n=P, bandwidth=B, latency=A)
    for _, _, data in g.edges(data=True):
        data.update(attrs)
    topologies.check(g)
    return g


def closed_form(e=1.0, soft=0.0, launch=0.0) -> float:
    return 2 * (P - 1) * (2 * A + S / (P * e * B) + soft) + launch


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
def test_generic_class_efficiency_one_and_no_software_latency_are_todays_exact_times(model):
    today = ring_time(switch(), model)
    assert today == pytest.approx(closed_form(), rel=1e-12)
    for attrs in ({"class": "generic"}, {"efficiency": 1.0, "software_latency": 0.0},
                  {"class": "nvlink", "efficiency": 1.0, "software_latency": 0.0}):
        assert ring_time(switch(**attrs), model) == today          # bit for bit


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
@pytest.mark.parametrize("e", [0.5, 370 / 450, 0.94])
def test_efficiency_scales_the_bandwidth_term_by_exactly_one_over_e(model, e):
    latency_part = 2 * (P - 1) * 2 * A
    bandwidth_today = ring_time(switch(), model) - latency_part
    assert ring_time(switch(efficiency=e), model) - latency_part == pytest.approx(bandwidth_today / e, rel=1e-12)
    assert ring_time(switch(efficiency=e), model) == pytest.approx(closed_form(e=e), rel=1e-12)


@pytest.mark.parametrize("model", ["fluid", "alpha_beta"])
def test_software_latency_adds_exactly_2_p_minus_1_times_L_to_a_ring(model):
    soft = 5e-6
    extra = ring_time(switch(software_latency=soft), model) - ring_time(switch(), model)
    assert extra == pytest.approx(2 * (P - 1) * soft, rel=1e-9)
    # the class default is what the class says: nvlink's 3.4 us and 370/450
    nv = CLASSES["nvlink"]
    assert ring_time(switch(**{"class": "nvlink"}), model) == pytest.approx(
        closed_form(e=nv.efficiency, soft=nv.software_latency), rel=1e-12)


def test_a_message_pays_the_largest_software_latency_on_its_route_once():
    g = topologies.build("hierarchical", nodes=2, devices_per_node=1, intra_bandwidth="450GB/s",
                         inter_bandwidth="400Gbps", inter_kind="switch")
    for u, v, data in g.edges(data=True):
        data["class"] = "nvlink" if "d0" in (u, v) or "d1" in (u, v) else "infiniband_ndr"
    net = Network(g)
    plain = Network(topologies.build("hierarchical", nodes=2, devices_per_node=1, intra_bandwidth="450GB/s",
                                     inter_bandwidth="400Gbps", inter_kind="switch"))
    one = np.array([0]), np.array([1]), np.array([2.0**20])
    t, t0 = net.step_time(*one), plain.step_time(*one)
    ib = CLASSES["infiniband_ndr"]
    # bottleneck: the NIC at 50 GB/s x 0.94; software latency max(3.4, 9.6) us, once
    assert t == pytest.approx(2.0**20 / (50e9 * ib.efficiency) + ib.software_latency, rel=1e-12)
    assert t0 == pytest.approx(2.0**20 / 50e9, rel=1e-12)


def test_launch_latency_is_paid_once_per_collective():
    assert ring_time(switch(), launch=8.4e-6) == pytest.approx(ring_time(switch()) + 8.4e-6, rel=1e-12)


# --- the published figures the defaults come from ---------------------------------------


def busbw(graph, size=2**30, ranks=None) -> float:
    p = ranks or len(topologies.devices(graph))
    t = Network(graph).schedule_time(collectives.schedule("ring", p, size))
    return size / t * collectives.bus_factor("allreduce", p) / 1e9


def test_8_h100_nvlink_ring_busbw_at_1GiB_is_the_published_370_GBps():
    """nccl-tests#212/#290: ≈ 370 GB/s busbw of 450 GB/s on 8×H100 (NVSwitch); 14 × 3.4 us costs 0.9 % at 1 GiB."""
    g = topologies.build("switch", n=8, bandwidth="450GB/s")
    for _, _, data in g.edges(data=True):
        data["class"] = "nvlink"
    assert busbw(g) == pytest.approx(370, rel=0.01)
    assert busbw(g, size=64 * 2**30) == pytest.approx(370, rel=0.001)   # the asymptote is the figure itself
    plain = topologies.build("switch", n=8, bandwidth="450GB/s")
    assert busbw(plain) == pytest.approx(450, rel=1e-9)                # no class: the line rate, as before


@pytest.mark.parametrize(("cls", "rate", "published"), [("infiniband_ndr", "400Gbps", 47.0),
                                                        ("infiniband_hdr", "200Gbps", 24.0),
                                                        ("infiniband_edr", "100Gbps", 12.2)])
def test_per_nic_busbw_on_infiniband_is_the_published_figure(cls, rate, published):
    """nccl#412, nccl-tests#29: per-NIC busbw ≈ 46–48 (NDR), 24 (HDR), 12.2 (EDR) GB/s; 4 servers, 1 GPU + NIC each."""
    g = topologies.build("hierarchical", nodes=4, devices_per_node=1, intra_bandwidth="450GB/s",
                         inter_bandwidth=rate, inter_kind="switch")
    for u, v, data in g.edges(data=True):
        data["class"] = "nvlink" if any(str(n).startswith("d") for n in (u, v)) else cls
    assert busbw(g) == pytest.approx(published, rel=0.01)


# --- configs: opt-in, refused when they cannot apply, and moving every job ------------------


@pytest.mark.parametrize(("link", "match"), [
    ({"efficiency": 1.5}, r"efficiency.*less than or equal to 1"),
    ({"efficiency": 0}, r"efficiency.*greater than 0"),
    ({"class": "nvlnk"}, r"link\.class.*'nvlink'"),
    ({"software_latency": "-1us"}, r"software_latency.*duration"),
])
def test_a_link_class_key_that_cannot_apply_is_refused_in_one_line(link, match):
    cfg = job("data")
    cfg["cluster"]["topology"]["link"].update(link)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(cfg)
    assert "\n" not in str(err.value)


def test_launch_latency_with_a_calibrated_profile_is_refused(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(json.dumps({"format": "trainsim-profile/1", "regimes": [
        {"alpha_s": 1e-5, "beta_s_per_byte": 1e-9}]}))
    cfg = job("data", **{"communication.launch_latency": "8us", "cluster.profile": str(profile)})
    with pytest.raises(ConfigError, match="launch_latency.*profile") as err:
        simulate(load_config(cfg))
    assert "\n" not in str(err.value)


def test_a_topology_file_edge_with_an_unknown_class_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("nodes:\n- {name: d0, role: device, rank: 0}\n- {name: d1, role: device, rank: 1}\n"
                    "edges:\n- {u: d0, v: d1, bandwidth: 10GB/s, class: infiniband}\n")
    with pytest.raises(topologies.TopologyError, match=r"t.yaml: edge \(d0, d1\): 'class' must be one of"):
        topologies.load(path)


JOBS = [("data", "allreduce", "iteration_time_s"), ("data", "ps-bsp", "iteration_time_s"),
        ("pipeline", "allreduce", "pipeline_send_s"), ("tensor", "allreduce", "tensor_parallel_s"),
        ("pipeline", "allreduce", "gradient_sync_s")]


@pytest.mark.parametrize(("parallel", "sync", "key"), JOBS, ids=[f"{p}-{s}-{k}" for p, s, k in JOBS])
def test_the_link_class_keys_move_every_job_that_uses_the_network(parallel, sync, key):
    base = simulate(load_config(job(parallel, sync))).summary
    assert "network_efficiency" not in base and "launch_latency_s" not in base
    slower = simulate(load_config(job(parallel, sync, **{"cluster.topology.link.efficiency": 0.5}))).summary
    assert slower[key] > base[key]
    assert slower["network_efficiency"] == {"generic": 0.5}
    late = simulate(load_config(job(parallel, sync, **{"cluster.topology.link.software_latency": "20us"}))).summary
    assert late[key] > base[key]
    assert late["network_software_latency_s"]["generic"] == pytest.approx(20e-6, rel=1e-12)


def test_launch_latency_moves_the_allreduce_and_is_reported():
    base = simulate(load_config(job("data"))).summary
    late = simulate(load_config(job("data", **{"communication.launch_latency": "50us"}))).summary
    assert late["launch_latency_s"] == pytest.approx(50e-6, rel=1e-12)
    assert late["gradient_sync_s" if "gradient_sync_s" in late else "iteration_time_s"] > \
        base["gradient_sync_s" if "gradient_sync_s" in base else "iteration_time_s"]


def test_example_08_applies_its_classes_and_says_so_in_summary_and_trace(tmp_path):
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "08_dgx_h100_nccl.yaml")
    result = simulate(cfg)
    eff = result.summary["network_efficiency"]
    assert eff == {"infiniband_ndr": CLASSES["infiniband_ndr"].efficiency, "nvlink": CLASSES["nvlink"].efficiency}
    assert result.summary["launch_latency_s"] == pytest.approx(8.4e-6)
    labels = [e for e in result.trace.events if e["name"] == "process_labels"]
    assert len(labels) == 1 and "nvlink" in labels[0]["args"]["labels"]
    json.dumps(result.summary)   # strict JSON


@pytest.mark.parametrize("parallel", ["data", "pipeline"])
@pytest.mark.parametrize("sync", ["ps-bsp", "ps-asp"])
def test_launch_latency_in_a_parameter_server_job_without_collectives_is_refused(parallel, sync):
    with pytest.raises(ConfigError, match="launch_latency: a parameter-server job without tensor parallelism") as err:
        load_config(job(parallel, sync, **{"communication.launch_latency": "8us"}))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("sync", ["ps-bsp", "ps-asp"])
def test_launch_latency_slows_a_parameter_server_job_with_tensor_parallelism(sync):
    base = simulate(load_config(job("tensor", sync))).summary["iteration_time_s"]
    slow = simulate(load_config(job("tensor", sync, **{"communication.launch_latency": "50us"}))).summary
    assert slow["iteration_time_s"] > base
