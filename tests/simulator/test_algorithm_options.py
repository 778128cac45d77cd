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


def test_auto_times_candidates_with_the_options_they_take():
    plain = summary(job("data", "auto"))["auto_candidates_s"]
    piped = summary(job("data", "auto", {"pipeline_chunks": 16}))["auto_candidates_s"]
    assert piped["double_binary_tree"] < plain["double_binary_tree"]
    assert piped["ring"] == plain["ring"]
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
    zero = job("data", "hierarchical", {"inter": "rabenseifner"})
    zero["parallelism"]["zero"] = 1
    assert "need a reduce_scatter, which runs ring" in error(zero)
    topk = job("data", options={"pipeline_chunks": 4}, compression={"method": "topk"})
    assert "need a allgather, which runs ring" in error(topk)
