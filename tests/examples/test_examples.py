"""Every example config runs, and its summary matches the committed golden file.

Golden files are regenerated deliberately: ``python -m pytest tests/examples --update-golden``,
then review the diff. Each golden folder's README says what the case exercises and the
hand-checkable anchor behind its numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.config import load_config
from simulator.run import simulate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_matches_its_golden_summary(path, update_golden):
    summary = simulate(load_config(path)).summary
    golden = GOLDEN / path.stem / "expected_summary.json"
    if update_golden:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(summary, indent=2) + "\n")
    expected = json.loads(golden.read_text())
    assert summary.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float) or (isinstance(value, list) and value and all(isinstance(v, float) for v in value)):
            assert summary[key] == pytest.approx(value, rel=1e-9), key
        else:
            assert summary[key] == value, key


def test_every_example_opens_with_question_covers_try():
    for path in EXAMPLES:
        head = path.read_text().split("\n\n")[0]
        for word in ("Question:", "Covers:", "Try:"):
            assert word in head, f"{path.name} lacks {word}"
