"""Hostile command lines: every command, mutated, ends as a result or one stderr line with exit 2.

Each case starts from a small valid command line of one command, replaces one or two of its values
with hostile ones (non-finite and huge numbers, bad units, junk text, paths that cannot be written) or
adds one of the command's own options with such a value, and runs it in this process. It must return
0 (and with ``--json`` print strict JSON) or 2 with exactly one stderr line, never raise, stay within a
time bound, and leave no output folder behind when it fails. ``-m slow`` runs 10,000 cases.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "01_resnet50_128gpu_ring.yaml"
MEASURED = ROOT / "benchmarks" / "validation" / "results" / "2026-11-24-cpu-xeon-2core"
PROFILE = ROOT / "validation" / "profiles" / "cpu-xeon-2core.yaml"
WORK = Path(tempfile.gettempdir()) / f"trainsim-cli-fuzz-{os.getpid()}"   # per process: runs side by side never collide
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
OUT = WORK / "out"

BASES: dict[str, list[str]] = {
    "run": ["run", str(EXAMPLE), "--set", "training.iterations=3", "--no-plots", "--out", str(OUT)],
    "collective": ["collective", "--ranks", "4", "--sizes", "1MiB", "--json"],
    "topology": ["topology", "fat_tree", "k=4", "bandwidth=100Gbps", "--json"],
    "sweep": ["sweep", str(ROOT / "examples" / "sweeps" / "scaling.yaml"), "--out", str(OUT), "--dry-run"],
    "calibrate": ["calibrate", str(MEASURED / "measurements.csv"), "--out", str(OUT / "p.yaml")],
    "compare": ["compare", str(PROFILE), str(MEASURED / "measurements.csv"), "--out", str(OUT), "--no-plots"],
    "kernels": ["kernels", "bench", "--ranks", "2", "--sizes", "4KiB", "--repeats", "1", "--warmup", "0",
                "--mode", "thread", "--json"],
    "list": ["list", "models", "--json"],
    "lesson": ["lesson", "show", "1"],
    "validate": ["validate", "--ranks", "2", "--sizes", "4KiB..64KiB:x4", "--repeats", "1", "--warmup", "0",
                 "--no-plots", "--out", str(OUT), "--json"],
}
FIXED = {"--dry-run", "--out", "--mode", "bench", "--no-plots"}  # kept: they keep a case small and contained

HOSTILE = ["", "0", "-1", "nan", "inf", "-inf", "1e999", "1e20B", "9**9**9 B", "abc", "1..0", "2..1e9:x2", "2..64:x0",
           "3.5", "x" * 300, "ünïcødé", "/proc/x/y.png", "/dev/null", "/", "64MiB", "2,3", "auto", "all", "none",
           "1KiB..4KiB:x4", "10Gbps", "100", "k=10000", "seed=-1", "training.iterations=1e18", "=", "a=b=c",
           "--json", "<a config>", "<a folder>"]   # paths to copies made inside WORK for each case: the fuzz may
                                                    # write to any path it names, never to the checkout


def _options(command: str) -> list[str]:
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return [a.option_strings[0] for a in sub._actions
            if a.option_strings and a.option_strings[0] not in {"-h", *FIXED} and a.nargs != 0]


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(BASES)))
    argv = list(BASES[command])
    values = [i for i in range(1, len(argv)) if argv[i] not in FIXED and argv[i - 1] not in FIXED
              and not (command == "kernels" and i == 1)]
    for _ in range(draw(st.integers(1, 2))):
        options = _options(command)
        if values and (not options or draw(st.booleans())):
            argv[draw(st.sampled_from(values))] = draw(st.sampled_from(HOSTILE))
        else:
            argv += [draw(st.sampled_from(options)), draw(st.sampled_from(HOSTILE))]
    return argv


def check(argv: list[str]) -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    copies = {"<a config>": WORK / "config.yaml", "<a folder>": WORK / "measured"}
    shutil.copy(EXAMPLE, copies["<a config>"])
    shutil.copytree(MEASURED, copies["<a folder>"])
    argv = [str(copies.get(a, a)) for a in argv]
    if os.environ.get("TRAINSIM_FUZZ_LOG"):   # a case that takes the process down (out of memory) is then known
        with open(os.environ["TRAINSIM_FUZZ_LOG"], "a") as log:
            log.write(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} {argv!r}\n")
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help (0) or an argument error (2)
            code = e.code
    took = time.perf_counter() - t0
    lines = err.getvalue().strip().splitlines()
    assert took < 60, f"{argv}: {took:.0f} s"
    assert code in (0, 2), f"{argv}: exit {code}: {err.getvalue()[-2000:]}"
    if code == 2:
        assert len(lines) == 1 and "Traceback" not in err.getvalue(), f"{argv}: {err.getvalue()[-2000:]}"
        assert lines[0].startswith("trainsim"), f"{argv}: {lines[0]}"
        assert not OUT.exists() or not any(OUT.iterdir()), f"{argv}: left {sorted(OUT.iterdir())}"
    elif "--json" in argv and "--help" not in argv and out.getvalue().strip():
        json.loads(out.getvalue(), parse_constant=lambda c: pytest.fail(f"{argv}: {c} in the JSON"))


@settings(max_examples=80, deadline=None, derandomize=True,  # CI: the same cases every run (-m slow explores)
          suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines())
def test_mutated_command_lines_end_as_a_result_or_one_line(argv):
    check(argv)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines())
def test_mutated_command_lines_long_run(argv):
    """``pytest -m slow``: 10,000 mutated command lines."""
    check(argv)


@pytest.mark.parametrize("command", sorted(BASES))
def test_every_base_command_line_is_valid(command):
    """The fuzz starts from command lines that succeed (else it would test only error paths)."""
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(BASES[command]) == 0, err.getvalue()


def test_every_command_is_fuzzed():
    assert set(BASES) == set(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("argv", [
    ["collective", "--ranks", "4", "--sizes", "1MiB", "--json", "--gamma", "-1"],   # once gave inf in the JSON
    ["collective", "--ranks", "4", "--sizes", "1MiB", "--gamma", "nan"],
    ["validate", "--regimes", "0"], ["kernels", "bench", "--repeats", "0"], ["sweep", "x.yaml", "--workers", "0"],
])
def test_cases_the_fuzz_found_stay_fixed(argv):
    check(argv)


@pytest.mark.parametrize(("argv", "expect"), [
    (["topology", "fat_tree", "k=4", "bandwidth=100Gbps", "k=10000"], "topology parameter k: given twice"),
    (["topology", "fat_tree", "k=10000", "bandwidth=100Gbps"], "fat_tree: k³/4 = 10000³/4 = 250,000,000,000 devices"),
    (["topology", "ring", "n=1000000", "bandwidth=1GB/s"], "ring: n = 1,000,000 devices; at most 131,072"),
])
def test_a_topology_too_big_to_build_is_refused_before_building(argv, expect, capsys):
    """Found by the slow fuzz: a repeated k=10000 built a 2.5e11-host fat tree until the OOM killer came."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err, err
