"""Failures and recovery: hand-derived time lost, closed form = full simulation, statistics, rerouting, elasticity.

Every job kind of the engine matrix (data, pipeline, hybrid, ZeRO × allreduce and the
parameter-server protocols) meets the same lifecycle; the times it composes are checked
against failure-free runs of the same engine and against closed forms (Poisson failure
counts, Young/Daly's optimum checkpoint interval).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.engine import build_job
from simulator.engine.faults import FaultSource, Variant, cut_off
from simulator.parallel.memory import STATE_BYTES
from simulator.resolve import build_topology, resolve_hardware
from simulator.rng import Streams
from simulator.run import simulate
from tests.simulator.test_engine_matrix import CONVERGENCE, job

KINDS = [("data", "allreduce"), ("pipeline", "allreduce"), ("hybrid", "allreduce"), ("zero", "allreduce"),
         ("tensor", "allreduce"), ("data", "ps-bsp"), ("pipeline", "ps-ssp"), ("data", "ps-asp"),
         ("data", "ps-backup")]
BW = 50e9   # storage bandwidth of the tests, bytes/s

MIXED_CHECKPOINT_BYTES = STATE_BYTES["mixed"].params + STATE_BYTES["mixed"].optimizer   # 2 + 12 a parameter


def with_faults(cfg: dict, iterations: int, **faults) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["training"] = {**cfg["training"], "iterations": iterations}
    cfg["faults"] = faults
    return cfg


def span(cfg: dict, iterations: int) -> float:
    """The failure-free makespan of ``iterations`` iterations of ``cfg`` (the engine alone)."""
    cfg = copy.deepcopy(cfg)
    cfg["training"] = {**cfg["training"], "iterations": iterations, "warmup": 0}
    return simulate(cfg).summary["simulated_time_s"]


def checkpoint_seconds(cfg: dict) -> float:
    hw = resolve_hardware(load_config(cfg))
    return MIXED_CHECKPOINT_BYTES * hw.model.parameters / BW


def parts_add_up(s: dict) -> None:
    parts = s["lost_work_s"] + s["checkpoint_s"] + s["restart_s"] + s["detection_s"] + s["waiting_s"] + s["degraded_s"]
    assert parts == pytest.approx(s["time_lost_s"], rel=1e-9, abs=1e-9)
    assert s["goodput"] == pytest.approx(1 - s["time_lost_s"] / s["wall_time_s"], rel=1e-9)


# -- one scheduled failure, hand-derived ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "every_iteration"])
@pytest.mark.parametrize(("parallel", "sync"), KINDS, ids=[f"{p}-{s}" for p, s in KINDS])
def test_one_failure_costs_detection_restart_and_the_work_since_the_checkpoint(parallel, sync, mode):
    """N-iteration checkpoints, 3N iterations, device 1 fails halfway through the second stretch."""
    base, N = job(parallel, sync), 3
    T, delta = span(base, N), checkpoint_seconds(base)
    x = 0.5 * T
    tf = T + delta + x
    detection, restart = 7.0, 11.0
    cfg = with_faults(base, 3 * N, scheduled=[{"at": f"{tf}s", "target": {"rank": 1}}], detection=f"{detection}s",
                      recovery={"policy": "checkpoint_restart", "restart": f"{restart}s"},
                      checkpoint={"every": N, "bandwidth": f"{BW}B/s"}, simulate=mode)
    s = simulate(cfg).summary
    # stretch 1, checkpoint, half of stretch 2 (lost), detection, restart + reload, stretch 2 again,
    # checkpoint, stretch 3
    expected = T + delta + x + detection + restart + delta + T + delta + T
    assert s["wall_time_s"] == pytest.approx(expected, rel=1e-9)
    assert s["lost_work_s"] == pytest.approx(x, rel=1e-9)
    assert s["detection_s"] == pytest.approx(detection)
    assert s["restart_s"] == pytest.approx(restart + delta, rel=1e-9)
    assert s["checkpoint_s"] == pytest.approx(2 * delta, rel=1e-9)
    assert s["failures"] == 1 and s["completed"] and s["iterations_completed"] == 3 * N
    assert s["checkpoint_bytes"] == pytest.approx(delta * BW)
    parts_add_up(s)


def test_a_failure_before_any_checkpoint_restarts_from_iteration_zero_without_a_reload():
    base = job("data")
    T = span(base, 4)
    cfg = with_faults(base, 4, scheduled=[{"at": f"{0.6 * T}s", "target": {"rank": 0}}], detection="1s",
                      recovery={"restart": "2s"})
    s = simulate(cfg).summary
    assert s["wall_time_s"] == pytest.approx(0.6 * T + 1 + 2 + T, rel=1e-9)
    assert s["lost_work_s"] == pytest.approx(0.6 * T, rel=1e-9) and s["checkpoints"] == 0


def test_an_asynchronous_checkpoint_is_durable_only_once_written():
    """Snapshot blocks; the write runs behind training; a failure before it ends rolls back further."""
    base, N = job("data"), 2
    T, delta = span(base, N), checkpoint_seconds(base)
    snapshot = delta * BW / 4 / 25e9             # each of the 4 devices' share at the default 25 GB/s
    # a failure during the first background write (it ends at T + snapshot + delta): back to iteration 0
    tf = T + snapshot + 0.5 * min(delta, T)
    cfg = with_faults(base, 2 * N, scheduled=[{"at": f"{tf}s", "target": {"rank": 2}}], detection="1s",
                      recovery={"restart": "2s"},
                      checkpoint={"every": N, "bandwidth": f"{BW}B/s", "asynchronous": True})
    s = simulate(cfg).summary
    assert s["lost_work_s"] == pytest.approx(tf - snapshot, rel=1e-9)       # everything trained so far
    assert s["restart_s"] == pytest.approx(2.0)                               # no durable checkpoint: no reload
    # late enough, the checkpoint is durable: only the work after the snapshot is lost, and it is reloaded
    late = T + snapshot + delta + 0.25 * T
    if late < 2 * T + snapshot:
        cfg["faults"]["scheduled"] = [{"at": f"{late}s", "target": {"rank": 2}}]
        s = simulate(cfg).summary
        assert s["lost_work_s"] == pytest.approx(late - T - snapshot, rel=1e-9)
        assert s["restart_s"] == pytest.approx(2.0 + delta, rel=1e-9)


# -- the closed form is the full simulation -----------------------------------------------------------------


RANDOM = {"devices": {"mtbf": "40s"}, "links": {"mtbf": "200s", "mode": "degrade", "factor": 0.5}, "repair": "3s",
          "detection": "0.5s"}


@pytest.mark.parametrize("recovery", [{"policy": "checkpoint_restart", "restart": "1s"},
                                      {"policy": "elastic", "reconfigure": "0.2s"},
                                      {"policy": "spares", "spares": 2, "swap": "0.3s"}],
                         ids=["checkpoint_restart", "elastic", "spares"])
@pytest.mark.parametrize(("parallel", "sync"), [("data", "allreduce"), ("pipeline", "allreduce"),
                                                ("data", "ps-bsp")])
def test_closed_form_equals_simulating_every_iteration(parallel, sync, recovery):
    every = {"every": 20, "bandwidth": f"{BW}B/s"}
    cfg = with_faults(job(parallel, sync), 400, **RANDOM, recovery=recovery, checkpoint=every)
    fast = simulate(cfg)
    cfg["faults"]["simulate"] = "every_iteration"
    full = simulate(cfg)
    assert fast.summary["fault_simulation"] == "closed_form" and full.summary["fault_simulation"] == "every_iteration"
    assert fast.summary["failures"] >= 2, "the case must exercise recovery"
    assert fast.run_info["fault_iterations_simulated"] < full.run_info["fault_iterations_simulated"]
    for key, value in full.summary.items():
        if key in ("fault_simulation",):
            continue
        if isinstance(value, float):
            assert fast.summary[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
        else:
            assert fast.summary[key] == value, key
    assert [r["component"] for r in fast.tables["failures"]] == [r["component"] for r in full.tables["failures"]]
    parts_add_up(fast.summary)


# -- statistics: Poisson counts and Young/Daly --------------------------------------------------------------


def tiny(iterations: int, **faults) -> dict:
    """8 devices on a switch, ResNet-50: a ~23 ms iteration, so days of training are millions of iterations."""
    return {"seed": 11, "cluster": {"topology": {"kind": "switch", "devices": 8,
                                                 "link": {"bandwidth": "10GB/s", "latency": "1us"}}},
            "training": {"iterations": iterations, "warmup": 1}, "faults": faults}


def test_exponential_failures_arrive_at_devices_over_mtbf():
    """Failures over the whole run ~ Poisson(wall × devices / MTBF), a replaced part drawing afresh."""
    mtbf, devices = 3600.0 * 8, 8                      # job MTBF one hour
    cfg = tiny(2_000_000, devices={"mtbf": f"{mtbf}s"}, detection="1s", recovery={"restart": "1s"},
               checkpoint={"every": "10min", "bandwidth": "10GB/s"})
    cfg["training"]["replications"] = 20
    s = simulate(cfg).summary
    expected = s["wall_time_s"] * devices / mtbf      # mean over replications (down time is tiny)
    sigma = math.sqrt(expected / 20)
    assert abs(s["failures"] - expected) < 4 * sigma, (s["failures"], expected)
    assert s["job_mtbf_s"] == pytest.approx(mtbf / devices)


def test_weibull_failures_follow_the_weibull_mean():
    shape, scale, devices = 0.7, 8 * 3600.0, 8
    mean = scale * math.gamma(1 + 1 / shape)
    cfg = tiny(1_000_000, devices={"distribution": "weibull", "shape": shape, "scale": f"{scale}s"},
               detection="1s", recovery={"restart": "1s"})
    src = FaultSource(load_config(cfg).faults, Streams(5), devices=devices, graph=build_topology(load_config(cfg)),
                      servers=0)
    firsts = []
    while len(firsts) < devices:
        firsts.append(src.pop().at)
    # renewals: every draw of one device's stream is Weibull(k, λ); check their mean over many
    draws = np.concatenate([src._draws("device", src.laws["device"], 4000, 0, g) for g in range(5)])
    assert draws.mean() == pytest.approx(mean, rel=0.05)
    assert len(set(firsts)) == devices


def test_goodput_peaks_at_the_young_daly_interval_and_the_waste_matches_the_formula():
    """δ = 60 s (fixed by the bandwidth), M = 1.5 h job MTBF: τ* = √(2δM) ≈ 805 s. 10 days, 8 seeds each."""
    mtbf_device = 1.5 * 3600 * 8
    probe = simulate(tiny(5)).summary
    params_bytes = MIXED_CHECKPOINT_BYTES * resolve_hardware(load_config(tiny(5))).model.parameters
    bandwidth = params_bytes / 60.0
    iterations = int(10 * 86400 / probe["iteration_time_s"])
    tau_star = math.sqrt(2 * 60.0 * mtbf_device / 8)
    grid = [tau_star * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    goodput, waste = [], []
    for tau in grid:
        cfg = tiny(iterations, devices={"mtbf": f"{mtbf_device}s"}, detection="0s", recovery={"restart": "0s"},
                   checkpoint={"every": f"{tau}s", "bandwidth": f"{bandwidth}B/s"})
        cfg["training"]["replications"] = 8
        s = simulate(cfg).summary
        assert s["young_daly_interval_s"] == pytest.approx(tau_star, rel=1e-6)
        goodput.append(s["goodput"])
        waste.append(s["time_lost_s"] / s["wall_time_s"])
    assert int(np.argmax(goodput)) == 2, goodput
    # Daly (2006), exponential failures, failures during restarts included: expected wall time per second
    # of useful work is (M/τ)·e^(R/M)·(e^((τ+δ)/M) − 1), here with the restart R = the reload δ
    M, d = mtbf_device / 8, 60.0
    formula = 1 - 1 / ((M / tau_star) * math.exp(d / M) * (math.exp((tau_star + d) / M) - 1))
    assert waste[2] == pytest.approx(formula, rel=0.05)


# -- the network: rerouting and partitions --------------------------------------------------------------------


def leaf_spine(**extra) -> dict:
    """2 leaves × 4 hosts, 2 spines; Rabenseifner's halving steps send 4 flows across the spines at once."""
    return {"seed": 1, "cluster": {"topology": {"kind": "leaf_spine", "leaves": 2, "spines": 2, "hosts_per_leaf": 4,
                                                "link": {"bandwidth": "10GB/s", "latency": "1us"}}},
            "workload": {"model": "bert_large", "batch_per_device": 8}, "communication": {"algorithm": "rabenseifner"},
            "training": {"iterations": 30, "warmup": 1}, **extra}


