"""A calibrated profile in a config: ``trainsim run`` predicts with its α, β, γ (by hand), bad files fail cleanly."""

from __future__ import annotations

import json

import pytest
import yaml

from simulator.cli import main
from simulator.config import load_config
from simulator.network.profile import HardwareProfile, ProfileError, load_profile
from simulator.run import simulate
from simulator.workloads import get_model

TWO_REGIMES = {
    "format": "trainsim-profile/1",
    "device": "cpu",
    "regimes": [
        {"min_bytes": 0, "max_bytes": 1048576, "alpha_s": 1e-3, "beta_s_per_byte": 1e-6, "gamma_s_per_byte": 0.0},
        {"min_bytes": 1048576, "alpha_s": 2e-5, "beta_s_per_byte": 1e-9, "gamma_s_per_byte": 4e-10},
    ],
}


def write(tmp_path, data, name="profile.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_run_with_a_profile_predicts_the_schedule_cost_by_hand(small_config, tmp_path):
    small_config["communication"]["overlap"] = False  # one allreduce of the whole gradient per iteration
    small_config["communication"]["bucket_size"] = None
    without = simulate(load_config(small_config)).summary
    small_config["cluster"]["profile"] = str(write(tmp_path, TWO_REGIMES))
    with_profile = simulate(load_config(small_config)).summary
    n = get_model("resnet50").parameters * 4  # fp32 gradients, divisible by 4 ranks
    # ring over p = 4: 2(p-1) = 6 steps, moves 2(p-1)/p n = 1.5 n, reduces (p-1)/p n = 0.75 n; n > 1 MiB: regime 2
    expected = 6 * 2e-5 + 1.5 * n * 1e-9 + 0.75 * n * 4e-10
    assert with_profile["communication_s"] == pytest.approx(expected, rel=1e-12)
    assert with_profile["exposed_communication_s"] == pytest.approx(expected, rel=1e-12)
    assert with_profile["communication_s"] != pytest.approx(without["communication_s"], rel=0.01)
    assert with_profile["compute_s"] == pytest.approx(without["compute_s"], rel=1e-12)


def test_cli_run_with_a_profile_relative_to_the_config_file(small_config, tmp_path, capsys):
    small_config["communication"]["overlap"] = False
    small_config["communication"]["bucket_size"] = None
    small_config["cluster"]["profile"] = "profiles/cpu.yaml"  # relative to the config file's folder
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles", TWO_REGIMES, "cpu.yaml")
    config = write(tmp_path, small_config, "job.yaml")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--json", "--no-plots"]) == 0
    summary = json.loads(capsys.readouterr().out)
    n = get_model("resnet50").parameters * 4
    assert summary["communication_s"] == pytest.approx(6 * 2e-5 + 1.5 * n * 1e-9 + 0.75 * n * 4e-10, rel=1e-12)
    assert summary["network_model"] == "profile"


def test_rank_and_algorithm_specific_regimes_take_precedence(small_config, tmp_path):
    small_config["communication"]["overlap"] = False
    small_config["communication"]["bucket_size"] = None
    specific = {**TWO_REGIMES, "regimes": [
        {"algorithm": "ring", "ranks": 4, "alpha_s": 1e-4, "beta_s_per_byte": 2e-9},
        {"ranks": 4, "alpha_s": 5.0, "beta_s_per_byte": 5.0},
        {"alpha_s": 7.0, "beta_s_per_byte": 7.0},
    ]}
    small_config["cluster"]["profile"] = str(write(tmp_path, specific))
    n = get_model("resnet50").parameters * 4
    assert simulate(load_config(small_config)).summary["communication_s"] == pytest.approx(6e-4 + 1.5 * n * 2e-9)
    profile = load_profile(tmp_path / "profile.yaml")
    assert profile.regime(4096, "recursive_doubling", 4).alpha_s == 5.0  # same ranks, any algorithm
    assert profile.regime(4096, "ring", 8).alpha_s == 7.0                # not fitted: the fallback


@pytest.mark.parametrize(("content", "expected"), [
    ({**TWO_REGIMES, "regimes": [{**TWO_REGIMES["regimes"][0], "alpha_s": "fast"}, TWO_REGIMES["regimes"][1]]},
     "regimes.0.alpha_s: expected a number"),
    ({**TWO_REGIMES, "regimes": [{**TWO_REGIMES["regimes"][0], "beta_s_per_byte": -1e-9},
                                 TWO_REGIMES["regimes"][1]]},
     "regimes.0.beta_s_per_byte: expected greater than or equal to 0"),
    ({**TWO_REGIMES, "regimes": [TWO_REGIMES["regimes"][0]]}, "the last regime of a group must have max_bytes null"),
    ({**TWO_REGIMES, "regimes": [{**TWO_REGIMES["regimes"][0], "max_bytes": 4096}, TWO_REGIMES["regimes"][1]]},
     "regimes.0: max_bytes must equal the next regime's min_bytes (1048576), got 4096"),
    ({**TWO_REGIMES, "regimes": [{"ranks": 2, "alpha_s": 1.0, "beta_s_per_byte": 1.0},
                                 {"ranks": 4, "alpha_s": 1.0, "beta_s_per_byte": 1.0}]},
     "needs a fallback group"),
    ({**TWO_REGIMES, "colour": "red"}, "colour: unknown key"),
    ({"regimes": []}, "expected a trainsim hardware profile (a mapping with format: trainsim-profile/1), got None"),
    ("format: [unclosed", "invalid YAML"),
])
def test_a_bad_profile_is_one_line_naming_the_file_and_key(small_config, tmp_path, capsys, content, expected):
    path = write(tmp_path, content)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)
    small_config["cluster"]["profile"] = str(path)
    config = write(tmp_path, small_config, "job.yaml")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and line.startswith("trainsim run: error: ") and f"cluster.profile: {path}: " in line
    assert expected in line and not (tmp_path / "out").exists()


