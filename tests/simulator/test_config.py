"""Every config error path: one located line naming the key and what was expected."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from simulator.config import ConfigError, load_config


def load_with(small_config, *overrides):
    return load_config(small_config, overrides)


def test_units_are_parsed_into_si(small_config):
    cfg = load_with(small_config, "cluster.topology.link.bandwidth=100Gbps", "cluster.topology.link.latency=2us",
                    "communication.bucket_size=64MiB")
    assert cfg.cluster.topology.link.bandwidth == 100e9 / 8
    assert cfg.cluster.topology.link.latency == 2e-6
    assert cfg.communication.bucket_size == 64 * 2**20


def test_bits_and_bytes_differ(small_config):
    gbps = load_with(small_config, "cluster.topology.link.bandwidth=8Gb/s").cluster.topology.link.bandwidth
    gBps = load_with(small_config, "cluster.topology.link.bandwidth=1GB/s").cluster.topology.link.bandwidth
    assert gbps == gBps == 1e9


@pytest.mark.parametrize(("override", "where", "expected"), [
    ("cluster.topology.link.bandwidth=fast", "cluster.topology.link.bandwidth", "expected a bandwidth"),
    ("cluster.topology.link.bandwidth=100GHz", "cluster.topology.link.bandwidth", "expected a bandwidth"),
    ("cluster.topology.link.latency=-1us", "cluster.topology.link.latency", "must be between 0 and 1e+09 s"),
    ("cluster.topology.link.latncy=1us", "cluster.topology.link.latncy", "unknown key"),
    ("cluster.topology.kind=swich", "cluster.topology", "'swich'"),
    ("communication.bucket_size=3s", "communication.bucket_size", "expected a size in bytes"),
    ("training.warmup=10", "training", "warmup (10) must be less than iterations (6)"),
    ("workload.batch_per_device=0", "workload.batch_per_device", "greater than 0"),
    ("sync.mode=bulk", "sync.mode", "'bsp'"),
])
def test_bad_values_name_the_key(small_config, override, where, expected):
    with pytest.raises(ConfigError) as err:
        load_with(small_config, override)
    msg = str(err.value)
    assert "\n" not in msg
    key = override.partition("=")[0]
    # the value came from a --set: the error names it (and the key inside it, when that is deeper)
    assert msg.startswith(f"--set {key}: " if key == where else f"--set {key}: {where}:"), msg
    assert expected in msg


def test_a_key_nested_one_level_too_deep(small_config):
    small_config["cluster"]["topology"]["link"]["bandwidth"] = {"value": "10GB/s"}
    with pytest.raises(ConfigError, match=r"cluster\.topology\.link\.bandwidth: expected a bandwidth"):
        load_config(small_config)


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: invalid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("cluster: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(evil)


def test_override_into_a_scalar_is_an_error(small_config):
    with pytest.raises(ConfigError, match=r"--set name.x=1: name is 'small', not a mapping"):
        load_with(small_config, "name.x=1")
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_with(small_config, "seed")


def test_relative_topology_path_resolves_against_the_config_file(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    (sub / "c.yaml").write_text("cluster: {topology: {kind: file, path: topo.yaml}}\n")
    cfg = load_config(sub / "c.yaml")
    assert cfg.cluster.topology.path == sub / "topo.yaml"


def test_config_is_frozen(small_config):
    cfg = load_config(small_config)
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3