def fat_tree(**extra) -> dict:
    return {**leaf_spine(**extra), "cluster": {"topology": {"kind": "fat_tree", "k": 4,
                                                            "link": {"bandwidth": "10GB/s", "latency": "1us"}}}}


@pytest.mark.parametrize(("make", "link"), [(leaf_spine, ("leaf0", "spine0")), (fat_tree, ("edge0", "agg1"))],
                         ids=["leaf_spine", "fat_tree"])
def test_a_link_down_is_routed_around_from_the_next_iteration(make, link):
    base = make()
    T = span(base, 1)
    tf = 10.4 * T                                          # in the middle of iteration 10
    cfg = make(faults={"scheduled": [{"at": f"{tf}s", "target": {"link": list(link)}}]})
    r = simulate(cfg)
    rows = [row for row in r.tables["timeline"] if row["phase"] == "train"]
    assert rows[0]["iterations"] == 11 and rows[0]["end_s"] == pytest.approx(11 * T, rel=1e-9)  # in flight: old routes
    graph = build_topology(load_config(base))
    graph.remove_edge(*link)
    without = build_job(load_config(base), graph=graph).run().result().summary["iteration_time_s"]
    assert without > 1.05 * T, "the lost link must matter for this test"
    assert (rows[1]["end_s"] - rows[1]["start_s"]) / rows[1]["iterations"] == pytest.approx(without, rel=1e-9)
    assert r.summary["degraded_s"] == pytest.approx(19 * (without - T), rel=1e-6)
    assert r.summary["failures"] == 1 and r.tables["failures"][0]["recovery"].startswith("rerouted")
    assert r.summary["lost_work_s"] == 0 and r.summary["detection_s"] == 0     # nobody had to notice
    assert r.summary["completed"]


