"""Parameter servers and training protocols (BSP / ASP / SSP / backup workers) against hand-computable truth."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from simulator import compute
from simulator.collectives.parameter_server import shard_layout
from simulator.collectives.schedule import split_evenly
from simulator.config import ConfigError, load_config
from simulator.devices import get_device
from simulator.engine import build_job
from simulator.network import Network
from simulator.network.dynamic import FlowSimulator
from simulator.run import simulate
from simulator.workloads import get_model
from tests.conftest import SMALL

BW, LAT = 10e9, 1e-6


def ps_config(small_config, workers=4, servers=1, devices=None, **sync) -> dict:
    cfg = copy.deepcopy(small_config)
    cfg["cluster"]["topology"]["devices"] = devices or workers + servers
    cfg["parallelism"] = {"data": workers}
    cfg["communication"] = {"pattern": "parameter_server", "servers": servers}
    cfg["sync"] = sync or {"mode": "bsp"}
    return cfg


def forward_backward(batch: int = 32) -> float:
    model, dev = get_model("resnet50"), get_device("a100")
    return compute.forward_time(model, dev, batch) + float(np.sum(compute.backward_times(model, dev, batch)))


# --- the flow model that carries asynchronous traffic ------------------------------------


def test_flows_started_together_finish_when_the_static_fluid_model_says():
    g = topologies.build("fat_tree", k=4, bandwidth=BW, latency=LAT, oversubscription=2.0)
    net = Network(g, "fluid")
    rng = np.random.default_rng(3)
    pairs = sorted({(int(s), int((s + d) % 16)) for s, d in zip(rng.integers(0, 16, 20), rng.integers(1, 16, 20),
                                                                 strict=True)})
    src, dst = np.array(pairs).T
    nbytes = rng.uniform(1e6, 5e7, len(src))
    expected = net.finish_times(src, dst, nbytes)
    env = simpy.Environment()
    flows, done = FlowSimulator(env, net), {}

    def one(i):
        yield flows.transfer([src[i]], [dst[i]], [nbytes[i]])
        done[i] = env.now

    for i in range(len(src)):
        env.process(one(i))
    env.run()
    np.testing.assert_allclose([done[i] for i in range(len(src))], expected, rtol=1e-12)
    assert flows.bytes_carried == pytest.approx(nbytes.sum())


def test_a_late_flow_shares_the_link_from_when_it_arrives():
    """Two flows into one receiver: A alone for 1 s, then both at half rate (hand-solved)."""
    g = topologies.build("switch", n=3, bandwidth=BW, latency=0.0)
    env = simpy.Environment()
    flows, done = FlowSimulator(env, Network(g)), {}

    def send(name, src, nbytes, delay):
        yield env.timeout(delay)
        yield flows.transfer([src], [2], [nbytes])
        done[name] = env.now

    env.process(send("a", 0, 2 * BW, 0.0))   # 2 s alone
    env.process(send("b", 1, 1 * BW, 1.0))   # arrives at 1 s
    env.run()
    # from 1 s both get BW/2: A has 1·BW left → done at 3 s; B's 1·BW also takes until 3 s
    assert done["a"] == pytest.approx(3.0, rel=1e-12)
    assert done["b"] == pytest.approx(3.0, rel=1e-12)


# --- parameter servers -------------------------------------------------------------------


def test_bsp_one_server_iteration_is_compute_push_aggregate_pull(small_config):
    """Without overlap: pull everything, compute, push everything, the server applies each push in turn."""
    cfg = load_config(ps_config(small_config, workers=4, servers=1),
                      ["communication.overlap=false", "communication.bucket_size=null"])
    s = simulate(cfg).summary
    n = float(get_model("resnet50").gradient_bytes)
    net = Network(topologies.build("switch", n=5, bandwidth=BW, latency=LAT))
    workers = np.arange(4)
    push = net.finish_times(workers, np.full(4, 4), np.full(4, n)).max()
    pull = net.finish_times(np.full(4, 4), workers, np.full(4, n)).max()
    aggregate = 4 * 3 * n / get_device("cpu").memory_bandwidth   # the server applies each push in turn
    assert push == pytest.approx(4 * n / BW + 2 * LAT, rel=1e-12)  # the server's link carries all four
    assert s["iteration_time_s"] == pytest.approx(forward_backward() + push + aggregate + pull, rel=1e-9)
    assert s["algorithm"] == "parameter_server/bsp"
    assert 0 < s["server_utilization"] < 1
    assert s["server_utilization"] == pytest.approx(aggregate / s["iteration_time_s"], rel=1e-6)


@pytest.mark.parametrize(("workers", "servers"), [(4, 2), (6, 3), (8, 4), (8, 2)])
def test_push_phase_is_the_server_link_bottleneck(small_config, workers, servers):
    """p workers push n bytes to k servers: each server link carries n·p/k bytes."""
    cfg = ps_config(small_config, workers=workers, servers=servers)
    cfg["communication"]["overlap"] = False       # one push of the whole gradient after backward
    cfg["communication"]["bucket_size"] = None
    cluster = build_job(load_config(cfg)).run()
    n = float(get_model("resnet50").gradient_bytes)
    pushes = [e for e in cluster.trace.events if e.get("name", "").startswith("push") and e["args"]["iteration"] == 0]
    assert len(pushes) == workers
    expected = max(split_evenly(int(n), servers)) * workers / BW + 2 * LAT  # a server link carries n·p/k (whole bytes)
    for e in pushes:
        assert e["dur"] * 1e-6 == pytest.approx(expected, rel=1e-9)


def test_layer_sharding_is_uneven_and_conserves_bytes():
    model = get_model("vgg16")
    per_layer = np.array([layer.params * model.bytes_per_param for layer in model.layers], dtype=float)
    even, layer = (shard_layout(per_layer, 4, kind).sum(axis=0) for kind in ("even", "layer"))
    assert even.sum() == pytest.approx(model.gradient_bytes)
    assert layer.sum() == pytest.approx(model.gradient_bytes)
    assert layer.max() > even.max() * 1.5   # VGG's first FC layer alone is most of the model


def test_colocated_servers_send_their_own_shard_nowhere(small_config):
    cfg = ps_config(small_config, workers=4, servers=4, devices=4)
    cfg["communication"]["server_placement"] = "colocated"
    dedicated = simulate(load_config(ps_config(small_config, workers=4, servers=4, devices=8))).summary
    colocated = simulate(load_config(cfg)).summary
    # each worker pushes 3 of its 4 shards over the network instead of 4
    assert colocated["bytes_sent_per_iteration"] == pytest.approx(dedicated["bytes_sent_per_iteration"] * 3 / 4)


@pytest.mark.parametrize(("override", "message"), [
    ({"parallelism": {"data": 4}, "servers": 1, "devices": 4}, "need 5 devices, but the topology has 4"),
    ({"sync": {"mode": "bsp", "backup_workers": 4}}, "sync.backup_workers: must be less than the 4 workers"),
])
def test_bad_parameter_server_setups_are_clear_errors(small_config, override, message):
    cfg = ps_config(small_config, workers=4, servers=override.get("servers", 1), devices=override.get("devices"))
    if "sync" in override:
        cfg["sync"] = override["sync"]
    with pytest.raises(ConfigError, match=message):
        simulate(load_config(cfg))


def test_asynchronous_modes_need_a_parameter_server(small_config):
    cfg = copy.deepcopy(small_config)
    cfg["sync"] = {"mode": "asp"}
    with pytest.raises(ConfigError, match="sync.mode: asp needs communication.pattern: parameter_server"):
        load_config(cfg)


# --- protocols -----------------------------------------------------------------------------


def straggling(cfg: dict, seed: int, sigma: float = 0.5, iterations: int = 12) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["seed"] = seed
    cfg["stragglers"] = {"distribution": "lognormal", "sigma": sigma, "slow_fraction": 0.25, "slowdown": 2.0}
    cfg["training"] = {"iterations": iterations, "warmup": 1}
    return cfg


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), s=st.integers(0, 3), sigma=st.floats(0.0, 1.0))
def test_ssp_never_lets_a_worker_run_more_than_s_ahead(seed, s, sigma):
    cfg = straggling(ps_config(SMALL, workers=5, servers=2, mode="ssp", staleness=s), seed, sigma)
    log = build_job(load_config(cfg)).run().sync.log
    assert len(log.clock_staleness) == 5 * 12
    assert max(log.clock_staleness) <= s
    # in updates: between a read and the push, the others can apply at most (2s+1) pushes each
    assert max(log.staleness) <= (5 - 1) * (2 * s + 1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ssp_with_bound_zero_is_bsp(small_config, seed):
    bsp = simulate(load_config(straggling(ps_config(small_config, mode="bsp"), seed)))
    ssp = simulate(load_config(straggling(ps_config(small_config, mode="ssp", staleness=0), seed)))
    # every worker's every iteration starts, waits and ends at the same moments
    for a, b in zip(ssp.iterations, bsp.iterations, strict=True):
        assert (a.rank, a.iteration) == (b.rank, b.iteration)
        assert (a.start_s, a.wait_s, a.end_s) == pytest.approx((b.start_s, b.wait_s, b.end_s), rel=1e-12)
    assert ssp.summary["clock_staleness_max"] == 0


def test_asp_throughput_beats_bsp_under_stragglers(small_config):
    for seed in range(4):
        asp = simulate(load_config(straggling(ps_config(small_config, workers=6, servers=2, mode="asp"), seed)))
        bsp = simulate(load_config(straggling(ps_config(small_config, workers=6, servers=2, mode="bsp"), seed)))
        assert asp.summary["throughput_samples_per_s"] >= bsp.summary["throughput_samples_per_s"]
        assert asp.summary["wait_s"] == 0.0 and bsp.summary["wait_s"] > 0.0
        assert asp.summary["staleness_max"] >= 1


def test_backup_workers_use_the_first_p_minus_b_gradients(small_config):
    cfg = straggling(ps_config(small_config, workers=6, servers=2, mode="bsp", backup_workers=2), seed=5)
    protocol = build_job(load_config(cfg)).run().sync.protocol
    assert protocol.steps_done == 12
    applied = sum(protocol.applied_clock)
    assert applied == 12 * 4                       # p − b pushes count per step
    plain = simulate(load_config(straggling(ps_config(small_config, workers=6, servers=2, mode="bsp"), seed=5)))
    backup = simulate(load_config(cfg))
    assert backup.summary["iteration_time_s"] < plain.summary["iteration_time_s"]


def expected_max_lognormal(p: int, sigma: float) -> float:
    """E[max of p iid lognormal(0, σ²)] = ∫ (1 − F(x)^p) dx, by the trapezoid rule (independent of the code)."""
    x = np.linspace(0.0, math.exp(8 * sigma), 400_001)
    cdf = np.array([0.0] + [0.5 * (1 + math.erf(math.log(v) / (sigma * math.sqrt(2)))) for v in x[1:]])
    return float(np.trapezoid(1 - cdf**p, x))


def test_bsp_iteration_grows_like_the_expected_maximum_of_p_draws(small_config):
    """A compute-only model (no gradient to speak of): iteration = max over p workers of their draws."""
    sigma, p = 0.3, 4
    cfg = copy.deepcopy(small_config)
    cfg["workload"] = {"model": {"name": "flops", "layers": [{"name": "l", "params": 1, "forward_flops": "1GFLOP"}]},
                       "batch_per_device": 32}
    cfg["communication"]["overlap"] = False
    cfg["communication"]["bucket_size"] = None
    cfg["stragglers"] = {"distribution": "lognormal", "sigma": sigma}
    cfg["training"] = {"iterations": 200, "warmup": 0}
    calm = simulate(load_config({**cfg, "stragglers": {}})).summary["iteration_time_s"]
    ratios = []
    for seed in range(10):
        ratios.append(simulate(load_config({**cfg, "seed": seed})).summary["iteration_time_s"] / calm)
    draws = np.array(ratios)
    truth = expected_max_lognormal(p, sigma)
    # each seed's mean over 200 iterations; the spread of those means gives the sampling error
    assert abs(draws.mean() - truth) < 4 * draws.std(ddof=1) / math.sqrt(len(draws)) + 1e-3
    assert truth > math.exp(sigma**2 / 2)   # the max is worse than one worker's mean: stragglers cost BSP


def test_device_heterogeneity_puts_a_fraction_of_workers_on_another_device(small_config):
    """Half of 4 workers on V100s: they compute at the V100's speed, every iteration; the step waits for them."""
    base = ps_config(small_config, workers=4, servers=1)
    base["communication"]["overlap"] = False      # serial workers: the A100s' waiting shows as barrier time
    base["communication"]["bucket_size"] = None
    mixed = copy.deepcopy(base)
    mixed["stragglers"] = {"heterogeneity": [{"device": "v100", "fraction": 0.5}]}
    result = simulate(load_config(mixed))
    model = get_model("resnet50")
    v100 = compute.forward_time(model, get_device("v100"), 32) + float(
        np.sum(compute.backward_times(model, get_device("v100"), 32)))
    per_rank = {r.rank: r.compute_s for r in result.iterations}
    assert sorted(per_rank.values()) == pytest.approx([forward_backward()] * 2 + [v100] * 2, rel=1e-12)
    assert all(r.compute_s == per_rank[r.rank] for r in result.iterations)   # persistent, not noise
    fast = [r.wait_s for r in result.iterations if r.compute_s < v100 and r.iteration > 0]
    assert max(fast) > 0.5 * (v100 - forward_backward())   # A100 workers wait at the barrier for the V100s
    # (the step is *not* simply longer by the compute gap: the A100s' pushes and applies now run while
    # the V100s compute, instead of contending with them, so part of the gap is hidden)


