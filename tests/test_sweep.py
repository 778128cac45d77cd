"""Sweeps: expansion, one row per point equal to its single run, resume, --scheduler, bad files."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from simulator.cli import main
from simulator.config import ConfigError
from simulator.run import simulate
from simulator.sweep import _flat, load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "name": "tiny",
    "seed": 7,
    "cluster": {"topology": {"kind": "switch", "devices": 8, "link": {"bandwidth": "10GB/s", "latency": "1us"}},
                "device": "a100"},
    "workload": {"model": "resnet50", "batch_per_device": 32},
    "communication": {"algorithm": "ring", "bucket_size": "25MiB"},
    "stragglers": {"distribution": "lognormal", "sigma": 0.2},
    "training": {"iterations": 3, "warmup": 1},
}
# 3 × 2 × 2 = 12 points; data=16 is more workers than devices, so 4 points fail at simulation
SWEEP = {
    "base": "base.yaml",
    "grid": {"parallelism.data": [2, 8, 16], "communication.algorithm": ["ring", "auto"]},
    "seeds": [1, 2],
}


def write_sweep(folder: Path, name: str = "sweep.yaml", **changes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = folder / name
    path.write_text(yaml.safe_dump({**SWEEP, **changes}, sort_keys=False))
    return path


def read_table(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def local_client():
    """An in-process Dask cluster: fast to start, for the tests that are about caching, not processes."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    return Client(cluster), cluster


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The 12-point sweep on a real (multi-process) LocalCluster of 2 workers."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder)
    result = run_sweep(path, folder / "out", workers=2)
    return path, folder / "out", result


def test_points_expand_grid_then_zip_then_seeds(tmp_path):
    path = write_sweep(tmp_path, grid={"parallelism.data": [2, 4]},
                       zip={"communication.algorithm": ["ring", "auto"], "communication.overlap": [True, False]})
    sweep = load_sweep(path)
    got = [(p.values["parallelism.data"], p.values["communication.algorithm"], p.values["communication.overlap"],
            p.seed) for p in sweep.points]
    assert got == [(d, a, o, s) for d in (2, 4) for a, o in (("ring", True), ("auto", False)) for s in (1, 2)]
    assert [p.index for p in sweep.points] == list(range(8))
    p = sweep.points[3]
    assert (p.config.parallelism.data, p.config.communication.algorithm, p.config.seed) == (2, "auto", 2)
    assert len({p.hash for p in sweep.points}) == 8


def test_each_row_equals_the_single_run_of_its_point(full_run):
    path, out, result = full_run
    sweep = load_sweep(path)
    rows = read_table(out)
    assert (result.computed, result.cached, result.failed) == (12, 0, 4)
    assert [int(r["point"]) for r in rows] == list(range(12))
    for point, row in zip(sweep.points, rows, strict=True):
        assert row["seed"] == str(point.seed)
        assert row["parallelism.data"] == str(point.values["parallelism.data"])
        assert row["dir"] == f"points/{point.hash}"
        if point.config.parallelism.data > 8:
            with pytest.raises(ConfigError) as err:
                simulate(point.config)
            assert (row["status"], row["error"]) == ("error", str(err.value))
            assert "16 workers but the topology has 8 devices" in row["error"]
            continue
        expected = _flat(simulate(point.config).summary)
        assert row["status"] == "ok" and row["error"] == ""
        for key, value in expected.items():
            assert row[key] == ("" if value is None else str(value)), (point.index, key)
        on_disk = json.loads((out / row["dir"] / "summary.json").read_text())
        assert _flat(on_disk) == expected
    # seeds replicate: the straggler draws differ between seed 1 and seed 2 of the same design
    assert rows[0]["iteration_time_s"] != rows[1]["iteration_time_s"]
    assert (out / "plots" / "scaling.png").stat().st_size > 1000


