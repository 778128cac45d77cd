"""``communication.algorithm_options``: an option changes every job it applies to, or is refused in one line.

Pipelined double binary trees (``pipeline_chunks``) and hierarchical allreduce with a chosen
inter-/intra-node algorithm (``inter``, ``intra``) reach the schedule builder from a config in every
parallelism whose data-parallel gradients are all-reduced (plain data, tensor, pipeline, hybrid; local
SGD's averaging; ``auto``'s candidates), and are refused where no builder would take them.
"""

from __future__ import annotations

import copy

import pytest

from simulator.config import ConfigError, load_config
from simulator.run import simulate

PARALLEL = {
    "data": {"data": 8},
    "tensor": {"data": 4, "tensor": 2},
    "pipeline": {"data": 4, "pipeline": 2, "microbatches": 2},
    "hybrid": {"data": 2, "tensor": 2, "pipeline": 2, "microbatches": 2},
}


def job(parallel: str = "data", algorithm: str = "double_binary_tree", options: dict | None = None,
        nodes: int = 2, **communication) -> dict:
    """BERT-large on nodes x 8/nodes A100s (NVLink inside, 100 Gb/s between): data-parallel groups cross nodes."""
    cfg = {
        "name": f"{parallel}-{algorithm}",
        "seed": 1,
        "cluster": {"topology": {"kind": "hierarchical", "nodes": nodes, "devices_per_node": 8 // nodes,
                                 "intra": {"bandwidth": "300GB/s", "latency": "1us"},
                                 "inter": {"kind": "switch", "bandwidth": "100Gbps", "latency": "2us"}},
                    "device": "a100"},
        "workload": {"model": "bert_large", "batch_per_device": 8},
        "parallelism": dict(PARALLEL[parallel]),
        "communication": {"algorithm": algorithm, "bucket_size": "50MiB", **communication},
        "training": {"iterations": 3, "warmup": 1},
    }
    if options is not None:
        cfg["communication"]["algorithm_options"] = options
    return cfg


def summary(cfg: dict) -> dict:
    return simulate(load_config(copy.deepcopy(cfg))).summary


def error(cfg: dict) -> str:
    with pytest.raises(ConfigError) as e:
        summary(cfg)
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("parallel", list(PARALLEL))
def test_pipeline_chunks_changes_every_parallelism(parallel):
    plain, piped = summary(job(parallel)), summary(job(parallel, options={"pipeline_chunks": 16}))
    assert piped["communication_s"] != plain["communication_s"]   # faster or not depends on the NICs it shares
    assert piped["bytes_sent_per_iteration"] == pytest.approx(plain["bytes_sent_per_iteration"])


@pytest.mark.parametrize("parallel", ["data", "pipeline"])
@pytest.mark.parametrize("inter", ["recursive_doubling", "rabenseifner", "double_binary_tree"])
def test_hierarchical_inter_changes_the_result(parallel, inter):
    # 4 nodes (on 2, every one of these is the ring's exchange of halves)
    ring = summary(job(parallel, "hierarchical", nodes=4))
    chosen = summary(job(parallel, "hierarchical", {"inter": inter}, nodes=4))
    assert chosen["communication_s"] != ring["communication_s"]


def test_explicit_defaults_are_todays_schedules():
    for algorithm, options in (("hierarchical", {"inter": "ring", "intra": "ring"}),
                               ("double_binary_tree", {"pipeline_chunks": 1})):
        assert summary(job("data", algorithm, options)) == summary(job("data", algorithm))


def test_local_sgd_averaging_takes_the_options():
    base = job("data")
    base["sync"] = {"mode": "local_sgd", "period": 2}
    piped = copy.deepcopy(base)
    piped["communication"]["algorithm_options"] = {"pipeline_chunks": 16}
    assert summary(piped)["communication_s"] < summary(base)["communication_s"]


def known(s: dict) -> dict:
    """What auto knows of each candidate: its simulated seconds, or the lower bound that pruned it."""
    return {**s["auto_candidates_s"], **s["auto_pruned_lower_bound_s"]}


def test_auto_times_candidates_with_the_options_they_take():
    plain, piped = summary(job("data", "auto")), summary(job("data", "auto", {"pipeline_chunks": 16}))
    tree = ("auto_candidates_s" if "double_binary_tree" in plain["auto_candidates_s"]
            else "auto_pruned_lower_bound_s")
    assert "double_binary_tree" in piped[tree]                        # the same kind of figure in both
    assert piped[tree]["double_binary_tree"] < plain[tree]["double_binary_tree"]
    assert known(piped)["ring"] == known(plain)["ring"]
    assert "no algorithm auto chooses from takes 'chunks'" in error(job("data", "auto", {"chunks": 4}))


