"""Schedules that send a range of chunks as one message (``Step.count``).

Rabenseifner, recursive halving/doubling, Bruck, MPICH's fold and the hierarchical
allreduce's intra-node shards emit one message per pair per step. Truth here: the
per-chunk transfers they expand to are the ones the algorithm prescribes (rebuilt from
first principles below), the network sees the same bytes per pair per step, and the
simulated time equals that of the per-chunk schedule (which the network merges itself)
and, on an ideal switch, the closed-form α-β cost.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import topologies
from simulator import collectives
from simulator.collectives import Schedule, Step, verify
from simulator.network import Network

RANGED = [("allreduce", "rabenseifner"), ("reduce_scatter", "recursive_halving"),
          ("allgather", "recursive_doubling"), ("allgather", "bruck"), ("allreduce", "recursive_doubling"),
          ("allreduce", "hierarchical")]


def per_chunk(s: Schedule) -> Schedule:
    """The same schedule with every chunk its own transfer (what the builders emitted before)."""
    steps = tuple(Step(st.src.copy(), st.dst.copy(), st.chunk.copy(), st.reduce.copy()) for st in s.steps)
    return Schedule(s.collective, s.algorithm, s.ranks, s.chunk_bytes, steps, root=s.root,
                    chunk_owner=s.chunk_owner, servers=s.servers)


def halving_transfers(p: int) -> list[set[tuple[int, int, int]]]:
    """Recursive halving from the textbook: at distance d, v sends its partner's half of its block."""
    steps, d = [], p // 2
    while d >= 1:
        step = set()
        for v in range(p):
            block = v - v % (2 * d)
            keep_low = (v & d) == 0
            give = range(block + d, block + 2 * d) if keep_low else range(block, block + d)
            step |= {(v, v ^ d, c) for c in give}
        steps.append(step)
        d //= 2
    return steps


@pytest.mark.parametrize("p", [2, 8, 32])
def test_rabenseifner_expands_to_the_textbook_halving_then_doubling(p):
    s = collectives.schedule("rabenseifner", p, 1000)
    want = halving_transfers(p)
    d = 1
    while d < p:   # recursive-doubling allgather: v sends the d chunks it holds to v ^ d
        want.append({(v, v ^ d, c) for v in range(p) for c in range(v - v % d, v - v % d + d)})
        d *= 2
    got = [set(zip(st.src.tolist(), st.dst.tolist(), st.chunk.tolist(), strict=True)) for st in s.steps]
    assert got == want
    assert [bool(st.reduce.all()) for st in s.steps] == [True] * (len(want) // 2) + [False] * (len(want) // 2)
    assert all(st.n_messages == p for st in s.steps)      # one message per pair per step
    verify(s)


def test_bruck_ranges_wrap_around_the_chunks():
    s = collectives.schedule("bruck", 5, 500, collective="allgather")
    last = s.steps[-1]                     # distance 4: rank r sends chunk r (count 1) to r - 4
    assert last.count.tolist() == [1] * 5
    middle = s.steps[1]                    # distance 2: chunks r, r + 1 (mod 5) to r - 2
    assert sorted(zip(middle.src.tolist(), middle.chunk.tolist(), strict=True)) == \
        sorted((r, (r + k) % 5) for r in range(5) for k in range(2))
    assert middle.message_bytes(s.chunk_bytes).tolist() == [200.0] * 5
    verify(s)


@pytest.mark.parametrize("collective, algorithm", RANGED)
@pytest.mark.parametrize("p, size", [(8, 1 << 20), (16, 25 * (1 << 20) + 3), (12, 777)])
def test_bytes_per_pair_per_step_and_simulated_time_are_those_of_the_per_chunk_schedule(collective, algorithm, p,
                                                                                         size):
    try:
        s = collectives.schedule(algorithm, p, size, collective=collective, devices_per_node=4)
    except collectives.ScheduleError:
        pytest.skip("not for this p")
    old = per_chunk(s)
    for new_step, old_step in zip(s.steps, old.steps, strict=True):
        src, dst, _ = new_step.messages()
        got = dict(zip(zip(src.tolist(), dst.tolist(), strict=True), new_step.message_bytes(s.chunk_bytes).tolist(),
                       strict=True))
        want: dict[tuple[int, int], float] = {}
        for a, b, c in zip(old_step.src.tolist(), old_step.dst.tolist(), old_step.chunk.tolist(), strict=True):
            want[(a, b)] = want.get((a, b), 0.0) + float(s.chunk_bytes[c])
        assert got == want and len(got) == new_step.n_messages
    assert s.total_bytes_sent() == old.total_bytes_sent()
    assert collectives.analytic.step_maxima(s) == collectives.analytic.step_maxima(old)
    for topo in (topologies.build("fat_tree", k=4, bandwidth=1e10, latency=1e-6),
                 topologies.build("hierarchical", nodes=4, devices_per_node=4, intra_bandwidth=3e11,
                                  inter_bandwidth=1e10, intra_latency=1e-6, inter_latency=2e-6)):
        if len(topologies.devices(topo)) < p:
            continue
        assert Network(topo, gamma=1e-10).schedule_cost(s) == Network(topo, gamma=1e-10).schedule_cost(old)


@pytest.mark.parametrize("p", [4, 64, 1024])
def test_rabenseifner_on_a_switch_is_the_closed_form(p):
    lat, bw, n = 1e-6, 1.25e10, p * 4096
    net = Network(topologies.build("switch", n=p, bandwidth=bw, latency=lat))
    alpha, beta = 2 * lat, 1 / bw     # two hops, one bottleneck; no link is shared on a switch
    closed = 2 * np.log2(p) * alpha + 2 * (p - 1) / p * n * beta
    assert net.schedule_time(collectives.schedule("rabenseifner", p, n)) == pytest.approx(closed, rel=1e-12)


def test_ranged_steps_pickle_and_stay_read_only():
    s = collectives.schedule("rabenseifner", 6, 600)
    back = pickle.loads(pickle.dumps(s))
    for a, b in zip(s.steps, back.steps, strict=True):
        assert (a.count is None) == (b.count is None)
        assert np.array_equal(a.chunk, b.chunk) and np.array_equal(a.src, b.src)
        assert not b.chunk.flags.writeable and not b.first.flags.writeable
    with pytest.raises(AttributeError):
        s.steps[0].count = None


def test_bad_ranges_are_value_errors():
    with pytest.raises(ValueError, match="count"):
        Step([0], [1], [0], [False], count=[0])
    with pytest.raises(ValueError, match="wrap"):
        Step([0], [1], [3], [False], count=[2], wrap=3)
    with pytest.raises(ValueError, match="wrap"):
        Step([0], [1], [0], [False], wrap=3)
