"""Profiles per link class: a calibrated (or typed) profile sets a link class's efficiency and software
latency on the real topology, so ``trainsim run`` times every collective and flow with them.

Independent truth: an nccl-tests log written from the ring closed form on links of 300 GB/s effective
(of 450) with 5 µs per message, ``t(n) = 2(p-1)·5µs + 2(p-1)/p · n / 300e9``; calibrating it as class
``nvlink`` at line rate 450 GB/s must give efficiency 300/450 and software latency 5 µs, and a run with
the resulting profile must equal a run whose links were typed with those two numbers.
"""

from __future__ import annotations

import pytest
import yaml

from simulator.cli import main
from simulator.config import ConfigError, load_config
from simulator.network.profile import ProfileError, load_profile
from tests.simulator.test_algorithm_options import error, summary
from tests.simulator.test_engine_matrix import PARALLEL, SYNC, set_dotted
from tests.validation.foreign_logs import nccl_log

P, EFF, SOFT = 8, 300 / 450, 5e-6
TWO_REGIMES = {"format": "trainsim-profile/1", "device": "cpu", "regimes": [
    {"min_bytes": 0, "alpha_s": 2e-5, "beta_s_per_byte": 1e-9, "gamma_s_per_byte": 4e-10}]}


def ring_seconds(n: int) -> float:
    return 2 * (P - 1) * SOFT + 2 * (P - 1) / P * n / (EFF * 450e9)


@pytest.fixture(scope="module")
def link_profile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("link")
    log = folder / "all_reduce.log"
    log.write_text(nccl_log(ring_seconds, sizes=tuple(4096 << (2 * k) for k in range(10))))
    out = folder / "nvlink.yaml"
    assert main(["calibrate", str(log), "--link-class", "nvlink", "--line-rate", "450GB/s", "--out", str(out)]) == 0
    return out


def test_calibrate_turns_the_fit_into_the_link_class_figures(link_profile):
    profile = load_profile(link_profile)
    assert profile.per_link and not profile.regimes
    figures = profile.link_classes["nvlink"]
    assert figures.efficiency == pytest.approx(EFF, rel=1e-3)
    assert figures.software_latency_s == pytest.approx(SOFT, rel=1e-3)
    assert profile.gamma_s_per_byte is None            # nccl-tests' ring: gamma fixed, not fitted
    assert profile.fit["link_class"] == "nvlink" and profile.fit["line_rate_Bps"] == 450e9


def job(parallel: str = "data", sync: str = "allreduce", **extra) -> dict:
    cfg = {
        "name": f"{parallel}-{sync}", "seed": 3,
        "cluster": {"topology": {"kind": "hierarchical", "nodes": 2, "devices_per_node": 8,
                                 "intra": {"bandwidth": "450GB/s", "latency": 0, "class": "nvlink"},
                                 "inter": {"kind": "switch", "bandwidth": "400Gbps", "latency": "1us",
                                           "class": "infiniband_ndr"}},
                    "device": "a100"},
        "workload": {"model": "bert_large", "batch_per_device": 8},
        "parallelism": dict(PARALLEL[parallel]),
        "communication": {**SYNC[sync][0], "bucket_size": "50MiB"},
        "sync": dict(SYNC[sync][1]),
        "training": {"iterations": 3, "warmup": 1},
    }
    for key, value in extra.items():
        set_dotted(cfg, key, value)
    return cfg




CASES = [(parallel, "allreduce") for parallel in PARALLEL] + [("data", s) for s in ("ps-bsp", "ps-ssp", "ps-asp")]


@pytest.mark.parametrize(("parallel", "sync"), CASES)
def test_a_link_profile_times_the_job_on_the_topology_like_typed_links(link_profile, parallel, sync):
    profile = load_profile(link_profile).link_classes["nvlink"]
    with_profile = summary(job(parallel, sync, **{"cluster.profile": str(link_profile)}))
    soft = f"{profile.software_latency_s!r}s"
    typed = summary(job(parallel, sync, **{"cluster.topology.intra.efficiency": profile.efficiency,
                                           "cluster.topology.intra.software_latency": soft}))
    defaults = summary(job(parallel, sync))
    assert with_profile["iteration_time_s"] == pytest.approx(typed["iteration_time_s"], rel=1e-12)
    assert with_profile["network_efficiency"]["nvlink"] == pytest.approx(EFF, rel=1e-3)
    assert with_profile["network_model"] == "fluid"           # on the links, not a whole-collective formula
    assert with_profile["iteration_time_s"] != defaults["iteration_time_s"]


