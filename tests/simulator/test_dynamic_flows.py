"""The asynchronous flow model (``simulator.network.dynamic``): its incrementally kept state against a re-solve."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

import topologies
from simulator.network import Network
from simulator.network.dynamic import _CROWD, _HOPS, _HW, FlowSimulator
from simulator.network.fluid import max_min_rates

BW, LAT = 10e9, 1e-6


def _checked(flows: FlowSimulator, seen: list[int]) -> None:
    """After every re-allocation: the live flows' rates are the max-min rates solved from scratch over the
    live flows, and the live-flows-per-link counts (and the crowded links) kept as flows come and go equal a
    recount."""
    inner = flows._reallocate

    def reallocate(event=None):
        inner(event)
        links, rate, remaining = flows.live()
        if not links:
            assert flows.links_in_use() == {}
            return
        flow_of = np.repeat(np.arange(len(links)), [len(x) for x in links])
        link_of = np.concatenate(links)
        expected = max_min_rates(flow_of, link_of, len(links), flows.net.routing.capacity)
        np.testing.assert_allclose(rate, expected, rtol=1e-12, atol=0)
        assert (remaining > 0).all()
        used, count = np.unique(link_of, return_counts=True)
        assert flows.links_in_use() == dict(zip(used.tolist(), count.tolist(), strict=True))
        assert flows.crowded() == set(used[count > _CROWD].tolist())
        seen.append(len(links))

    flows._reallocate = reallocate


def _shadowed(flows: FlowSimulator, compared: list[int]) -> None:
    """After every re-allocation: each flow that was live at the one before has exactly (to the bit) the bytes
    left it had then minus its rate then x the time since, the flow loop's arithmetic, wherever the kernel
    keeps them (the slot arrays, or its class's row)."""
    inner = flows._reallocate
    state: dict = {"at": 0.0, "left": {}, "rate": {}}

    def reallocate(event=None):
        now = flows.env.now
        inner(event)
        dt, state["at"] = now - state["at"], now
        _, rate, remaining = flows.live()
        slots = np.flatnonzero(flows._s[: int(flows._meta[_HW]), _HOPS] > 0).tolist()
        left, rates = {}, {}
        for i, r, q in zip(slots, rate, remaining, strict=True):
            if i in state["left"]:
                assert q == state["left"][i] - state["rate"][i] * dt
                compared.append(i)
            left[i], rates[i] = q, r
        state["left"], state["rate"] = left, rates

    flows._reallocate = reallocate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rates_after_every_arrival_and_departure_equal_a_full_re_solve(seed):
    """Random groups of 1-4 flows (some at the same instant, some with no bytes or to their own device) on an
    oversubscribed fat-tree: hundreds of arrivals and departures, each followed by the check above."""
    g = topologies.build("fat_tree", k=4, bandwidth=BW, latency=LAT, oversubscription=2.0)
    env = simpy.Environment()
    flows, seen, done, compared = FlowSimulator(env, Network(g), slots=4), [], [], []   # few slots: they grow
    _checked(flows, seen)
    _shadowed(flows, compared)
    rng = np.random.default_rng(seed)

    def sender(i):
        yield env.timeout(float(rng.choice([0.0, 0.5e-3, rng.uniform(0, 5e-3)])))
        for _ in range(4):
            k = int(rng.integers(1, 5))
            src = rng.integers(0, 16, k)
            dst = rng.integers(0, 16, k)
            nbytes = rng.uniform(1e5, 2e7, k) * (rng.random(k) > 0.1)
            start = env.now
            yield flows.transfer(src, dst, nbytes)
            done.append((i, env.now - start))
            yield env.timeout(float(rng.uniform(0, 1e-3)))

    for i in range(24):
        env.process(sender(i))
    env.run()
    assert len(done) == 24 * 4
    assert len(seen) > 150 and max(seen) >= 20           # many events, with many flows sharing links
    assert len(compared) > 5 * len(seen)
    assert flows.links_in_use() == {} and flows.live()[0] == []


def test_a_prepared_group_sent_twice_takes_what_transfer_takes():
    g = topologies.build("switch", n=4, bandwidth=BW, latency=LAT)
    net = Network(g)
    src, dst, nbytes = [0, 1, 2], [3, 3, 3], [1e7, 2e7, 0.0]
    env = simpy.Environment()
    flows, times = FlowSimulator(env, net), []
    group = flows.prepare(src, dst, nbytes)
    assert group.n == 2                                  # the empty flow is left out

    def run():
        for _ in range(2):
            start = env.now
            yield flows.start(group)
            times.append(env.now - start)

    env.process(run())
    env.run()
    expected = net.finish_times(np.array(src[:2]), np.array(dst[:2]), np.array(nbytes[:2])).max()
    np.testing.assert_allclose(times, [expected, expected], rtol=1e-12)
    assert flows.flows_started == 4 and flows.bytes_carried == 6e7


@pytest.mark.parametrize("seed", [0, 1])
def test_parameter_server_traffic_takes_the_class_path_and_still_equals_a_full_re_solve(seed):
    """Pushes and pulls of 48 workers to 3 servers (the shape the class path is for: thousands of events, a
    handful of bottlenecks): after every event the rates equal ``max_min_rates`` from scratch to 1e-12, and
    most events were solved per bottleneck class, not flow by flow (so the check above covers that path)."""
    g = topologies.build("fat_tree", k=6, bandwidth=BW, latency=LAT)
    env = simpy.Environment()
    flows, seen, compared = FlowSimulator(env, Network(g)), [], []
    _checked(flows, seen)
    _shadowed(flows, compared)
    rng = np.random.default_rng(seed)
    servers = [51, 52, 53]

    def worker(w):
        for _ in range(6):
            yield env.timeout(float(rng.lognormal(-7.0, 0.5)))
            shards = rng.uniform(1e6, 4e6, 3)
            yield flows.transfer([w] * 3, servers, shards)      # push
            yield flows.transfer(servers, [w] * 3, shards)      # pull

    for w in range(48):
        env.process(worker(w))
    env.run()
    fast, full = flows.fills()
    assert len(seen) == fast + full > 400
    assert fast > 2 * full
    assert len(compared) > 10 * len(seen)


def test_more_bottlenecks_than_classes_fall_back_to_the_flow_by_flow_filling():
    """80 disjoint pairs on a switch, with a third of them also crossing a shared device: far more distinct
    bottleneck links than the kernel keeps classes for, so flows go without a class and use their own
    rates; after every event the rates still equal a from-scratch solve, and every transfer ends."""
    g = topologies.build("switch", n=161, bandwidth=BW, latency=LAT)
    env = simpy.Environment()
    flows, seen, done = FlowSimulator(env, Network(g)), [], []
    _checked(flows, seen)
    rng = np.random.default_rng(3)

    def pair(i):
        yield env.timeout(float(rng.uniform(0, 1e-4)))
        for _ in range(3):
            dst = [2 * i + 1] + ([160] if i % 3 == 0 else [])
            yield flows.transfer([2 * i] * len(dst), dst, rng.uniform(1e5, 1e6, len(dst)))
            done.append(i)

    for i in range(80):
        env.process(pair(i))
    env.run()
    assert len(done) == 240 and max(seen) > 80
    assert flows.fills()[1] > 0
