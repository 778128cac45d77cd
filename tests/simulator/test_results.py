"""The summary's percentiles (``results.percentiles``) against numpy's, the definition docs/config.md gives."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.results import percentiles


@pytest.mark.parametrize("n", [2, 3, 7, 18, 101, 1000])
def test_percentiles_are_numpys_linear_interpolation(n):
    rng = np.random.default_rng(n)
    values = rng.lognormal(-3.0, 0.4, size=n)
    got = percentiles(values.tolist(), (1, 50, 99))
    want = np.percentile(values, [1, 50, 99])
    assert got == pytest.approx(want.tolist(), rel=1e-13, abs=0)


def test_percentiles_of_one_value_and_of_equal_values():
    assert percentiles([0.25], (50, 99)) == (0.25, 0.25)
    a = 0.033369428245060374
    assert percentiles([a] * 18, (50, 99)) == pytest.approx((a, a), rel=1e-15)


def test_percentiles_interpolate_between_ranks():
    # 11 values 0..10: the q-th percentile is q/10 exactly; between ranks the line joining them
    assert percentiles([float(v) for v in range(11)], (50, 99, 25)) == pytest.approx((5.0, 9.9, 2.5), rel=1e-15)
    assert percentiles([1.0, 3.0], (50, 99)) == pytest.approx((2.0, 2.98), rel=1e-15)