def test_a_partition_fails_the_devices_it_cuts_off_never_hangs():
    graph = build_topology(load_config(leaf_spine()))
    host = next(n for n, d in graph.nodes(data=True) if d.get("rank") == 5)
    leaf = next(iter(graph.adj[host]))
    assert cut_off(Variant(down_links=frozenset({tuple(sorted((str(host), str(leaf))))})).graph(graph)) == {5}
    for policy in ("checkpoint_restart", "elastic"):
        cfg = leaf_spine(faults={"scheduled": [{"at": "0.1s", "target": {"link": [str(host), str(leaf)]}}],
                                 "detection": "1s", "recovery": {"policy": policy}})
        s = simulate(cfg).summary
        assert s["completed"] and s["failures"] == 1
        assert s["detection_s"] == pytest.approx(1.0)
    # the only switch dies: elastic training goes on with the one device left in the biggest piece ...
    cfg = {"cluster": {"topology": {"kind": "switch", "devices": 4, "link": {"bandwidth": "10GB/s"}}},
           "training": {"iterations": 40},
           "faults": {"scheduled": [{"at": "0.1s", "target": {"switch": "s0"}}], "recovery": {"policy": "elastic"}}}
    r = simulate(cfg)
    last = [row for row in r.tables["timeline"] if row["phase"] == "train"][-1]
    assert r.summary["completed"] and last["samples"] == last["iterations"] * 32
    # ... and a restart with no spare and no repair cannot go on, and says so
    cfg["faults"]["recovery"] = {"policy": "checkpoint_restart", "spares": 0}
    s = simulate(cfg).summary
    assert s["completed"] is False and "no spare and no repair" in s["stopped"] and s["iterations_completed"] < 40


