"""kernels' public surface, its import direction (STYLE R1), lowering, and `trainsim kernels bench`."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels.lowering import element_schedule, lower
from simulator.cli import main
from simulator.collectives import schedule

ROOT = Path(__file__).resolve().parents[2]


def test_exports_exactly_the_contract():
    assert set(kernels.__all__) == {"DTYPES", "Executor", "KernelError", "devices_available", "executor",
                                    "run_collective"}
    assert kernels.DTYPES == ("float32", "float64", "int32")
    assert issubclass(kernels.KernelError, RuntimeError)
    assert "cpu" in kernels.devices_available()


def test_importing_kernels_pulls_in_neither_simpy_pydantic_nor_numba():
    code = "import sys, kernels; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    top = set(json.loads(out.replace("'", '"')))
    assert not top & {"simpy", "pydantic", "networkx", "matplotlib", "numba", "topologies", "validation"}
    assert "simulator" in top


def test_kernels_modules_import_only_simulator_collectives_of_ours():
    ours = {"simulator", "topologies", "validation"}
    for path in sorted((ROOT / "kernels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                if name.split(".")[0] in ours:
                    assert name.startswith("simulator.collectives"), f"{path.name} imports {name}"


def test_lowering_maps_chunks_to_elements_and_stages_only_exchanges():
    low = lower(element_schedule("ring", 4, 10, "float32"), 4)
    assert low.chunk_lo.tolist() == [0, 3, 6, 8] and low.chunk_n.tolist() == [3, 3, 2, 2]
    assert not low.realigned and not low.staged.any() and low.stage_elems == 0
    assert low.steps == 6 and low.rank_ptr.shape == (6, 5)
    rd = lower(element_schedule("recursive_doubling", 4, 10, "float32"), 4)
    assert rd.staged.all() and rd.step_staged.all() and rd.stage_rank_elems == 10 and rd.stage_elems == 40
    misaligned = lower(schedule("ring", 4, 40), 4)  # 10-byte chunks of 4-byte elements
    assert misaligned.realigned and misaligned.chunk_n.sum() == 10
    with pytest.raises(ValueError, match="not a whole number of 4-byte elements"):
        lower(schedule("ring", 4, 42), 4)


def trainsim(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "simulator", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_bench_prints_one_json_object_with_busbw():
    res = trainsim("kernels", "bench", "--device", "cpu", "--algorithm", "ring", "--ranks", "2,3",
                   "--sizes", "1KiB..4KiB:x4", "--repeats", "2", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["results"]
    assert [(r["ranks"], r["size_bytes"]) for r in rows] == [(2, 1024), (2, 4096), (3, 1024), (3, 4096)]
    for r in rows:
        assert r["time_s"] == np.median(r["times_s"]) and len(r["times_s"]) == 2
        assert r["algbw_GBps"] == pytest.approx(r["size_bytes"] / r["time_s"] / 1e9)
        assert r["busbw_GBps"] == pytest.approx(r["algbw_GBps"] * 2 * (r["ranks"] - 1) / r["ranks"])


def test_cli_bench_table_and_help():
    res = trainsim("kernels", "bench", "--ranks", "2", "--sizes", "4KiB", "--repeats", "1", "--mode", "thread")
    assert res.returncode == 0, res.stderr
    assert "busbw GB/s" in res.stdout and "4 KiB" in res.stdout
    assert "example: trainsim kernels" in trainsim("kernels", "--help").stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--dtype", "float16"], "--dtype: expected one of float32, float64, int32, got 'float16'"),
    (["--algorithm", "nope"], "--algorithm: expected one of ring, recursive_doubling"),
    (["--sizes", "6B"], "--sizes: every size must be a positive multiple of 4 bytes (float32), got 6"),
    (["--sizes", "lots"], "--sizes:"),
    (["--ranks", "3", "--collective", "reduce_scatter", "--algorithm", "recursive_halving"],
     "--ranks 3: recursive_halving reduce_scatter needs a power-of-two number of ranks"),
    (["--mode", "fibers"], "--mode: expected one of process, thread"),
    (["--device", "tpu"], "--device: expected one of cpu, cuda"),
    (["--param", "devices_per_node"], "--param: expected KEY=INTEGER"),
])
def test_cli_bench_bad_input_is_one_line_and_exit_2(args, message, capsys):
    assert main(["kernels", "bench", "--sizes", "1KiB", *args]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("trainsim kernels: error: ") and message in err
    assert err.count("\n") == 1 and out == ""


@pytest.mark.parametrize("module", ["kernels", "kernels.lowering"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
