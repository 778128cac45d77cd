"""``topologies.units.parse``: the spellings converted without pint give pint's float, bit for bit.

The truth is pint itself: every unit of the plain table, with many numbers and spacings, is parsed
once through the plain path and once through pint (the plain path switched off), and the two must
be the same float, or the same one-line error.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topologies import units
from topologies.units import UnitError, parse

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = ["0", "1", "7", "8", "100", "300", "2.5", "0.1", "0.3", ".5", "1.", "1e3", "2.5E-3", "1e-7", "3.14159",
           "123456789012345", "999999999999999.9", "1e17", "1e-300", "1e400", "0.000123", "64", "1024", "12.75"]
CASES = [(kind, unit) for kind, table in units._PLAIN_UNITS.items() for unit in table]


def by_pint(text: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> float | str:
    with monkeypatch.context() as m:
        m.setattr(units, "_plain", lambda text, kind: None)
        return outcome(text, kind)


def outcome(text: str, kind: str) -> float | str:
    try:
        return parse(text, kind, bare=False)
    except UnitError as e:
        return f"UnitError: {e}"


def same(a: float | str, b: float | str) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize(("kind", "unit"), CASES, ids=[f"{k}-{u}" for k, u in CASES])
def test_every_plain_unit_gives_pints_float(kind, unit, monkeypatch):
    # the unit means what pint says it means (the factor is pint's conversion factor, exactly)
    reg = units._registry()
    q = reg.Quantity("1" + unit)
    assert q.dimensionality == reg.get_dimensionality(units.KINDS[kind][0])
    assert reg._get_conversion_factor(q._units, reg.parse_units(units.KINDS[kind][1])._units) \
        == units._PLAIN_UNITS[kind][unit]
    spaced = unit.replace("/", " / ")
    for number in NUMBERS:
        for text in (f"{number}{unit}", f"{number} {unit}", f" {number}  {spaced} "):
            fast = outcome(text, kind)
            assert same(fast, by_pint(text, kind, monkeypatch)), text
            if not isinstance(fast, str):
                assert units._plain(text, kind) is not None, text   # and it did take the plain path


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CASES),
       st.one_of(st.integers(min_value=0, max_value=10**17).map(str),
                 st.floats(min_value=0, max_value=1e20, allow_nan=False).map(repr),
                 st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False).map(str)))
def test_plain_path_equals_pint_on_any_number(case, number):
    kind, unit = case
    text = number + unit
    with pytest.MonkeyPatch.context() as m:
        assert same(outcome(text, kind), by_pint(text, kind, m)), text


@pytest.mark.parametrize(("text", "kind"), [
    ("0100MB", "bytes"), ("5EB", "bytes"), ("5E3B", "bytes"), ("1e3us", "duration"), ("1234567890123456789B", "bytes"),
    ("25 GB / s", "bandwidth"), ("1.5 h", "duration"), ("100GHz", "bandwidth"), ("2 G B", "bytes"), ("5", "bytes"),
    ("1 gigabyte", "bytes"), ("3 Gbit/s", "bandwidth"), ("100 Gbps", "duration"), ("10 MB/ms", "bandwidth"),
])
def test_spellings_at_the_edge_agree_with_pint(text, kind, monkeypatch):
    assert same(outcome(text, kind), by_pint(text, kind, monkeypatch))


def test_plain_spellings_do_not_import_pint():
    code = ("import sys; from topologies.units import parse; "
            "print(parse('100Gbps', 'bandwidth'), parse('2us', 'duration'), parse('64MiB', 'bytes'), "
            "parse('312TFLOPS', 'flops')); print('pint' in sys.modules); "
            "print(parse('3 gigabit/second', 'bandwidth'), 'pint' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["12500000000.0", "2e-06", "67108864.0", "312000000000000.0", "False",
                           "375000000.0", "True"]
