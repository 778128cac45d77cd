"""validation's public surface (DESIGN.md) and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import validation


def test_exports_the_three_steps():
    assert set(validation.__all__) == {"measure", "calibrate", "compare"}
    assert all(callable(getattr(validation, name)) for name in validation.__all__)


def test_importing_validation_pulls_in_neither_numba_nor_matplotlib():
    code = ("import sys, validation, validation.pipeline; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'matplotlib', 'simpy', 'kernels'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_mpi_script_imports_nothing_of_ours():
    from validation.mpi import SCRIPT

    imports = [line.split()[1] for line in SCRIPT.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert {name.split(".")[0] for name in imports} == {"__future__", "argparse", "json", "sys", "time", "numpy",
                                                       "mpi4py"}
