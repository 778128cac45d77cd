"""Hostile input: every file, config value and output path is a result or one line on stderr with exit 2.

Each class the hostile-input issue found has a case here; a small property-based fuzz over the
example configs (hypothesis) checks that a mutated config either runs to a strict-JSON, finite summary
or is refused with a ``TrainsimInputError`` — never another exception.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config import ConfigError, TrainsimInputError, load_config
from simulator.run import simulate
from tests.test_cli import trainsim

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "01_resnet50_128gpu_ring.yaml"


def refused(path_or_args, tmp_path: Path, *, expect: str, seconds: float = 20.0) -> str:
    """Run the CLI; it must exit 2 with one stderr line containing ``expect``, fast, writing nothing."""
    args = path_or_args if isinstance(path_or_args, list) else ["run", str(path_or_args)]
    out = tmp_path / "out"
    t0 = time.perf_counter()
    res = trainsim(*args, "--out", str(out)) if args[0] == "run" else trainsim(*args)
    assert time.perf_counter() - t0 < seconds
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert expect in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


# -- reading files ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data", "expect"), [
    ("not_utf8", EXAMPLE.read_bytes() + b"\nname: \xff\xfe\n", "not UTF-8 text (byte 0xff)"),
    ("deep", b"a: " + b"[" * 1200 + b"]" * 1200, "nested more than 64 levels"),
    ("bad_tag", EXAMPLE.read_bytes().replace(b"seed: 42", b'seed: !!float "abc"'), "invalid YAML value"),
    ("duplicate", EXAMPLE.read_bytes() + b"\nseed: 4\n", "duplicate key 'seed'"),
    ("python_tag", EXAMPLE.read_bytes().replace(b"seed: 42", b"seed: !!python/object:os.system ls"),
     "could not determine a constructor"),
    ("aliases", b"a: &a [x]\n" + b"".join(b"k%d: *a\n" % i for i in range(70)), "more than 64 aliases"),
    ("binary", EXAMPLE.read_bytes().replace(b"seed: 42", b"seed: !!binary aGVsbG8="), "tag !!binary is not allowed"),
    ("set", EXAMPLE.read_bytes().replace(b"seed: 42", b"seed: !!set {1: null}"), "tag !!set is not allowed"),
    ("timestamp", EXAMPLE.read_bytes().replace(b"seed: 42", b"seed: !!timestamp 2026-01-01"),
     "tag !!timestamp is not allowed"),
    ("date", EXAMPLE.read_bytes().replace(b"seed: 42", b"seed: 2026-01-01"),
     "seed: expected a whole number (got '2026-01-01')"),
])
def test_bad_yaml_files_are_one_line(tmp_path, name, data, expect):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    refused(path, tmp_path, expect=expect)


@pytest.mark.parametrize(("value", "expect"), [
    ("2026-01-01", "expected a whole number (got '2026-01-01')"),
    ("2026-01-01 10:00:00", "expected a whole number (got '2026-01-01 10:00:00')"),
    ("!!binary aGVsbG8=", "tag !!binary is not allowed"),
])
def test_a_sweep_value_that_is_a_date_or_binary_is_one_line(tmp_path, value, expect):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"base: {EXAMPLE}\ngrid:\n  training.iterations: [{value}]\n")
    refused(["sweep", str(sweep), "--out", str(tmp_path / "out")], tmp_path, expect=expect)


def test_a_date_is_text_where_text_is_expected(tmp_path):
    assert load_config(EXAMPLE, ["name=2026-01-01"]).name == "2026-01-01"


def test_an_alias_bomb_under_an_unknown_key_is_reported_without_expanding_it(tmp_path):
    levels = [b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefg"):
        prev = "abcdefg"[i]
        levels.append(f"{name}: &{name} [".encode() + b",".join([f"*{prev}".encode()] * 9) + b"]")
    path = tmp_path / "bomb.yaml"
    path.write_bytes(b"\n".join(levels) + b"\n" + EXAMPLE.read_bytes())
    line = refused(path, tmp_path, expect="unknown key", seconds=10)
    assert len(line) < 300


def test_a_huge_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"# " + b"x" * (5 * 2**20))
    refused(path, tmp_path, expect="a config is at most")


# -- numbers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "expect"), [
    ("cluster.topology.inter.bandwidth=100", "a bare number needs a unit"),
    ("cluster.topology.intra.latency=1", "a bare number needs a unit"),
    ("cluster.topology.inter.bandwidth=9**9**9 B/s", "expected a bandwidth"),
    ("cluster.topology.inter.bandwidth=1e999B/s", "expected a bandwidth"),
    ("cluster.topology.inter.latency=1e308s", "must be between 0 and 1e+09 s"),
    ("cluster.topology.inter.bandwidth=1e-300B/s", "must be between 1 and"),
    ("seed=-5", "--set seed: expected greater than or equal to 0"),
    ("training.iterations=1000000000000000000", "less than or equal to 1000000000"),
    ("training.iterations=20000000", "simulated one by one here, at most 10,000,000"),
    ("stragglers.sigma=1e308", "less than or equal to 10"),
    ("stragglers.slowdown=.inf", "finite number"),
    ("training.convergence={lr: .inf}", "finite number"),
    ("workload.batch_per_device=0", "greater than 0"),
])
def test_numbers_out_of_range_or_without_units_are_one_line(tmp_path, override, expect):
    refused(["run", str(EXAMPLE), "--set", override, "--out", str(tmp_path / "out")], tmp_path, expect=expect)


def test_zero_may_stay_bare_and_flop_counts_need_no_unit():
    cfg = load_config(EXAMPLE, ["cluster.topology.intra.latency=0"])
    assert cfg.cluster.topology.intra.latency == 0.0
    layers = [{"name": "l", "params": 10, "forward_flops": 1e9, "activation_bytes": "1kB"}]
    assert load_config(EXAMPLE, [f"workload.model={{name: m, layers: {layers}}}"]).workload.model.layers[0]


def test_a_diverging_learner_is_reported_not_written_as_nan():
    cfg = {"cluster": {"topology": {"kind": "switch", "devices": 4, "link": {"bandwidth": "10GB/s"}}},
           "training": {"iterations": 6, "warmup": 1,
                        "convergence": {"features": 8, "samples": 256, "batch": 8, "lr": 1.7e308}}}
    s = simulate(cfg).summary
    assert s["diverged"] is True and s["final_loss"] is None and s["diverged_at_update"] >= 0
    json.loads(json.dumps(s, allow_nan=False))


# -- output folders ---------------------------------------------------------------------------------------


def test_out_that_is_a_file_or_a_foreign_folder_is_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    res = trainsim("run", str(EXAMPLE), "--out", str(a_file))
    assert res.returncode == 2 and "exists and is not a folder" in res.stderr and a_file.read_text() == "mine"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    res = trainsim("run", str(EXAMPLE), "--out", str(foreign))
    assert res.returncode == 2 and "not a trainsim run" in res.stderr
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def test_a_second_run_into_the_same_folder_replaces_the_first_whole(tmp_path):
    out = tmp_path / "run"
    first = trainsim("run", str(ROOT / "examples" / "03_stragglers_bsp_asp_ssp.yaml"), "--out", str(out),
                     "--no-plots")
    assert first.returncode == 0 and (out / "convergence.csv").exists()
    second = trainsim("run", str(EXAMPLE), "--out", str(out), "--no-plots")
    assert second.returncode == 0
    assert not (out / "convergence.csv").exists() and not (out / "servers.csv").exists()
    assert json.loads((out / "summary.json").read_text())["name"] == "resnet50-128gpu-ring"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")]       # no temp folders left


# -- a fuzz of our own --------------------------------------------------------------------------------------

BASE = yaml.safe_load(EXAMPLE.read_text())
BASE["training"] = {"iterations": 3, "warmup": 1}
BASE["cluster"]["topology"]["nodes"] = 2

PATHS = [("cluster", "topology", "nodes"), ("cluster", "topology", "devices_per_node"),
         ("cluster", "topology", "intra", "bandwidth"), ("cluster", "topology", "inter", "latency"),
         ("cluster", "device"), ("workload", "batch_per_device"), ("workload", "model"),
         ("communication", "bucket_size"), ("communication", "algorithm"), ("communication", "overlap"),
         ("training", "iterations"), ("training", "warmup"), ("seed",), ("sync", "mode"), ("name",)]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                   st.text(max_size=12), st.sampled_from(["1e999B", "9**9**9 B", "-1GB/s", "10GB/s", "2us", ".inf",
                                                          "nan", "64MiB", "bogus", "ring", "auto", "a100"]),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


MUTATIONS = st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(VALUES, st.just("<delete>"))), min_size=1, max_size=3)


@settings(max_examples=120, deadline=None, derandomize=True,  # CI: the same cases every run (-m slow explores)
          suppress_health_check=[HealthCheck.too_slow])
@given(mutations=MUTATIONS)
def test_mutated_configs_run_or_are_refused_in_one_line(mutations):
    check_mutated(mutations)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=MUTATIONS)
def test_mutated_configs_long_run(mutations):
    """``pytest -m slow``: the same fuzz, 10,000 cases (before a release)."""
    check_mutated(mutations)


def check_mutated(mutations) -> None:
    cfg = copy.deepcopy(BASE)
    for path, value in mutations:
        node = cfg
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key), dict) or key not in node else node[key]
            if not isinstance(node, dict):
                break
        else:
            if value == "<delete>":
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    try:
        config = load_config(cfg)
        if _device_iterations(config) > 50_000:      # legal but minutes long: validated, not simulated here
            return
        result = simulate(config)
    except TrainsimInputError as e:
        assert "\n" not in str(e) and len(str(e)) < 400
        return
    text = json.dumps(result.summary, allow_nan=False)     # strict JSON, or this raises
    assert all(math.isfinite(v) for v in json.loads(text).values() if isinstance(v, float))


def _device_iterations(config) -> int:
    topo = config.cluster.topology
    devices = getattr(topo, "nodes", 1) * getattr(topo, "devices_per_node", 1) if topo.kind == "hierarchical" \
        else getattr(topo, "devices", 64)
    return devices * config.training.iterations


def test_config_errors_are_config_errors():
    with pytest.raises(ConfigError):
        load_config({"cluster": {"topology": {"kind": "switch", "devices": 4, "link": {"bandwidth": 100}}}})


@pytest.mark.parametrize(("args", "expect"), [
    (["collective", "--ranks", "2..100000000:+1"], "at most 1,048,576"),
    (["collective", "--sizes", "8B..1GiB:xnan"], "must be a finite number > 1"),
    (["collective", "--sizes", "8B..1GiB:xinf"], "must be a finite number > 1"),
    (["collective", "--sizes", "1e20B"], "expected a size in bytes"),
    (["collective", "--sizes", "2TiB"], "more than 1099511627776 bytes"),
    (["collective", "--collective", "nope"], "--collective: expected one of allreduce"),
    (["collective", "--bandwidth", "100"], "a bare number needs a unit"),
    (["collective", "--plot", "plot.txt"], "expected a file ending in .png"),
    (["topology", "fat_tree", "k=4", "latency=1"], "a bare number needs a unit"),
    (["topology", "fat_tree", "k=4", "--save", "graph.txt"], "expected a file ending in .yaml"),
])
def test_bad_command_lines_are_one_line(tmp_path, args, expect):
    res = trainsim(*args, cwd=tmp_path)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert expect in lines[0]


def test_collective_all_writes_no_plot_unless_asked(tmp_path):
    res = trainsim("collective", "--algorithm", "all", "--ranks", "4", "--sizes", "1MiB", "--json", cwd=tmp_path)
    assert res.returncode == 0 and list(tmp_path.iterdir()) == []


def test_a_sweep_with_a_scheduler_that_is_not_an_address_is_one_line(tmp_path):
    res = trainsim("sweep", str(ROOT / "examples" / "sweeps" / "scaling.yaml"), "--out", str(tmp_path / "s"),
                   "--scheduler", "garbage")
    assert res.returncode == 2 and "expected an address like tcp://host:8786" in res.stderr
    assert "Traceback" not in res.stderr and not list((tmp_path / "s").glob("results.*"))


def test_jobs_too_big_to_simulate_event_by_event_are_refused_before_they_start():
    with pytest.raises(ConfigError, match="device-iterations to simulate, at most 5e\\+06"):
        simulate(load_config(EXAMPLE, ["training.iterations=100000"]))           # 128 devices x 1e5
    with pytest.raises(ConfigError, match="at most 131,072"):
        load_config(EXAMPLE, ["cluster.topology.nodes=100000"])


def test_errors_found_after_loading_name_the_file_or_the_set(tmp_path):
    ps = ROOT / "examples" / "02_ps_vs_allreduce.yaml"
    refused(["run", str(EXAMPLE), "--set", "parallelism.tensor=3"], tmp_path,
            expect="--set parallelism.tensor: parallelism: data is null, so tensor × pipeline = 3 × 1 = 3")
    line = refused(["run", str(ps), "--set", "communication.servers=1000"], tmp_path,
                   expect="--set communication.servers: 32 workers and 1000 dedicated servers need 1032 devices")
    assert line.count("communication.servers") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(ps.read_text().replace("servers: 4", "servers: 1000"))
    refused(["run", str(bad)], tmp_path, expect=f"{bad}: communication.servers: 32 workers and 1000 dedicated")


def test_outputs_never_replace_a_file_or_folder_that_is_not_ours(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(EXAMPLE.read_text())
    refused(["topology", "fat_tree", "k=4", "bandwidth=100Gbps", "--save", str(config)], tmp_path,
            expect="exists and is not a topology file")
    measured = ROOT / "benchmarks" / "validation" / "results" / "2026-11-24-cpu-xeon-2core" / "measurements.csv"
    refused(["calibrate", str(measured), "--out", str(config)], tmp_path, expect="exists and is not a hardware profile")
    assert config.read_text() == EXAMPLE.read_text()
    foreign = tmp_path / "papers"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused(["compare", str(ROOT / "validation" / "profiles" / "cpu-xeon-2core.yaml"), str(measured), "--out",
             str(foreign)], tmp_path, expect="holds other files and no previous validation output")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    saved = tmp_path / "graph.yaml"     # a previous result of the same kind is replaced, as a re-run should
    for _ in range(2):
        assert trainsim("topology", "fat_tree", "k=4", "bandwidth=100Gbps", "--save", str(saved)).returncode == 0