def test_resume_computes_only_what_is_missing(full_run, tmp_path):
    subset = write_sweep(tmp_path, "subset.yaml", grid={**SWEEP["grid"], "parallelism.data": [2, 16]})
    full = write_sweep(tmp_path)
    out = tmp_path / "out"
    client, cluster = local_client()
    try:
        first = run_sweep(subset, out, client=client, plots=False)
        assert (first.computed, first.cached) == (8, 0)
        stamps = {p: p.stat().st_mtime_ns for p in out.glob("points/*/*")}
        assert len({p.parent for p in stamps}) == 8
        second = run_sweep(full, out, client=client, plots=False)
        assert (second.computed, second.cached) == (4, 8)
        assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing computed twice
        third = run_sweep(full, out, client=client, plots=False)
        assert (third.computed, third.cached) == (0, 12)
    finally:
        client.close()
        cluster.close()
    assert len(list(out.glob("points/*"))) == 12  # none missing, none extra
    assert read_table(out) == read_table(full_run[1])


def test_a_killed_sweep_leaves_a_readable_table_and_resumes(tmp_path, kill_group):
    path = write_sweep(tmp_path, grid={"parallelism.data": [2, 4, 8], "communication.algorithm": ["ring", "auto"],
                                       "training.iterations": [30, 31, 32, 33]}, seeds=[1])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "sweep", str(path), "--out", str(out),
                             "--workers", "1", "--no-plots"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while finished(out) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            kill_group(proc.pid)
        proc.wait()
    done = finished(out)
    if (out / "results.csv").exists():
        rows = read_table(out)
        assert all(None not in r.values() and r["status"] == "ok" for r in rows)
    client, cluster = local_client()
    try:
        resumed = run_sweep(path, out, client=client, plots=False)
    finally:
        client.close()
        cluster.close()
    assert resumed.computed > 0  # the kill landed mid-sweep
    assert resumed.cached >= done and resumed.computed + resumed.cached == 24
    assert [int(r["point"]) for r in read_table(out)] == list(range(24))


def finished(out: Path) -> int:
    """Point folders in place (a killed write leaves only a hidden temporary folder)."""
    return sum(1 for p in out.glob("points/*/summary.json") if not p.parent.name.startswith("."))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_address_gives_the_same_table(full_run, tmp_path, capsys):
    from dask.distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                               "--no-dashboard"], **quiet)]
    try:
        procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                                       "--no-dashboard", "--host", "127.0.0.1"], **quiet))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=30)
        out = tmp_path / "out"
        assert main(["sweep", str(full_run[0]), "--out", str(out), "--scheduler", address, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert (info["computed"], info["cached"], info["failed"]) == (12, 0, 4)
        assert (out / "results.csv").read_text() == (full_run[1] / "results.csv").read_text()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_dry_run_lists_the_points_and_writes_nothing(tmp_path, capsys):
    path = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--dry-run", "--json"]) == 0
    points = json.loads(capsys.readouterr().out)["points"]
    assert [p["point"] for p in points] == list(range(12))
    assert points[5] == {"point": 5, "parallelism.data": 8, "communication.algorithm": "ring", "seed": 2,
                         "hash": load_sweep(path).points[5].hash, "cached": False}
    assert not out.exists()


@pytest.mark.parametrize(("changes", "expected"), [
    ({"grdi": {"parallelism.data": [2]}}, "grdi: unknown key"),
    ({"grid": {"parallelism.data": []}}, "grid: parallelism.data: expected a non-empty list"),
    ({"zip": {"parallelism.data": [2, 4], "communication.algorithm": ["ring"]}},
     "zip: lists must have equal lengths (parallelism.data has 2, communication.algorithm has 1)"),
    ({"seeds": [1, 1]}, "seeds: expected a non-empty list of distinct integers"),
    ({"base": "nope.yaml"}, "base: no such file"),
    ({"grid": {"parallelism.data": [2, 4], "cluster.topology.link.bandwidth": ["10GB/s", "fast"]}},
     "point 2 (parallelism.data=2, cluster.topology.link.bandwidth=fast, seed=1): "),
    ({"grid": {"parallelism.data": [2, "many"]}}, "point 2 (parallelism.data=many, seed=1): "),
    ({"grid": {"seed": [1, 2]}}, "grid.seed: use the top-level `seeds: [..]`"),
    ({"set": {"parallelism.data": 2}}, "grid.parallelism.data: already given in set"),
])
def test_bad_sweep_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, changes, expected):
    path = write_sweep(tmp_path, **changes)
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"trainsim sweep: error: {path}")
    assert expected in lines[0]
    assert not out.exists()


