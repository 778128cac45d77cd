"""``trainsim calibrate`` and ``trainsim compare`` on files, and the MPI reference in a comparison."""

from __future__ import annotations

import csv
import json

import pytest
from validation_helpers import ONE, TWO, synthetic

from simulator.cli import build_parser, main
from simulator.network.profile import load_profile
from validation.compare import compare, predict
from validation.records import Measurement, Measurements


def test_calibrate_then_compare_from_files(tmp_path, capsys):
    synthetic(TWO).write(tmp_path)
    profile_path = tmp_path / "profile.yaml"
    assert main(["calibrate", str(tmp_path / "measurements.csv"), "--out", str(profile_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    profile = load_profile(profile_path)
    assert printed["regimes"] == [r.model_dump(mode="json", exclude_none=True) for r in profile.regimes]
    assert len(profile.regimes) == 2 and profile.fit["holdout"] == "sizes"
    assert profile.provenance["synthetic"] is True  # the measurements' provenance travels into the profile
    assert profile.provenance["calibrated"]["command"].startswith("trainsim calibrate")
    out = tmp_path / "cmp"
    assert main(["compare", str(profile_path), str(tmp_path / "measurements.csv"), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {p.name for p in out.iterdir()} == {"comparison.csv", "predicted_vs_measured.png"}
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert len(rows) == summary["points"] and sum(r["held_out"] == "True" for r in rows) == summary["held_out_points"]
    # held-out sizes are predicted to within the noise (1 %), except the one in the gap between the two
    # regimes' fitted sizes: the data cannot say on which side of the break it lies
    small, large = profile.regimes
    gap = range(small.fitted_range_bytes[1] + 1, large.fitted_range_bytes[0])
    errors = [abs(float(r["error_pct"])) for r in rows if r["held_out"] == "True" and int(r["size_bytes"]) not in gap]
    assert len(errors) > 20 and max(errors) < 3.0


def test_the_tables_print(tmp_path, capsys):
    synthetic(ONE, sizes="4KiB..1MiB:x4", ranks=(2, 4)).write(tmp_path)
    assert main(["calibrate", str(tmp_path / "measurements.csv"), "--out", str(tmp_path / "p.yaml")]) == 0
    assert main(["compare", str(tmp_path / "p.yaml"), str(tmp_path / "measurements.csv")]) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "MAPE >= 64 KiB" in out and "ring p=4" in out


def test_mpi_reference_is_compared_with_the_fastest_predicted_algorithm():
    data = synthetic(ONE, ranks=(2, 4))
    profile = __import__("validation").calibrate(data)
    ref = Measurements([Measurement("cpu", "mpi", "allreduce", 4, n, "float32", 0, 1e-3, "mpi")
                        for n in (4096, 1 << 20)])
    c = compare(profile, data, reference=ref)
    mpi_rows = [r for r in c.rows if r["source"] == "mpi"]
    for r in mpi_rows:
        best = min(predict(profile, a, 4, r["size_bytes"]) for a in ("ring", "recursive_doubling"))
        assert r["predicted_s"] == best and r["held_out"]
    assert c.summary["reference_mpi"]["points"] == 2
    assert c.summary["held_out_points"] == len([r for r in c.rows if r["held_out"] and r["source"] != "mpi"])


@pytest.mark.parametrize("name", ["validate", "calibrate", "compare"])
def test_help_ends_with_an_example(name):
    sub = build_parser()._subparsers._group_actions[0].choices[name]
    assert f"example: trainsim {name}" in sub.format_help()


def test_mpi_reference_of_another_collective_uses_that_collectives_algorithms():
    data = synthetic(ONE, ranks=(2, 4))
    profile = __import__("validation").calibrate(data)
    ref = Measurements([Measurement("cpu", "mpi", c, 4, 1 << 20, "float32", 0, 1e-3, "mpi")
                        for c in ("allgather", "broadcast")])
    rows = {r["collective"]: r for r in compare(profile, data, reference=ref).rows if r["source"] == "mpi"}
    # allgather: the fitted algorithms that implement it (ring, recursive_doubling); broadcast implements
    # neither, so every broadcast algorithm is a candidate
    assert rows["allgather"]["predicted_s"] == min(predict(profile, a, 4, 1 << 20, "allgather")
                                                   for a in ("ring", "recursive_doubling"))
    assert rows["broadcast"]["predicted_s"] == min(predict(profile, a, 4, 1 << 20, "broadcast")
                                                   for a in ("binomial_tree", "scatter_allgather"))
    assert rows["broadcast"]["predicted_algorithm"] in ("binomial_tree", "scatter_allgather")


def test_a_point_of_another_collective_is_never_counted_as_fitted():
    data = synthetic(ONE, ranks=(2, 4))
    profile = __import__("validation").calibrate(data)
    fitted = compare(profile, data).summary["held_out_points"]
    other = Measurements([Measurement(m.device, m.algorithm, "allgather", m.ranks, m.size_bytes, m.dtype,
                                      m.repetition, m.seconds) for m in data.rows])
    s = compare(profile, other).summary
    assert fitted < s["points"] and s["held_out_points"] == s["points"]


def test_a_reference_file_of_kernel_rows_is_refused(tmp_path, capsys):
    data = synthetic(ONE, ranks=(2,), sizes="4KiB..64KiB:x4")
    data.write(tmp_path)
    assert main(["calibrate", str(tmp_path / "measurements.csv"), "--out", str(tmp_path / "p.yaml")]) == 0
    capsys.readouterr()
    csv_path = str(tmp_path / "measurements.csv")
    assert main(["compare", str(tmp_path / "p.yaml"), csv_path, "--reference", csv_path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--reference takes MPI measurements (source: mpi)" in err


@pytest.mark.parametrize(("fit", "message"), [
    ({"ranks": 5}, "fit.ranks: expected a list"),
    ({"algorithms": "ring"}, "fit.algorithms: expected a list"),
    ({"sizes_bytes": [0]}, "fit.sizes_bytes.0: expected greater than 0"),
    ({"points_fitted": -1}, "fit.points_fitted: expected greater than or equal to 0"),
    ({"colour": "red"}, "fit.colour: unknown key"),
    (7, "fit: expected a mapping"),
])
def test_a_malformed_fit_section_is_one_line(tmp_path, capsys, fit, message):
    import yaml

    data = synthetic(ONE, ranks=(2,), sizes="4KiB..64KiB:x4")
    data.write(tmp_path)
    assert main(["calibrate", str(tmp_path / "measurements.csv"), "--out", str(tmp_path / "p.yaml")]) == 0
    raw = yaml.safe_load((tmp_path / "p.yaml").read_text())
    raw["fit"] = fit
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "bad.yaml"), str(tmp_path / "measurements.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