def test_a_link_degrade_and_its_repair():
    base = leaf_spine()
    T = span(base, 1)
    cfg = leaf_spine(faults={"scheduled": [{"at": f"{5.5 * T}s", "target": {"link": ["leaf0", "spine0"]},
                                            "mode": "degrade", "factor": 0.1}], "repair": f"{10 * T}s"})
    r = simulate(cfg)
    assert [row["event"] for row in r.tables["failures"]] == ["degrade", "repair"]
    train = [row for row in r.tables["timeline"] if row["phase"] == "train"]
    assert len(train) == 3 and train[0]["iterations"] == 6
    assert sum(row["iterations"] for row in train) == 30
    assert r.summary["degraded_s"] > 0


# -- elastic training and spares ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("parallel", "sync"), [("data", "allreduce"), ("data", "ps-bsp"), ("pipeline", "allreduce"),
                                                ("data", "ps-asp")])
def test_elastic_throughput_after_a_failure_equals_a_fresh_job_on_the_survivors(parallel, sync):
    base = job(parallel, sync)
    D = base["parallelism"]["data"]
    T = span(base, 2)
    cfg = with_faults(base, 40, scheduled=[{"at": f"{0.75 * T}s", "target": {"rank": 0}}], detection="0.1s",
                      recovery={"policy": "elastic", "reconfigure": "0.2s"})
    r = simulate(cfg)
    after = [row for row in r.tables["timeline"] if row["phase"] == "train"][-1]
    fewer = copy.deepcopy(base)
    fewer["parallelism"]["data"] = D - 1
    n = after["iterations"]
    assert after["end_s"] - after["start_s"] == pytest.approx(span(fewer, n), rel=1e-9)
    per_device = base["workload"]["batch_per_device"]
    assert after["samples"] == n * (D - 1 - (1 if sync == "ps-backup" else 0)) * per_device
    assert r.summary["restart_s"] == pytest.approx(0.2) and r.summary["completed"]