def test_refusals_are_one_line():
    assert error(job("data", "ring", {"pipeline_chunks": 16})) == (
        "communication.algorithm_options: ring allreduce takes no option 'pipeline_chunks'; it takes slices")
    msg = error(job("data", "double_binary_tree", {"inter": "ring"}))
    assert "takes no option 'inter'; it takes pipeline_chunks" in msg
    assert "pipeline_chunks must be an integer >= 1" in error(job("data", options={"pipeline_chunks": 0}))
    msg = error(job("data", "hierarchical", {"inter": "bruck"}))
    assert "inter must be one of ring, recursive_doubling, rabenseifner, double_binary_tree" in msg
    msg = error(job("data", "hierarchical", {"pipeline_chunks": 4}))
    assert "pipeline_chunks applies to inter: double_binary_tree only" in msg
    ps = job("data", options={"pipeline_chunks": 4}, pattern="parameter_server")
    del ps["communication"]["algorithm"]
    assert "parameter_server no collective carries the gradients" in error(ps)
    zero = job("data", "binomial_tree")
    zero["parallelism"]["zero"] = 1
    assert error(zero) == ("communication.algorithm: binomial_tree has no reduce_scatter, and this job's gradients "
                           "need one (parallelism.zero: 1); choose ring or rabenseifner or hierarchical")
    topk = job("data", options={"pipeline_chunks": 4}, compression={"method": "topk"})
    assert "double_binary_tree has no allgather" in error(topk)
    assert ("(communication.compression.method: topk); choose ring or rabenseifner or recursive_doubling or "
            "hierarchical") in error(topk)
    # hierarchical's own phases: an inter-node allreduce they have no reduce-scatter / all-gather of, and
    # pipeline_chunks (the inter tree's), are refused, not dropped
    zero = job("data", "hierarchical", {"inter": "recursive_doubling"})
    zero["parallelism"]["zero"] = 2
    assert error(zero) == ("communication.algorithm: hierarchical reduce_scatter: inter must be one of ring, "
                           "rabenseifner, got 'recursive_doubling'")
    topk = job("data", "hierarchical", {"inter": "double_binary_tree", "pipeline_chunks": 4},
               compression={"method": "topk"})
    assert error(topk) == ("communication.algorithm_options: pipeline_chunks configure(s) the hierarchical allreduce, "
                           "but this job's gradients need a allgather (communication.compression.method: topk), "
                           "whose hierarchical schedule takes inter, intra, slices; remove them")


ZERO_AND_CODECS = [({"zero": 1}, {}), ({"zero": 3}, {}), ({}, {"method": "topk", "ratio": 0.01}),
                   ({}, {"method": "qsgd", "bits": 4})]


@pytest.mark.parametrize("parallel", list(PARALLEL))
@pytest.mark.parametrize("zero, codec", ZERO_AND_CODECS)
def test_the_configured_algorithm_runs_the_reduce_scatter_and_all_gather_it_has(parallel, zero, codec):
    """ZeRO and all-gathering codecs run the algorithm's own phases (Rabenseifner: recursive halving, then
    doubling; hierarchical: its intra/inter levels); ZeRO's reduce-scatters and the all-gathers are the
    network's time of exactly those schedules."""
    from simulator import collectives
    from simulator.parallel.plan import PHASES

    if zero.get("zero") == 3 and PARALLEL[parallel].get("pipeline", 1) > 1:   # refused, as in DeepSpeed
        cfg = job(parallel, "ring")
        cfg["parallelism"].update(zero)
        assert "zero 3 shards gradients per microbatch and does not combine with pipeline > 1" in error(cfg)
        return
    times, two_level = {}, False
    for algorithm in ("ring", "rabenseifner", "recursive_doubling", "hierarchical"):
        cfg = job(parallel, algorithm, compression=codec) if codec else job(parallel, algorithm)
        cfg["parallelism"].update(zero)
        if zero and algorithm == "recursive_doubling":
            assert "recursive_doubling has no reduce_scatter" in error(cfg)
            continue
        result = simulate(load_config(cfg))
        plan, network = result.context["plan"], result.context["network"]
        groups = plan.placement.device[:, 0, :].T
        p, info = groups.shape[-1], {"devices_per_node": plan.placement.devices_per_node_in(groups[0])}
        two_level = 1 < info["devices_per_node"] < p
        gathers = [c for c in plan.grad_sync[0][0][0] + plan.after_step[0] if c.name == "allgather"]
        if zero:
            for part, (coll,) in zip(plan.parts[0], plan.grad_sync[0][0], strict=True):
                sched = collectives.schedule(PHASES[algorithm]["reduce_scatter"], p, part.bytes,
                                             collective="reduce_scatter", **info)
                assert coll.seconds == network.concurrent_schedule_cost(sched, groups)[0]
        if zero.get("zero") == 3:
            gathers = [collectives_like(plan.gather[0, 0], plan.gather_bytes[0, 0])]
        assert gathers
        for coll in gathers:   # every all-gather sends (p - 1) n bytes in all, whatever the algorithm
            n = round(coll.bytes / (len(groups) * (p - 1)))
            sched = collectives.schedule(PHASES[algorithm]["allgather"], p, n, collective="allgather", **info)
            assert coll.seconds == network.concurrent_schedule_cost(sched, groups)[0]
        times[algorithm] = result.summary["iteration_time_s"]
    if PARALLEL[parallel]["data"] > 2:   # on 2 ranks ring and Rabenseifner are the same one exchange
        assert times["ring"] != times["rabenseifner"]   # before, every algorithm but ring silently ran ring
    if two_level:   # data-parallel groups with several devices on each of several nodes
        assert times["hierarchical"] < times["ring"]    # before, hierarchical was refused (and ran ring silently)
    else:           # one level: the hierarchical phases are that level's ring
        assert times["hierarchical"] == times["ring"]


def collectives_like(seconds: float, nbytes: float):
    from simulator.parallel.plan import Collective

    return Collective("allgather", float(seconds), float(nbytes))


def test_auto_with_zero_chooses_among_the_algorithms_that_have_its_phases():
    cfg = job("data", "auto")
    cfg["parallelism"]["zero"] = 2
    chosen = summary(cfg)
    assert set(known(chosen)) == {"ring", "rabenseifner", "hierarchical"}
    assert chosen["algorithm"] == min(chosen["auto_candidates_s"], key=chosen["auto_candidates_s"].get)
    assert all(b > chosen["auto_candidates_s"][chosen["algorithm"]]
               for b in chosen["auto_pruned_lower_bound_s"].values())
    fixed = job("data", chosen["algorithm"])
    fixed["parallelism"]["zero"] = 2
    assert summary(fixed)["iteration_time_s"] == chosen["iteration_time_s"]