def test_unknown_heterogeneity_device_is_a_clear_error(small_config):
    cfg = ps_config(small_config)
    cfg["stragglers"] = {"heterogeneity": [{"device": "tpu_v9", "fraction": 0.5}]}
    with pytest.raises(ConfigError, match="stragglers.heterogeneity"):
        simulate(load_config(cfg))


# --- overlap: pushes during backward, pulls in forward order -------------------------------------------


def layered(overlap: bool, layers: int = 4, params: int = 1_000_000) -> dict:
    """2 workers and 1 CPU server on a 10 GB/s switch; L identical layers, one gradient bucket per layer."""
    return {
        "name": "layered", "seed": 1,
        "cluster": {"topology": {"kind": "switch", "devices": 3, "link": {"bandwidth": "10GB/s", "latency": "1us"}},
                    "device": "a100"},
        "workload": {"model": {"name": "layered", "layers": [
            {"name": f"l{i}", "params": params, "forward_flops": "10GFLOP"} for i in range(layers)]},
            "batch_per_device": 32},
        "parallelism": {"data": 2},
        "communication": {"pattern": "parameter_server", "servers": 1, "bucket_size": f"{4 * params}B",
                          "overlap": overlap},
        "training": {"iterations": 5, "warmup": 1},
    }


def test_bsp_overlap_step_is_first_pull_plus_compute_plus_last_push_and_apply():
    """Hand derivation (L layers of n = 4·10⁶ gradient bytes, one bucket each; 2 workers, 1 server).

    Both workers release layer k's gradient as its backward ends and push it at once; the two
    pushes share the server's inbound link: t_push = 2n/BW + 2·LAT (two 1 µs hops). The server
    applies them one after the other, a = 3n / (CPU memory bandwidth) each. As soon as both are
    applied, that bucket's step is complete and both workers pull it back (per-key BSP, as MXNet's
    dist_sync servers answer pulls): t_pull = 2n/BW + 2·LAT on the server's outbound link, which
    pushes do not use. Every push, its two applies and its pull finish before the next layer's
    backward does (t_push + 2a + t_pull < b), so the later layers' parameters are back during
    backward. Layer 0's bucket is produced last: after the last backward the step still needs its
    push, two applies and its pull, and the next forward starts when that pull ends. Every
    iteration is therefore

        F + B + t_push + 2a + t_pull,   F = L·f, B = L·b.

    Without overlap: pull everything (2Ln/BW + 2·LAT), compute, push everything (the same),
    then 2 applies of the whole model (2·L·a): today's serial formula.
    """
    n, L = 4e6, 4
    cfg = load_config(layered(True))
    layer = get_model_layer(cfg)
    a100, cpu = get_device("a100"), get_device("cpu")
    f = compute.layer_time(layer, a100, 32)
    b = compute.layer_time(layer, a100, 32, pass_="backward")
    t_link = 2 * n / BW + 2 * LAT
    a = compute.server_apply_time(n, cpu)
    assert 2 * t_link + 2 * a < b                        # the regime the derivation assumes
    s = simulate(cfg).summary
    assert s["iteration_time_s"] == pytest.approx(L * (f + b) + t_link + 2 * a + t_link, rel=1e-9)
    assert s["iteration_time_p99_s"] == pytest.approx(s["iteration_time_s"], rel=1e-9)
    serial = simulate(load_config(layered(False))).summary
    t_all = 2 * L * n / BW + 2 * LAT
    assert serial["iteration_time_s"] == pytest.approx(t_all + L * (f + b) + t_all + 2 * L * a, rel=1e-9)