def test_network_link_classes_override_a_class_for_every_link_of_it():
    every = {"parallelism.data": 16}    # the gradients cross the InfiniBand links
    typed = summary(job(**every, **{"cluster.topology.inter.efficiency": 0.5,
                                    "cluster.topology.inter.software_latency": "20us"}))
    by_class = summary(job(**every, **{"network.link_classes": {"infiniband_ndr": {"efficiency": 0.5,
                                                                                   "software_latency": "20us"}}}))
    assert by_class == typed
    assert by_class["communication_s"] > summary(job(**every))["communication_s"]
    # a link's own value wins over the class-wide one, which then must reach some link
    msg = error(job(**{"cluster.topology.inter.efficiency": 0.5,
                       "network.link_classes": {"infiniband_ndr": {"efficiency": 0.9}}}))
    assert msg == ("network.link_classes.infiniband_ndr.efficiency: every link of class infiniband_ndr sets its "
                   "own efficiency")
    assert error(job(**{"network.link_classes": {"tcp": {"efficiency": 0.5}}})) == (
        "network.link_classes.tcp: no link of cluster.topology has class tcp")
    assert "give efficiency, software_latency or both" in str(pytest.raises(
        ConfigError, load_config, job(**{"network.link_classes": {"nvlink": {}}})).value)


def test_typed_link_profiles_and_refusals(tmp_path, link_profile):
    typed = tmp_path / "typed.yaml"
    typed.write_text(yaml.safe_dump({"format": "trainsim-profile/1", "device": "h100",
                                     "link_classes": {"infiniband_ndr": {"efficiency": 0.5}},
                                     "gamma_s_per_byte": 1e-10}))
    slow = summary(job(**{"cluster.profile": str(typed), "parallelism.data": 16}))
    assert slow["network_efficiency"]["infiniband_ndr"] == 0.5
    assert slow["communication_s"] > summary(job(**{"parallelism.data": 16}))["communication_s"]
    typed.write_text(yaml.safe_dump({"format": "trainsim-profile/1", "device": "h100",
                                     "link_classes": {"infiniband_ndr": {"efficiency": 0.5}},
                                     "gamma_s_per_byte": 1e-8}))
    assert summary(job(**{"cluster.profile": str(typed), "parallelism.data": 16}))["communication_s"] > slow[
        "communication_s"]                                    # its gamma times the reductions
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump({**TWO_REGIMES, "link_classes": {"nvlink": {"efficiency": 0.5}}}))
    with pytest.raises(ProfileError, match="exactly one of the two"):
        load_profile(both)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"format": "trainsim-profile/1", "link_classes": {"nvlink3": {"efficiency": 0.5}}}))
    with pytest.raises(ProfileError, match="link_classes.nvlink3: expected a link class"):
        load_profile(bad)
    regimes = tmp_path / "regimes.yaml"
    regimes.write_text(yaml.safe_dump(TWO_REGIMES))
    assert "a calibrated cluster.profile with regimes times collectives" in error(
        job(**{"cluster.profile": str(regimes), "network.link_classes": {"nvlink": {"efficiency": 0.5}}}))
    assert "cluster.profile's link_classes set it too" in error(
        job(**{"cluster.profile": str(link_profile), "network.link_classes": {"nvlink": {"efficiency": 0.5}}}))
    # what a whole-collective profile refuses, a link profile allows
    assert "fitted alpha already" in error(job(**{"cluster.profile": str(regimes),
                                                  "communication.launch_latency": "8us"}))
    assert summary(job(**{"cluster.profile": str(link_profile), "communication.launch_latency": "8us"}))


def test_compare_and_calibrate_refuse_what_cannot_apply(tmp_path, link_profile, capsys):
    log = tmp_path / "all_reduce.log"
    log.write_text(nccl_log(ring_seconds))
    assert main(["compare", str(link_profile), str(log), "--out", str(tmp_path / "cmp")]) == 2
    assert "a link profile (link_classes) is applied on a topology" in capsys.readouterr().err
    assert main(["calibrate", str(log), "--line-rate", "450GB/s", "--out", str(tmp_path / "p.yaml")]) == 2
    assert "--line-rate: applies with --link-class only" in capsys.readouterr().err
    assert main(["calibrate", str(log), "--link-class", "nvlink", "--out", str(tmp_path / "p.yaml")]) == 2
    assert "--link-class: needs --line-rate" in capsys.readouterr().err
    assert main(["calibrate", str(log), "--link-class", "nvlink", "--line-rate", "100GB/s",
                 "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "above the line rate" in err and err.count("\n") == 1
    assert main(["calibrate", str(log), "--link-class", "warp", "--line-rate", "1TB/s",
                 "--out", str(tmp_path / "p.yaml")]) == 2
    assert "--link-class: expected one of" in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()
