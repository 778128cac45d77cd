"""The engine's SimPy environment (``simulator.engine.environment``): SimPy's events in SimPy's order, and the alarm."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

import topologies
from simulator.engine.environment import Environment
from simulator.network import Network
from simulator.network.dynamic import FlowSimulator, _WakeAlarm


def _story(env: simpy.Environment) -> list[tuple[float, str]]:
    """Processes whose timeouts, zero delays and callback-succeeded events coincide in time: the log of what ran."""
    log: list[tuple[float, str]] = []
    gate = env.event()

    def worker(i):
        for k in range(4):
            yield env.timeout([0.5, 0.0, 0.25, 0.5][(i + k) % 4])
            log.append((env.now, f"w{i}.{k}"))
            if i == 1 and k == 1:
                env.timeout(0.25).callbacks.append(lambda _e: (log.append((env.now, "open")), gate.succeed()))
        yield gate
        log.append((env.now, f"w{i} through"))

    for i in range(4):
        env.process(worker(i))
    env.run()
    return log


def test_events_run_in_simpys_order():
    assert _story(Environment()) == _story(simpy.Environment())


def test_a_failed_event_nobody_handles_ends_the_run_as_in_simpy():
    env = Environment()

    def broken():
        yield env.timeout(1.0)
        raise ValueError("boom")

    env.process(broken())
    with pytest.raises(ValueError, match="boom"):
        env.run()


def test_the_alarm_takes_its_place_among_events_scheduled_at_the_same_time():
    env, log = Environment(), []
    env.timeout(1.0).callbacks.append(lambda _e: log.append("before"))      # scheduled before the alarm
    env.set_alarm(1.0, lambda: log.append("alarm"))
    env.timeout(1.0).callbacks.append(lambda _e: log.append("after"))       # scheduled after it
    env.run()
    assert log == ["before", "alarm", "after"] and env.now == 1.0


def test_a_replaced_or_cleared_alarm_never_fires_but_moves_the_final_clock_as_simpys_stale_timers_do():
    def script(env, alarm):
        log = []
        alarm.set_alarm(5.0, lambda: log.append("replaced"))
        alarm.set_alarm(2.0, lambda: log.append("kept"))
        env.timeout(1.0).callbacks.append(lambda _e: (alarm.set_alarm(9.0, lambda: log.append("cleared")),
                                                      alarm.clear_alarm()))
        env.timeout(3.0).callbacks.append(lambda _e: alarm.set_alarm(0.5, lambda: log.append("fired")))
        env.run()
        return log, env.now

    engine = Environment()
    plain = simpy.Environment()
    assert script(engine, engine) == script(plain, _WakeAlarm(plain)) == (["fired"], 10.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_flows_finish_at_the_same_times_on_the_engine_environment_as_on_simpys(seed):
    """Random traffic on an oversubscribed fat-tree: the same transfers end at the same instants, in the same
    order, with the flow model's next completion kept as the engine's alarm or as SimPy timer events."""

    def run(env):
        g = topologies.build("fat_tree", k=4, bandwidth=10e9, latency=1e-6, oversubscription=2.0)
        flows, done, rng = FlowSimulator(env, Network(g), slots=4), [], np.random.default_rng(seed)

        def sender(i):
            yield env.timeout(float(rng.choice([0.0, 0.5e-3, rng.uniform(0, 5e-3)])))
            for _ in range(4):
                k = int(rng.integers(1, 5))
                yield flows.transfer(rng.integers(0, 16, k), rng.integers(0, 16, k), rng.uniform(1e5, 2e7, k))
                done.append((i, env.now))
                yield env.timeout(float(rng.uniform(0, 1e-3)))

        for i in range(24):
            env.process(sender(i))
        env.run()
        return done, env.now

    engine, plain = run(Environment()), run(simpy.Environment())
    assert len(engine[0]) == 96 and engine == plain