def test_elastic_with_a_global_batch_rescales_the_per_device_batch():
    base = job("data")
    cfg = with_faults(base, 20, scheduled=[{"at": "0.01s", "target": {"rank": 3}}], detection="0s",
                      recovery={"policy": "elastic", "reconfigure": "0s", "scale": "global"})
    r = simulate(cfg)
    after = [row for row in r.tables["timeline"] if row["phase"] == "train"][-1]
    assert after["samples"] == after["iterations"] * 3 * math.ceil(4 * 8 / 3)


def test_a_repaired_device_rejoins_an_elastic_job():
    base = job("data")
    T = span(base, 1)
    cfg = with_faults(base, 60, scheduled=[{"at": f"{2.5 * T}s", "target": {"rank": 1}}], detection="0s",
                      repair=f"{10 * T}s", recovery={"policy": "elastic", "reconfigure": "0s"})
    r = simulate(cfg)
    train = [row for row in r.tables["timeline"] if row["phase"] == "train"]
    rates = [row["samples"] / row["iterations"] for row in train]
    assert rates[0] == 4 * 8 and rates[1] == 3 * 8 and rates[-1] == 4 * 8
    assert [row["event"] for row in r.tables["failures"]] == ["failure", "repair"]


def test_spares_run_out_and_the_job_waits_for_a_repair():
    base = job("data")
    T = span(base, 1)
    second = 2.5 * T + 1 + 3.5 * T          # the first swap takes 1 s, then 3.5 iterations
    cfg = with_faults(base, 30, scheduled=[{"at": f"{2.5 * T}s", "target": {"rank": 1}},
                                           {"at": f"{second}s", "target": {"rank": 2}}], detection="0s",
                      repair="5s", recovery={"policy": "spares", "spares": 1, "swap": "1s", "reconfigure": "0s"})
    s = simulate(cfg).summary
    # the first failure takes the one spare; the second waits for the first part's repair (5 s after it failed)
    assert s["waiting_s"] == pytest.approx(2.5 * T + 5 - second, rel=1e-6)
    assert s["restart_s"] == pytest.approx(2.0)
    assert s["lost_work_s"] == pytest.approx(2 * 0.5 * T, rel=1e-6)       # the iterations in flight
    parts_add_up(s)


