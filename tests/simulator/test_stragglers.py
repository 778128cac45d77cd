"""Per-rank slowdown factors (``simulator.engine.stragglers``) against their random streams drawn by hand."""

from __future__ import annotations

import pytest

from simulator.config.models import Stragglers
from simulator.engine.stragglers import SlowdownModel
from simulator.rng import Streams


@pytest.mark.parametrize("distribution", ["lognormal", "normal", "exponential"])
def test_each_factor_is_the_next_single_draw_of_the_ranks_own_stream(distribution):
    """100 iterations of 3 ranks (past several of the blocks the model draws at once), with slow workers:
    each factor is the persistent slowdown times the rank's stream drawn once per iteration."""
    spec = Stragglers(distribution=distribution, sigma=0.3, slow_fraction=0.34, slowdown=2.5)
    model = SlowdownModel(spec, 3, Streams(7))
    streams = [Streams(7).get("stragglers", r) for r in range(3)]
    draw = {"lognormal": lambda g: g.lognormal(0.0, 0.3), "normal": lambda g: max(0.1, g.normal(1.0, 0.3)),
            "exponential": lambda g: 1.0 + g.exponential(0.3)}[distribution]
    assert sorted(model.persistent.tolist()) == [1.0, 1.0, 2.5]
    for _ in range(100):
        for r in (2, 0, 1):
            assert model.factor(r) == float(model.persistent[r] * draw(streams[r]))


def test_without_noise_the_factor_is_the_persistent_slowdown():
    model = SlowdownModel(Stragglers(slow_fraction=0.5, slowdown=3.0), 4, Streams(1))
    assert sorted(model.factor(r) for r in range(4)) == [1.0, 1.0, 3.0, 3.0]
