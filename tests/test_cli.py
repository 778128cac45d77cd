"""The CLI as a user meets it: files, clean --json, one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simulator.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def trainsim(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simulator", *args], capture_output=True, text=True,
                          cwd=cwd, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})


@pytest.fixture
def config_file(tmp_path, small_config) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_config))
    return path


def test_run_json_is_one_clean_object(config_file, tmp_path):
    res = trainsim("run", str(config_file), "--out", str(tmp_path / "out"), "--json", "--no-plots")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["workers"] == 4
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary


@pytest.mark.parametrize(("override", "expected"), [
    ("cluster.topology.link.bandwidth=fast", "cluster.topology.link.bandwidth: expected a bandwidth"),
    ("cluster.topology.link.bandwidth=100GHz", "expected a bandwidth"),
    ("cluster.topology.link.latency=-1us", "cluster.topology.link.latency"),
    ("cluster.topology.lnk={}", "cluster.topology.lnk: unknown key"),
    ("parallelism.data=5", "parallelism.data: 5 workers but the topology has 4 devices"),
    ("communication.algorithm=carrier_pigeon", "communication.algorithm: expected auto or one of"),
    ("workload.model=alexnet9000", "workload.model:"),
    ("cluster.device=abacus", "cluster.device:"),
    ("workload.batch_per_device=100000", "needs"),
    ("workload.model=[{name: a, params: many, forward_flops: 1}]", "workload.model.layers.0.params: expected a whole"),
    ("workload.model=[{name: a, kind: gemm}]", "workload.model.layers.0.params: required, but missing"),
    ("workload.model={name: m, layers: [{name: b, kind: transformer_block, hidden: 64}]}",
     "workload.model.layers.0.kind: transformer_block needs heads, seq_len"),
    ("workload.model=7", "workload.model: expected a preset name"),
    ("parallelism.sequence_parallel=true", "parallelism.sequence_parallel: "),
    ("parallelism.recompute=selective", "parallelism.recompute: selective recomputation"),
    ("cluster.device={name: a100, efficiency: {attention: 0.5}}", "cluster.device.efficiency.attention: resnet50"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(config_file, tmp_path, override, expected):
    out = tmp_path / "out"
    res = trainsim("run", str(config_file), "--out", str(out), "--set", override)
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert expected in lines[0]
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [config_file]  # no temporary folder left behind either


def test_missing_and_invalid_files(tmp_path):
    res = trainsim("run", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "missing.yaml: no such file" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: {topology: [\n")
    res = trainsim("run", str(bad))
    assert res.returncode == 2 and "invalid YAML" in res.stderr and "Traceback" not in res.stderr


def test_disconnected_topology_file(tmp_path, small_config):
    topo = tmp_path / "topo.yaml"
    topo.write_text(yaml.safe_dump({
        "nodes": [{"name": "d0", "role": "device", "rank": 0}, {"name": "d1", "role": "device", "rank": 1},
                  {"name": "d2", "role": "device", "rank": 2}, {"name": "s0", "role": "switch"}],
        "edges": [{"u": "d0", "v": "s0", "bandwidth": "10GB/s", "latency": "1us"},
                  {"u": "d1", "v": "s0", "bandwidth": "10GB/s", "latency": "1us"}],
    }))
    small_config["cluster"]["topology"] = {"kind": "file", "path": "topo.yaml"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(small_config))
    res = trainsim("run", str(cfg), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "d2" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_collective_json_matches_the_closed_form():
    res = trainsim("collective", "--algorithm", "ring", "--ranks", "8", "--size", "64MiB", "--topology", "switch",
                   "--bandwidth", "10GB/s", "--latency", "1us", "--json")
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert set(row) >= {"algorithm", "ranks", "size_bytes", "simulated_s", "analytic_s", "algbw_GBps", "busbw_GBps"}
    p, n = 8, 64 * 2**20
    closed = 2 * (p - 1) * 2e-6 + 2 * (p - 1) / p * n / 10e9
    assert row["simulated_s"] == pytest.approx(closed, rel=1e-9)
    assert row["analytic_s"] == pytest.approx(closed, rel=1e-9)
    assert row["busbw_GBps"] == pytest.approx(n / closed / 1e9 * 2 * (p - 1) / p, rel=1e-9)


@pytest.mark.parametrize("argv", [
    ["collective", "--sizes", "lots"], ["collective", "--ranks", "two"], ["collective", "--algorithm", "nope"],
    ["topology", "fat_tree", "k=3", "bandwidth=1GB/s"], ["topology", "moebius"],
])
def test_cli_argument_errors(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("trainsim ")


def test_every_command_has_help_with_an_example():
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"run", "collective", "topology"} <= set(subs.choices)
    for name, sub in subs.choices.items():
        assert "example: trainsim " + name in sub.format_help(), name


@pytest.mark.parametrize("kind", [["fat_tree", "k=4"], ["hierarchical", "nodes=2", "devices_per_node=4",
                                  "intra_bandwidth=300GB/s", "inter_bandwidth=100Gbps"], ["torus", "dims=3,3"]])
def test_topology_describe_draw_and_save_round_trip(kind, tmp_path, capsys):
    png, saved = tmp_path / "t.png", tmp_path / "t.yaml"
    args = ["topology", *kind, "bandwidth=10GB/s"] if kind[0] != "hierarchical" else ["topology", *kind]
    assert main([*args, "--draw", str(png), "--save", str(saved), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import topologies

    again = topologies.load(saved)
    assert len(topologies.devices(again)) == info["devices"]
    assert again.number_of_edges() == info["links"]


def test_run_replications_flag(config_file, tmp_path):
    res = trainsim("run", str(config_file), "--out", str(tmp_path / "r"), "--json", "--no-plots", "--replications", "2")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["replications"] == 2 and "iteration_time_s_ci95" in summary
    bad = trainsim("run", str(config_file), "--out", str(tmp_path / "bad"), "--replications", "0")
    assert bad.returncode == 2 and "training.replications" in bad.stderr and "Traceback" not in bad.stderr


def test_the_terminal_summary_shows_units():
    from simulator.cli import with_unit

    assert with_unit("iteration_time_s", 0.03354) == "33.54 ms"
    assert with_unit("bytes_sent_per_iteration", 2.597e10) == "25.97 GB"
    assert with_unit("gradient_bytes", 102228128) == "102.2 MB"
    assert with_unit("throughput_samples_per_s", 122069.4) == "122,069 samples/s"
    assert with_unit("wait_s", 0.0) == "0 s" and with_unit("workers", 128) == "128"
    assert with_unit("staleness_mean", 2.5) == "2.5 updates" and with_unit("clock_staleness_max", 2) == "2 iterations"
    assert with_unit("scaling_efficiency", 0.359583) == "0.359583"


# -- names, defaults and argument errors --------------------------------------------------------------


@pytest.mark.parametrize("what", ["models", "devices", "algorithms", "collectives", "topologies"])
def test_list_names_exactly_what_configs_and_flags_accept(what):
    import topologies
    from simulator.collectives import COLLECTIVES, algorithms
    from simulator.devices import CATALOG
    from simulator.workloads import PRESETS

    res = trainsim("list", what, "--json")
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    expected = {"models": set(PRESETS), "devices": set(CATALOG), "topologies": set(topologies.KINDS),
                "collectives": set(COLLECTIVES),
                "algorithms": {a for c in COLLECTIVES for a in algorithms(c)}}[what]
    assert set(listed) == expected
    if what == "algorithms":
        assert listed["bruck"] == "allgather" and "allreduce" in listed["ring"]
    if what == "devices":   # each workload.precision's peak a device has, and none it lacks
        assert "312 TFLOP/s peak (fp32 19.5, tf32 156)" in listed["a100"]
        assert "275 TFLOP/s peak," in listed["tpu_v4"]
    assert what in trainsim("list", what).stdout


def test_help_shows_defaults_and_the_names_an_option_takes():
    from simulator.collectives import algorithms

    text = " ".join(trainsim("collective", "--help").stdout.split())
    assert "(default: 64MiB)" in text and "(default: 10GB/s)" in text
    assert "[one of: " + ", ".join(algorithms("allreduce")) + "]" in text
    assert "fat_tree" in text and "alltoall" in text
    kernels_help = " ".join(trainsim("kernels", "--help").stdout.split())
    assert "(default: 1KiB..64MiB:x4)" in kernels_help and "(default: 5)" in kernels_help


@pytest.mark.parametrize("args", [["run"], ["run", "x.yaml", "--bogus"], ["kernels", "bench", "--repeats", "x"],
                                  ["lst"], ["list", "gpus"], ["collective", "--network", "ideal"]])
def test_an_argument_error_is_one_line_and_exit_2(args):
    res = trainsim(*args)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "usage:" not in res.stderr and "--help" in res.stderr, res.stderr


@pytest.mark.parametrize("given, expected", [(None, "1"), ("4", "4")])
def test_the_program_runs_blas_single_threaded_unless_told(given, expected):
    """As a program, trainsim sets OPENBLAS_NUM_THREADS=1 before numpy loads (its arrays are small; BLAS threads
    only spin, and would oversubscribe a sweep's workers); a value the user set is kept."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    code = ("import os, sys\nsys.argv = ['trainsim', 'list', 'models']\nfrom simulator.cli import main\n"
            "status = main()\nprint(os.environ.get('OPENBLAS_NUM_THREADS'), file=sys.stderr)\nsys.exit(status)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stderr.strip().splitlines()[-1] == expected