def get_model_layer(cfg):
    from simulator.resolve import resolve_model

    return resolve_model(cfg).layers[0]


def test_pushes_overlap_backward_in_the_trace():
    cfg = load_config(layered(True))
    trace = simulate(cfg).trace.events
    spans = [e for e in trace if e["ph"] == "X" and e["tid"] == 0 and e["args"].get("iteration") == 1]
    backward = next(e for e in spans if e["name"] == "backward")
    pushes = [e for e in spans if e["name"].startswith("push")]
    assert len(pushes) == 4
    inside = [p for p in pushes if p["ts"] + p["dur"] <= backward["ts"] + backward["dur"] + 1e-6]
    assert len(inside) == 3                        # all but the last layer's push finish during backward


def test_the_slowest_replicas_applied_pushes_are_kept_as_the_minimum():
    """Pushes applied in a random order of replicas: the count kept up to date equals the minimum over them."""
    from simulator.engine.protocols import ASP, BSP

    rng = np.random.default_rng(4)
    for protocol in (ASP(simpy.Environment(), 7, 100, 1), BSP(simpy.Environment(), 7, 100, 1)):
        for _ in range(300):
            r = int(rng.integers(0, 7))
            protocol.replica_applied(r, protocol.applied_clock[r])
            assert protocol.slowest == min(protocol.applied_clock)
        assert protocol.slowest > 20
