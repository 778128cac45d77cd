"""The layering that docs/architecture.md promises, checked on the source (STYLE R1, DESIGN "the second idea").

- ``simulator/engine/`` decides *when*: it imports no hardware catalog, reads no hardware
  attribute (bandwidths, FLOP rates, latencies, capacities) and writes no float constant that
  could be one; durations reach it through ``simulator.compute``, ``simulator.network`` and the plan.
- Only ``simulator/collectives/`` builds a collective's transfers (``Step`` / ``Transfer``).
- ``import simulator.collectives`` / ``import kernels`` stay light (the package ``__init__`` is lazy).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = sorted((ROOT / "simulator" / "engine").glob("*.py"))
HARDWARE_ATTRIBUTES = {"memory_bandwidth", "peak_flops", "sustained_flops", "efficiency", "bandwidth", "latency",
                       "capacity", "memory_bytes"}
# float constants the engine may write, each with its reason
ALLOWED_FLOATS = {0.0, 1.0}
EXCEPTIONS = {("stragglers.py", 0.1),    # the documented floor of the "normal" straggler draw, not hardware
              ("lifecycle.py", 1e-9),    # relative tolerance: simulated iteration times that repeat exactly
              ("lifecycle.py", 1e-12)}   # rounding slack when comparing simulated times


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Modules imported outside ``if TYPE_CHECKING:`` blocks."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
    return names


@pytest.mark.parametrize("path", ENGINE, ids=[p.name for p in ENGINE])
def test_the_engine_holds_no_hardware_numbers(path):
    tree = ast.parse(path.read_text())
    assert "simulator.devices" not in _runtime_imports(tree), f"{path.name} imports the device catalog"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            assert node.attr not in HARDWARE_ATTRIBUTES, f"{path.name}:{node.lineno} reads .{node.attr}"
        if isinstance(node, ast.Constant) and type(node.value) is float:
            ok = node.value in ALLOWED_FLOATS or (path.name, node.value) in EXCEPTIONS
            assert ok, f"{path.name}:{node.lineno}: float constant {node.value!r} (a cost belongs in compute/network)"


def test_the_layering_check_catches_what_it_should(tmp_path):
    """The check above is not vacuous: it flags a hardware attribute and a cost constant."""
    bad = ast.parse("def apply(nbytes, device):\n    return 3.0 * nbytes / device.memory_bandwidth\n")
    attrs = {n.attr for n in ast.walk(bad) if isinstance(n, ast.Attribute)}
    floats = {n.value for n in ast.walk(bad) if isinstance(n, ast.Constant) and type(n.value) is float}
    assert attrs & HARDWARE_ATTRIBUTES and floats - ALLOWED_FLOATS


def _sources_outside_collectives() -> list[Path]:
    out = []
    for package in ("simulator", "kernels", "validation", "topologies"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "collectives" not in path.relative_to(ROOT).parts:
                out.append(path)
    return out


def test_only_collectives_build_a_collectives_transfers():
    offenders = []
    for path in _sources_outside_collectives():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in {"Step", "Transfer"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_engine_cost_modules_are_the_ones_it_asks():
    """The engine's durations come from compute, network and the plan, nowhere else."""
    used = set()
    for path in ENGINE:
        used.update(m for m in _runtime_imports(ast.parse(path.read_text())) if m.startswith("simulator."))
    assert used & {"simulator.devices", "simulator.tuner", "simulator.workloads"} <= {"simulator.workloads"}
    assert {"simulator.compute", "simulator.parallel.plan", "simulator.network"} <= used


def test_light_imports_stay_light():
    code = ("import sys, simulator.collectives, kernels; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'simpy', 'pydantic'} "
            "or m.startswith('simulator.engine')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_a_run_does_not_import_dask_through_pint():
    """pint.compat imports dask.base whenever dask is installed (~0.25 s of each start-up); the units
    module keeps it out, and dask stays importable afterwards (a sweep needs it)."""
    code = ("import sys, simulator.config; print('dask' in sys.modules); "
            "from topologies.units import parse; print(parse('100 gigabit/second', 'bandwidth')); "
            "print('pint' in sys.modules, 'dask' in sys.modules); import dask; print(dask.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "12500000000.0", "True", "False", "dask"]


HEAVY = {"numpy", "numba", "dask", "distributed", "matplotlib", "simpy", "networkx", "pint", "pydantic", "rich", "yaml"}


def _top_level_modules_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running ``code``."""
    code += "\nimport sys; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return set(out.split("\n")[-2].split())


def _help_code(*argvs: list[str]) -> str:
    return ("import contextlib, io\nfrom simulator.cli import main\n"
            f"for argv in {list(argvs)!r}:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as f, contextlib.suppress(SystemExit):\n"
            "        main(argv)\n"
            "    assert f.getvalue().startswith(('usage: trainsim', 'trainsim ')), f.getvalue()[:80]\n")


def test_help_and_version_import_no_library():
    """``trainsim --help``, ``--version`` and the help of commands that list no names parse arguments with the
    standard library only."""
    assert _top_level_modules_after("import simulator.cli") & HEAVY == set()
    code = _help_code(["--help"], ["--version"], *([c, "--help"] for c in
                                                   ("run", "sweep", "calibrate", "compare", "lesson", "list")))
    assert _top_level_modules_after(code) & HEAVY == set()


def test_help_that_lists_names_imports_only_the_registries():
    """``collective --help`` lists the topology kinds and algorithms: topologies (networkx) and the collectives
    (numpy) are imported for their names, nothing that runs or draws anything."""
    loaded = _top_level_modules_after(_help_code(["collective", "--help"], ["topology", "--help"],
                                                 ["validate", "--help"], ["kernels", "--help"]))
    assert loaded & HEAVY <= {"networkx", "numpy", "yaml"}


def test_a_run_imports_only_what_running_needs(tmp_path):
    """``trainsim run`` on example 01 without plots: no units library (its spellings are plain), no plotting,
    no Dask, no Numba, no numpy.ma, and with stderr a pipe no rich (no bar to draw, its notes are plain lines) —
    and the run did happen (the simulator's own libraries are there)."""
    code = ("from simulator.cli import main\n"
            f"assert main(['run', 'examples/01_resnet50_128gpu_ring.yaml', '--out', {str(tmp_path / 'r')!r}, "
            "'--no-plots', '--json']) == 0\n"
            "import sys\nassert 'numpy.ma' not in sys.modules, 'numpy.ma (np.percentile, np.unique) on the run path'\n")
    loaded = _top_level_modules_after(code)
    assert loaded & {"pint", "matplotlib", "dask", "distributed", "numba", "rich"} == set()
    assert {"numpy", "simpy", "networkx", "pydantic"} <= loaded
    assert (tmp_path / "r" / "summary.json").is_file()
