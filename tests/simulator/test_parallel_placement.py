"""Placement of data × tensor × pipeline ranks on topologies, the device-count rule, and its CLI."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import topologies
from simulator.config import ConfigError, load_config
from simulator.config.models import Parallelism
from simulator.parallel import parallel_sizes, place
from simulator.parallel.placement import device_hosts
from simulator.run import simulate

ROOT = Path(__file__).resolve().parents[2]


def hierarchical(nodes: int, per_node: int):
    return topologies.build("hierarchical", nodes=nodes, devices_per_node=per_node, intra_bandwidth=3e11,
                            inter_bandwidth=1.25e10, inter_kind="switch")


CASES = [(nodes, per_node, t, p, d)
         for nodes, per_node in [(2, 8), (4, 4), (3, 6), (4, 8), (8, 2), (2, 5)]
         for t, p, d in itertools.product((1, 2, 3, 4, 8), (1, 2, 3, 4), (1, 2, 3))
         if t <= per_node and d * p <= nodes * (per_node // t)]


@pytest.mark.parametrize(("nodes", "per_node", "t", "p", "d"), CASES)
def test_every_tensor_group_lies_in_one_node(nodes, per_node, t, p, d):
    graph = hierarchical(nodes, per_node)
    pl = place(parallel_sizes(Parallelism(data=d, tensor=t, pipeline=p), nodes * per_node),
               ("tensor", "pipeline", "data"), graph)
    hosts = device_hosts(graph)
    for di, si in itertools.product(range(d), range(p)):
        group = pl.tensor_group(di, si)
        assert len(set(hosts[group].tolist())) == 1, (di, si, group)
    assert pl.tensor_groups_in_one_node
    used = pl.device.ravel()
    assert len(set(used.tolist())) == d * t * p                          # one rank per device
    if per_node % t == 0:
        assert sorted(used.tolist()) == list(range(d * t * p))           # the first D·T·P devices, in rank order


def test_order_is_fastest_varying_first():
    graph = hierarchical(2, 4)
    sizes = parallel_sizes(Parallelism(data=2, tensor=2, pipeline=2), 8)
    default = place(sizes, ("tensor", "pipeline", "data"), graph)
    assert default.tensor_group(0, 0).tolist() == [0, 1] and default.pipeline_group(0, 0).tolist() == [0, 2]
    assert default.data_group(0, 0).tolist() == [0, 4]
    data_first = place(sizes, ("data", "tensor", "pipeline"), graph)
    assert data_first.data_group(0, 0).tolist() == [0, 1] and data_first.tensor_group(0, 0).tolist() == [0, 2]
    assert data_first.pipeline_group(0, 0).tolist() == [0, 4]


def test_device_count_rule():
    assert parallel_sizes(Parallelism(tensor=2, pipeline=2), 16).data == 4          # null: devices / (T·P)
    assert parallel_sizes(Parallelism(data=1), 4).devices == 1                       # a subset is fine
    with pytest.raises(ConfigError, match=r"data × tensor × pipeline = 3 × 2 × 2 = 12 devices but the topology "
                                          r"has 8 devices"):
        parallel_sizes(Parallelism(data=3, tensor=2, pipeline=2), 8)
    with pytest.raises(ConfigError, match=r"tensor × pipeline = 3 × 2 = 6 must divide the topology's 16 devices"):
        parallel_sizes(Parallelism(tensor=3, pipeline=2), 16)
    with pytest.raises(ConfigError, match="parallelism.data: 5 workers but the topology has 4 devices"):
        parallel_sizes(Parallelism(data=5), 4)


def test_a_hybrid_run_uses_exactly_its_devices():
    raw = {"cluster": {"topology": {"kind": "switch", "devices": 16, "link": {"bandwidth": "50GB/s"}}},
           "workload": {"model": "bert_large", "batch_per_device": 8},
           "parallelism": {"data": 3, "tensor": 2, "pipeline": 2, "microbatches": 4},
           "training": {"iterations": 3, "warmup": 1}}
    result = simulate(load_config(raw))
    assert result.summary["workers"] == 12
    assert sorted({r.rank for r in result.iterations}) == list(range(12))
    assert result.summary["throughput_samples_per_s"] == pytest.approx(3 * 8 / result.summary["iteration_time_s"])


def test_data_parallel_groups_contend_for_the_nic_they_share():
    """T groups of a stage sync concurrently: with all of them behind one NIC, each gets 1/T of it."""
    from simulator.collectives import schedule
    from simulator.network import Network

    graph = hierarchical(2, 4)
    net = Network(graph)
    sched = schedule("ring", 2, 8 * 2**20)
    one, _ = net.concurrent_schedule_cost(sched, np.array([[0, 4]]))
    assert one == pytest.approx(net.schedule_time(sched, np.array([0, 4])), rel=1e-12)
    four, sent = net.concurrent_schedule_cost(sched, np.array([[0, 4], [1, 5], [2, 6], [3, 7]]))
    assert sent == 4 * sched.total_bytes_sent()
    assert four > 3.5 * one


def trainsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator", *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})


@pytest.fixture
def hybrid_file(tmp_path) -> Path:
    path = tmp_path / "hybrid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "hybrid",
        "cluster": {"topology": {"kind": "hierarchical", "nodes": 2, "devices_per_node": 4,
                                 "intra": {"bandwidth": "300GB/s"},
                                 "inter": {"kind": "switch", "bandwidth": "100Gbps"}}},
        "workload": {"model": "bert_large", "batch_per_device": 8},
        "parallelism": {"tensor": 4, "pipeline": 2, "microbatches": 4},
        "training": {"iterations": 3, "warmup": 1}}))
    return path


def test_explain_placement_prints_the_mapping_and_simulates_nothing(hybrid_file, tmp_path):
    res = trainsim("run", str(hybrid_file), "--explain-placement", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "data 1 × tensor 4 × pipeline 2 = 8 devices" in res.stdout and "embedding..block" in res.stdout
    assert not (tmp_path / "out").exists()
    res = trainsim("run", str(hybrid_file), "--explain-placement", "--json")
    info = json.loads(res.stdout)
    assert info["tensor_groups"] == [[0, 1, 2, 3], [4, 5, 6, 7]] and info["tensor_groups_in_one_node"]
    assert [r["node"] for r in info["ranks"]] == [0] * 4 + [1] * 4
    assert [s["n_layers"] for s in info["stages"]] == [13, 12]


@pytest.mark.parametrize(("override", "expected"), [
    ("parallelism.data=2", "parallelism: data × tensor × pipeline = 2 × 4 × 2 = 16 devices but the topology has 8"),
    ("parallelism.tensor=3", "parallelism: data is null, so tensor × pipeline = 3 × 2 = 6 must divide"),
    ("workload.model=gpt3_175b", "parallelism: gpt3_175b (1f1b, 4 microbatches, ZeRO-0) needs"),
    ("parallelism.order=[tensor,tensor,data]", "parallelism: order must name tensor, pipeline and data once each"),
])
def test_bad_parallel_configs_are_one_line_exit_2(hybrid_file, tmp_path, override, expected):
    res = trainsim("run", str(hybrid_file), "--out", str(tmp_path / "out"), "--set", override)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "out").exists()