def test_a_missing_profile_file(small_config, tmp_path):
    small_config["cluster"]["profile"] = str(tmp_path / "nope.yaml")
    with pytest.raises(Exception, match="cluster.profile: .*nope.yaml: no such file"):
        simulate(load_config(small_config))


def test_profile_yaml_round_trip(tmp_path):
    profile = HardwareProfile.model_validate(TWO_REGIMES)
    assert load_profile(profile.save(tmp_path / "sub" / "p.yaml")) == profile


def test_a_profile_with_the_parameter_server_pattern_is_refused(small_config, tmp_path):
    small_config["cluster"]["profile"] = str(write(tmp_path, TWO_REGIMES))
    small_config["communication"]["pattern"] = "parameter_server"
    small_config["communication"].pop("algorithm", None)   # refused on its own with parameter_server
    with pytest.raises(Exception, match="cluster.profile: a calibrated profile times collectives"):
        simulate(load_config(small_config))


def test_committed_profiles_load_and_carry_provenance():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "validation" / "profiles"
    profiles = sorted(folder.glob("*.yaml"))
    assert profiles, "validation/profiles/ holds at least one calibrated profile"
    for path in profiles:
        p = load_profile(path)
        assert {"cpu", "command", "git_revision", "versions"} <= set(p.provenance), path.name
        assert p.fit["points_held_out"] > 0 and p.fit["method"], path.name


def test_committed_accuracy_record_is_reproduced_from_its_files():
    from pathlib import Path

    from validation.compare import compare

    root = Path(__file__).resolve().parents[2]
    for run in sorted((root / "benchmarks" / "validation" / "results").iterdir()):
        recorded = json.loads((run / "summary.json").read_text())
        profile = load_profile(root / "validation" / "profiles" / f"{run.name.split('-', 3)[3]}.yaml")
        again = compare(profile, run / "measurements.csv", reference=run / "reference_mpi.csv").summary
        assert again["mape_held_out_ge_64KiB_pct"] == pytest.approx(recorded["mape_held_out_ge_64KiB_pct"])
        for a, b in zip(again["by_group"], recorded["by_group"], strict=True):
            assert a["mape_held_out_ge_64KiB_pct"] == pytest.approx(b["mape_held_out_ge_64KiB_pct"])