# -- parameter servers ---------------------------------------------------------------------------------------------


def test_a_server_failure_loses_the_updates_since_the_checkpoint_and_counts_them():
    base = job("data", "ps-bsp", **{"training.convergence": dict(CONVERGENCE)})
    N, T = 4, span(job("data", "ps-bsp"), 4)
    # midway through the second iteration after the checkpoint (the first, with its initial pull, is longer)
    tf = T + checkpoint_seconds(base) + 0.5 * (span(job("data", "ps-bsp"), 1) + span(job("data", "ps-bsp"), 2))
    cfg = with_faults(base, 12, scheduled=[{"at": f"{tf}s", "target": {"server": 1}}], detection="0.1s",
                      recovery={"policy": "elastic", "reconfigure": "0.1s"},
                      checkpoint={"every": N, "bandwidth": f"{BW}B/s"})
    r = simulate(cfg)
    s = r.summary
    kept = s["iterations_completed"]
    assert kept == 12 and s["completed"]
    done_at_failure = N + next(row["iterations"] for row in r.tables["timeline"][2:] if row["phase"] == "train")
    assert s["lost_updates"] == (done_at_failure - N) * 4          # D = 4 pushes per step since the checkpoint
    after = [row for row in r.tables["timeline"] if row["phase"] == "train"][-1]
    one_server = copy.deepcopy(job("data", "ps-bsp"))
    one_server["communication"]["servers"] = 1
    assert after["end_s"] - after["start_s"] == pytest.approx(span(one_server, after["iterations"]), rel=1e-9)
    # without the failure the model differs: the lost shard updates really are lost
    clean = with_faults(base, 12, checkpoint={"every": N, "bandwidth": f"{BW}B/s"})
    assert simulate(clean).summary["final_loss"] != pytest.approx(s["final_loss"], rel=1e-12)


