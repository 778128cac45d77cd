"""``trainsim validate`` end to end on the real kernels (tiny: CPU, 2 ranks), and the MPI reference."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.network.profile import load_profile

ROOT = Path(__file__).resolve().parents[2]
FILES = {"measurements.csv", "provenance.json", "profile.yaml", "comparison.csv", "predicted_vs_measured.png",
         "summary.json"}


def kernels_ready() -> bool:
    try:
        import kernels
    except ImportError:
        return False
    return callable(getattr(kernels, "executor", None))


def trainsim(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/bin:/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": "/tmp"}
    return subprocess.run([sys.executable, "-m", "simulator", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


needs_kernels = pytest.mark.skipif(not kernels_ready(), reason="kernels.executor is not available")


@needs_kernels
def test_validate_tiny_writes_every_file_and_reports_held_out_error(tmp_path):
    out = tmp_path / "val"
    res = trainsim("validate", "--sizes", "4KiB..64KiB:x4", "--ranks", "2", "--repeats", "3", "--warmup", "1",
                   "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)  # one clean JSON object
    assert {p.name for p in out.iterdir()} == FILES
    assert summary["held_out_points"] == 2  # 16 KiB is held out, for both algorithms
    assert summary["mape_held_out_pct"] is not None and summary["mape_held_out_ge_64KiB_pct"] is None
    rows = list(csv.DictReader((out / "measurements.csv").open()))
    provenance = json.loads((out / "provenance.json").read_text())
    again = provenance["measure"]["sentinel"]["batches_measured_again"]   # a disturbed batch is timed once more
    assert len(rows) == 2 * 3 * 3 + 3 * again and {r["algorithm"] for r in rows} == {"ring", "recursive_doubling"}
    assert all(float(r["seconds"]) > 0 and float(r["sentinel_s"]) > 0 for r in rows)
    comparison = list(csv.DictReader((out / "comparison.csv").open()))
    assert {r["size_bytes"] for r in comparison if r["held_out"] == "True"} == {"16384"}
    profile = load_profile(out / "profile.yaml")  # what a config's cluster.profile would load
    assert profile.device == "cpu" and profile.fit["held_out_sizes_bytes"] == [16384]
    assert {"cpu", "versions", "git_revision", "command"} <= set(provenance)
    assert provenance["command"].startswith("trainsim validate --sizes 4KiB..64KiB:x4")
    assert profile.provenance["cpu"] == provenance["cpu"]
    assert (out / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
    # the separate steps reproduce it from the files
    again = trainsim("compare", str(out / "profile.yaml"), str(out / "measurements.csv"), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["mape_held_out_pct"] == pytest.approx(summary["mape_held_out_pct"])


def test_validate_bad_arguments_are_one_line_exit_2(tmp_path):
    for args, expected in ((["--sizes", "4KiB..16KiB:x4", "--algorithms", "ringg"], "--algorithms: expected names"),
                           (["--sizes", "4095B,8KiB"], "positive multiple of 4 bytes"),
                           (["--holdout", "ranks", "--ranks", "2"], "--holdout ranks: needs two or more rank counts")):
        res = trainsim("validate", *args, "--out", str(tmp_path / "val"))
        assert res.returncode == 2 and expected in res.stderr and res.stderr.strip().count("\n") == 0
        assert not (tmp_path / "val").exists()


def test_reference_mpi_without_mpi_says_what_to_install(monkeypatch):
    from validation import mpi

    monkeypatch.setattr(mpi.shutil, "which", lambda name: None)
    assert "no mpiexec on PATH" in mpi.mpi_unavailable()
    with pytest.raises(mpi.MeasureError, match="--reference mpi: no mpiexec on PATH"):
        mpi.measure_mpi([2], [4096])


@pytest.mark.skipif(__import__("validation.mpi", fromlist=["x"]).mpi_unavailable() is not None,
                    reason="no MPI here (mpiexec and mpi4py are optional)")
def test_mpi_reference_measures_allreduce():
    from validation.mpi import measure_mpi

    ref = measure_mpi([2], [4096, 65536], repeats=3, warmup=1)
    assert len(ref.rows) == 6 and {m.source for m in ref.rows} == {"mpi"}
    assert all(m.seconds > 0 and m.algorithm == "mpi" for m in ref.rows)
    assert ref.provenance["mpi_library"]


@pytest.mark.skipif(__import__("validation.mpi", fromlist=["x"]).mpi_unavailable() is not None,
                    reason="no MPI here (mpiexec and mpi4py are optional)")
def test_mpi_reference_spreads_its_repetitions_over_rounds_and_fits_as_its_own_implementation():
    from validation.calibrate import calibrate
    from validation.mpi import measure_mpi

    ref = measure_mpi([2], [4096, 65536, 1 << 20], repeats=4, warmup=1, rounds=2, seed=3)
    for n in (4096, 65536, 1 << 20):
        mine = sorted((m.round, m.repetition) for m in ref.rows if m.size_bytes == n)
        assert mine == [(0, 0), (0, 1), (1, 2), (1, 3)]
    profile = calibrate(ref)
    assert profile.fit["implementation"] == "mpi" and profile.fit["model_algorithm"] == "ring"
