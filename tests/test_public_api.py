"""The public surface (DESIGN.md) and the import direction between packages (STYLE R1)."""

from __future__ import annotations

import subprocess
import sys

import simulator
import simulator.collectives
import topologies


def imported_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_simulator_exports_exactly_the_documented_names():
    assert set(simulator.__all__) == {"load_config", "simulate", "collective_time", "Result", "collectives"}
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None


def test_collectives_and_topologies_exports():
    assert {"schedule", "analytic_time", "verify", "Schedule", "ScheduleError"} <= set(simulator.collectives.__all__)
    assert set(topologies.__all__) == {"KINDS", "TopologyError", "build", "check", "devices", "load", "save"}


def test_collectives_do_not_pull_in_the_engine_or_config():
    mods = imported_by("import simulator.collectives")
    heavy = {m for m in mods if m.split(".")[0] in {"simpy", "pydantic", "networkx", "matplotlib"}}
    assert heavy == set()
    assert not any(m.startswith(("simulator.engine", "simulator.config")) for m in mods)


def test_topologies_import_nothing_of_ours():
    mods = imported_by("import topologies")
    assert not any(m.split(".")[0] in {"simulator", "kernels", "validation"} for m in mods)


def test_running_a_simulation_does_not_import_plotting_or_numba():
    mods = imported_by("import simulator; simulator.simulate")
    assert not any(m.split(".")[0] in {"matplotlib", "numba"} for m in mods)
