"""The course: every lesson's page has its parts, and every lesson runs and its claims hold."""

from __future__ import annotations

import html
import json
import math
import re

import pytest

from simulator import lessons
from simulator.cli import main
from tests.test_cli import trainsim

NUMBERS = [x.number for x in lessons.LESSONS]


def test_nine_lessons_numbered_in_order_each_with_claims():
    assert NUMBERS == list(range(1, 10))
    assert all(x.claims and x.steps for x in lessons.LESSONS)


@pytest.mark.parametrize("number", NUMBERS)
def test_each_page_asks_predicts_runs_shows_exercises_and_answers(number):
    les = lessons.lesson(number)
    page = les.page.read_text(encoding="utf-8")
    for part in ("**Question.**", "**Predict first.**", "**Run.**", "**Look.**", "**Exercise.**", "*Try:*",
                 "<details><summary>Answer</summary>", f"trainsim lesson run {number}"):
        assert part in page, f"{les.page.name}: missing {part}"
    listed = re.findall(r"^- (.+)$", page.split("## Checked claims", 1)[1], flags=re.M)
    assert listed == [c.text for c in les.claims], "the page's checked claims must be the code's, word for word"
    for step in les.steps:
        if step.kind == "sweep":
            assert (lessons.ROOT / step.spec).is_file(), step.spec
    assert les.page.name in (lessons.PAGES / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("number", NUMBERS)
def test_each_lesson_runs_from_the_command_line_and_its_claims_hold(number, tmp_path):
    out = tmp_path / f"lesson-{number}"
    res = trainsim("lesson", "run", str(number), "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["holds"] and len(report["claims"]) == len(lessons.lesson(number).claims)
    for claim in report["claims"]:
        assert claim["holds"], f"lesson {number}: {claim['claim']}: {claim['detail']}"
    for plot in report["plots"]:
        assert (out / plot).is_file() or __import__("pathlib").Path(plot).is_file(), plot
    saved = json.loads((out / "claims.json").read_text())
    assert saved["claims"] == report["claims"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert all(html.escape(c["claim"]) in page for c in report["claims"]) and page.count("✓") == len(report["claims"])
    pngs = [p for p in lessons.lesson(number).plots if p.endswith(".png")]
    assert page.count('src="data:image/png;base64,') == len(pngs)


def test_a_claim_fails_when_the_numbers_say_otherwise():
    """The claims read the runs: swap ring's and recursive doubling's times and lesson 1's claims break."""
    rows = []
    for alg, t_small, t_large in (("ring", 120e-6, 20e-3), ("recursive_doubling", 16e-6, 43e-3)):
        rows += [{"algorithm": alg, "size_bytes": 8, "simulated_s": t_small},
                 {"algorithm": alg, "size_bytes": 128 * 2**20, "simulated_s": t_large}]
    small, large, _ = lessons.lesson(1).claims
    assert small.check({"sizes": rows})[0]
    swapped = [{**r, "algorithm": {"ring": "recursive_doubling", "recursive_doubling": "ring"}[r["algorithm"]]}
               for r in rows]
    assert not small.check({"sizes": swapped})[0] and not large.check({"sizes": swapped})[0]


def test_mean_and_groups_keep_the_sweep_order_and_seeds():
    rows = [{"sync": "b", "x": 1.0}, {"sync": "a", "x": 3.0}, {"sync": "b", "x": 2.0}, {"sync": "a", "x": ""}]
    b, a = lessons.groups(rows, "sync")
    assert lessons.mean(b, "x") == 1.5 and math.isnan(lessons.values(a, "x")[1])


def test_list_show_and_bad_numbers(capsys):
    assert main(["lesson", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["lessons"]
    assert [x["lesson"] for x in listed] == NUMBERS
    assert main(["lesson", "show", "3"]) == 0
    assert "Parameter servers" in capsys.readouterr().out
    for bad in (["lesson", "run", "10"], ["lesson", "show", "x"], ["lesson", "run"]):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("trainsim lesson: error:"), err