def test_example_sweeps_expand_and_open_like_lessons():
    paths = sorted((ROOT / "examples" / "sweeps").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"scaling", "topology", "link_speed"}
    for path in paths:
        sweep = load_sweep(path)
        assert 8 <= len(sweep.points) <= 40, path.name
        head = path.read_text().split("\n\n")[0]
        assert all(word in head for word in ("Question:", "Covers:", "Try:")), path.name
    scaling = load_sweep(ROOT / "examples" / "sweeps" / "scaling.yaml")
    assert {p.config.parallelism.data for p in scaling.points} == {8 * 2**i for i in range(8)}


def test_a_checkpoint_interval_sweep_draws_goodput_with_the_young_daly_optimum(tmp_path):
    """Grid over faults.checkpoint.every (durations and an iteration count), replications: plots/checkpoint.png."""
    from simulator.sweep import _interval_s, checkpoint_plot, load_sweep, run_sweep

    base = {"seed": 3, "cluster": {"topology": {"kind": "switch", "devices": 4,
                                                "link": {"bandwidth": "10GB/s", "latency": "1us"}}},
            "training": {"iterations": 200000, "warmup": 1, "replications": 3},
            "faults": {"devices": {"mtbf": "4h"}, "detection": "1s", "recovery": {"restart": "10s"},
                       "checkpoint": {"every": "10min", "bandwidth": "0.1GB/s"}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "base.yaml",
                                                         "grid": {"faults.checkpoint.every": ["1min", "5min", 20000]}}))
    sweep = load_sweep(tmp_path / "sweep.yaml")
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        result = run_sweep(sweep, tmp_path / "out", client=client)
    rows = result.rows
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert _interval_s("5min", rows[0]) == 300.0
    assert _interval_s(20000, rows[2]) == pytest.approx(20000 * rows[2]["iteration_time_s"])
    assert (tmp_path / "out" / "plots" / "checkpoint.png").exists()
    assert all(r["goodput_ci95"] for r in rows) and all(r["young_daly_interval_s"] > 0 for r in rows)
    assert checkpoint_plot(sweep, rows[:1], tmp_path / "one.png") is None     # one interval: nothing to compare


def test_a_convergence_sweep_draws_time_and_updates_to_the_target(tmp_path):
    from simulator.sweep import _label, load_sweep, run_sweep

    base = {"seed": 3, "cluster": {"topology": {"kind": "switch", "devices": 4,
                                                "link": {"bandwidth": "1GB/s", "latency": "5us"}}},
            "training": {"iterations": 30, "warmup": 1,
                         "convergence": {"features": 8, "samples": 512, "batch": 8, "lr": 0.5, "target_loss": 0.6}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "grid": {
        "communication.compression": ["fp32", {"method": "topk", "ratio": 0.5}]}}))
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster, Client(cluster) as client:
        result = run_sweep(load_sweep(tmp_path / "sweep.yaml"), tmp_path / "out", client=client)
    assert (tmp_path / "out" / "plots" / "target.png").exists()
    assert [r["communication.compression"] for r in result.rows] == ["fp32", '{"method": "topk", "ratio": 0.5}']
    assert _label('{"method": "topk", "ratio": 0.5}') == "topk 0.5"


def test_a_rerun_removes_what_a_killed_sweep_left_half_written(tmp_path):
    from simulator.sweep import _clean_leftovers

    (tmp_path / "points" / ".abc123.xyz").mkdir(parents=True)
    (tmp_path / "points" / ".abc123.xyz" / "summary.json").write_text("{}")
    (tmp_path / "points" / "abc123").mkdir()
    (tmp_path / ".results.csv.q1w2").write_text("half")
    assert _clean_leftovers(tmp_path) == 2
    assert [p.name for p in (tmp_path / "points").iterdir()] == ["abc123"]
    assert not list(tmp_path.glob(".results.csv.*"))