@pytest.mark.parametrize("sync", ["allreduce", "ps-bsp"])
def test_checkpoint_restart_replays_exactly_the_lost_updates(sync):
    """BSP rollback: the learner restarts from the checkpointed parameters and data position, so the
    final model equals the failure-free one (nothing applied twice, nothing skipped)."""
    base = job("data", sync, **{"training.convergence": dict(CONVERGENCE)})
    T = span(job("data", sync), 3)
    every = {"every": 3, "bandwidth": f"{BW}B/s"}
    faulted = with_faults(base, 9, scheduled=[{"at": f"{1.5 * T}s", "target": {"rank": 2}}], detection="1s",
                          recovery={"restart": "1s"}, checkpoint=every)
    r = simulate(faulted)
    plain = simulate(with_faults(base, 9)).summary
    assert r.summary["failures"] == 1 and r.summary["lost_work_s"] > 0
    assert r.summary["final_loss"] == plain["final_loss"]
    losses = [row["loss"] for row in r.tables["convergence"]]
    assert max(losses[len(losses) // 3:]) > min(losses[:len(losses) // 2]), "the curve shows the rollback"
    # elastic training with fewer workers trains a different model
    elastic = with_faults(base, 9, scheduled=[{"at": f"{1.5 * T}s", "target": {"rank": 2}}], detection="1s",
                          recovery={"policy": "elastic"})
    assert simulate(elastic).summary["final_loss"] != plain["final_loss"]


# -- reproducibility, replications and bad input -----------------------------------------------------------------


def test_same_seed_gives_byte_identical_summary_and_failures(tmp_path):
    cfg = with_faults(job("data"), 300, **RANDOM, checkpoint={"every": 20, "bandwidth": f"{BW}B/s"})
    a = simulate(cfg).write(tmp_path / "a", plots=False)
    b = simulate(cfg).write(tmp_path / "b", plots=False)
    for name in ("summary.json", "failures.csv", "timeline.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    cfg["seed"] = 4
    c = simulate(cfg).write(tmp_path / "c", plots=False)
    assert (c / "failures.csv").read_bytes() != (a / "failures.csv").read_bytes()
    summary = json.loads((a / "summary.json").read_text())
    assert all(math.isfinite(v) for v in summary.values() if isinstance(v, float))


def test_replications_are_the_mean_of_derived_seeds_with_a_confidence_interval():
    from simulator.replications import replication_seeds, student_t975

    cfg = with_faults(job("data"), 200, **RANDOM)
    cfg["training"]["replications"] = 4
    s = simulate(cfg).summary
    walls = []
    for seed in replication_seeds(3, 4):
        one = copy.deepcopy(cfg)
        one["seed"], one["training"]["replications"] = seed, 1
        walls.append(simulate(one).summary["wall_time_s"])
    assert s["replications"] == 4 and s["wall_time_s"] == pytest.approx(np.mean(walls), rel=1e-12)
    half = student_t975(3) * np.std(walls, ddof=1) / 2
    assert s["wall_time_s_ci95"] == pytest.approx([np.mean(walls) - half, np.mean(walls) + half], rel=1e-12)
    assert len(set(walls)) > 1


@pytest.mark.parametrize(("faults", "expected"), [
    ({"scheduled": [{"at": "1s", "target": {"rank": 99}}]}, "faults.scheduled.0.target.rank: 99 is not a device"),
    ({"scheduled": [{"at": "1s", "target": {"link": ["x", "y"]}}]}, "no node 'x'"),
    ({"scheduled": [{"at": "1s", "target": {"rank": 1, "switch": "s"}}]}, "exactly one of"),
    ({"devices": {"mtbf": "-5h"}}, "faults.devices.mtbf"),
    ({"devices": {"distribution": "weibull", "shape": 0.7}}, "needs shape > 0 and scale > 0"),
    ({"checkpoint": {"every": 100}}, "needs bandwidth"),
    ({"checkpoint": {"every": "soon", "bandwidth": "1GB/s"}}, "expected an iteration count"),
    ({"links": {"mtbf": "1h", "mode": "degrade"}}, "needs factor"),
    ({"recovery": {"policy": "elastic", "restart": "1min"}}, "restart applies to policy checkpoint_restart"),
    ({"servers": {"mtbf": "1h"}}, "faults.servers applies to communication.pattern: parameter_server"),
    ({"scheduled": [{"at": "1s", "target": {"server": 0}}]}, "there are no parameter servers"),
    ({"detection": "-1s"}, "faults.detection"),
])
def test_bad_fault_configs_are_one_line_errors(faults, expected):
    cfg = with_faults(job("data"), 10, **faults)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        simulate(load_config(cfg))


def test_bad_fault_config_on_the_command_line_exits_2(tmp_path):
    import yaml

    from tests.test_cli import trainsim

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_faults(job("data"), 10, scheduled=[{"at": "1s", "target": {"rank": 42}}])))
    res = trainsim("run", str(path), "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "faults.scheduled.0.target.rank" in res.stderr and not (tmp_path / "out").exists()


def test_a_partitioned_server_moves_its_shards_and_rejoins_when_the_link_is_back():
    base = job("data", "ps-bsp")
    graph = build_topology(load_config(with_faults(base, 10)))
    server = next(n for n, d in graph.nodes(data=True) if d.get("rank") == 4)     # the first dedicated server
    switch = next(iter(graph.adj[server]))
    T = span(base, 1)
    cfg = with_faults(base, 40, scheduled=[{"at": f"{3.5 * T}s", "target": {"link": [str(server), str(switch)]}}],
                      repair=f"{10 * T}s", detection="0s", recovery={"policy": "elastic", "reconfigure": "0s"})
    r = simulate(cfg)
    rows = r.tables["failures"]
    assert rows[0]["recovery"].startswith("partition: servers [0] cut off")
    assert "devices [4] rejoin" in rows[1]["recovery"]
    train = [row for row in r.tables["timeline"] if row["phase"] == "train"]
    assert r.summary["lost_updates"] == train[0]["iterations"] * 4   # every step since iteration 0, 4 pushes each
    one = copy.deepcopy(base)
    one["communication"]["servers"] = 1
    middle = train[1]
    assert middle["end_s"] - middle["start_s"] == pytest.approx(span(one, middle["iterations"]), rel=1e-9)
    assert train[-1]["end_s"] - train[-1]["start_s"] == pytest.approx(span(base, train[-1]["iterations"]), rel=1e-9)


def test_stragglers_make_every_stretch_its_own_simulation_reproducibly():
    cfg = with_faults(job("data", stragglers={"distribution": "lognormal", "sigma": 0.3}), 60,
                      checkpoint={"every": 10, "bandwidth": f"{BW}B/s"})
    a, b = simulate(cfg), simulate(cfg)
    assert a.summary["fault_simulation"] == "every_iteration" and a.summary == b.summary
    durations = [row["end_s"] - row["start_s"] for row in a.tables["timeline"] if row["phase"] == "train"]
    assert len(durations) == 6 and len(set(durations)) == 6       # each stretch draws its own noise


@pytest.mark.parametrize(("extra", "expected"), [
    ({"faults": {"devices": {"mtbf": "1us"}, "recovery": {"restart": "1s"}}}, "the job cannot make progress"),
    ({"faults": {"checkpoint": {"every": 1, "bandwidth": "1GB/s"}}, "training.iterations": 100_000_000},
     "faults.checkpoint.every: 1 makes about 1e\\+08 checkpoints"),
    ({"faults": {"devices": {"mtbf": "1h"}}, "training.iterations": 300_000,
      "stragglers": {"distribution": "normal", "sigma": 0.1}}, "simulated one by one"),
])
def test_runs_that_cannot_finish_are_refused_in_one_line(extra, expected):
    cfg = job("data", **extra)
    with pytest.raises(ConfigError, match=expected):
        simulate(load_config(cfg))


def test_trace_shows_the_phases_and_the_failures():
    base = job("data")
    T = span(base, 3)
    r = simulate(with_faults(base, 6, scheduled=[{"at": f"{0.5 * T}s", "target": {"rank": 1}}], detection="1s",
                             recovery={"restart": "1s"}))
    names = {ev["name"] for ev in r.trace.events if ev.get("ph") == "X"}
    assert {"train", "lost", "detection", "restart", "failure: device 1"} <= names
    tracks = {ev["args"]["name"] for ev in r.trace.events if ev.get("name") == "thread_name"}
    assert {"job", "faults"} <= tracks


def test_a_failure_during_a_rejoin_is_recovered_not_ignored():
    """Device 1 fails, is repaired and rejoins (a 1 s reconfigure pause); device 2 fails during that pause."""
    base = job("data")
    T, pause = span(base, 1), 0.2
    repair = 40 * T
    back = 2.5 * T + repair                        # device 1 repaired; the pause starts at the next iteration end
    cfg = with_faults(base, 200, scheduled=[{"at": f"{2.5 * T}s", "target": {"rank": 1}},
                                            {"at": f"{back + T + 0.5 * pause}s", "target": {"rank": 2}}],
                      detection="0s", repair=f"{repair}s", recovery={"policy": "elastic", "reconfigure": f"{pause}s"})
    r = simulate(cfg)
    failures = r.tables["failures"]
    assert [(f["component"], f["event"]) for f in failures] == [
        ("device 1", "failure"), ("device 1", "repair"), ("device 2", "failure"), ("device 2", "repair")]
    assert failures[2]["recovery"].startswith("elastic: 3 of 4 replicas go on")
    second = failures[2]["time_s"]
    after = [row for row in r.tables["timeline"] if row["phase"] == "train" and row["start_s"] >= second]
    assert after[0]["samples"] == after[0]["iterations"] * 3 * 8        # device 2 is out ...
    assert after[-1]["samples"] == after[-1]["iterations"] * 4 * 8      # ... until its repair
    assert not any(row["start_s"] == row["end_s"] for row in r.tables["timeline"])
