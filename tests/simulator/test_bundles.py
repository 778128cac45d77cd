"""Coupled steps as bundles: one solve per class of bundle-preserving permutations, the same floats.

``Fluid.bundles`` claims that where every flow's other links are twins of, or dominated by, the one
link its bundle shares, the max-min solve sees only the bundle links, and that steps whose sizes are
permutations mapping bundles to bundles then finish at permuted times, float for float. These tests
check both claims against full solves, and that ``Network`` reuses a solve only where they hold.
"""

from __future__ import annotations

import numpy as np
import pytest

import topologies
from simulator import collectives
from simulator.network import Fluid, Network
from simulator.network.base import FlowBatch
from simulator.network.fluid import bundles, canonical_sizes


class Unbundled(Fluid):
    """The fluid model without the shortcut: every coupled step solved."""

    bundles = None


def node_ring(nodes=20, per=8, **kw):
    """Every device sends to its peer on the next node: the NICs are shared, the spines carry some flows."""
    g = topologies.build("hierarchical", nodes=nodes, devices_per_node=per, intra_bandwidth=3e11, intra_latency=1e-6,
                         inter_bandwidth=1.25e10, inter_latency=2e-6, **kw)
    ranks = np.arange(nodes * per)
    return g, ranks, (ranks + per) % (nodes * per)


def full_and_bundle_links(net, src, dst, nbytes):
    flows = net.flows(src, dst, nbytes)
    groups = bundles(flows.link_ptr, flows.links, net.routing.capacity)
    return flows, groups


def test_the_solve_on_the_bundle_links_alone_is_the_full_solve():
    g, src, dst = node_ring()
    net = Network(g)
    rng = np.random.default_rng(3)
    nbytes = rng.integers(1, 4, len(src)) * 1000.0 + rng.integers(0, 2, len(src))
    flows, groups = full_and_bundle_links(net, src, dst, nbytes)
    assert groups is not None and [gr.shape for gr in groups] == [(20, 8)]
    spine = np.diff(flows.link_ptr) > 6
    assert spine.any() and not spine.all()                 # some flows cross a spine, some do not
    # the same flows on their bundle's link only (one link per bundle, the NIC's capacity)
    link_of = np.empty(len(src), dtype=np.int64)
    for b, members in enumerate(groups[0]):
        link_of[members] = b
    cap = np.full(len(groups[0]), net.routing.capacity[flows.links].min())
    alone = FlowBatch(np.arange(len(src) + 1), link_of, flows.nbytes, flows.latency)
    full = Fluid().finish_times(flows, net.routing.capacity)
    assert len(np.unique(full - flows.latency)) > 3           # several epochs
    assert np.array_equal(full, Fluid().finish_times(alone, cap))


def test_bundle_preserving_permutations_permute_the_finish_times_exactly():
    g, src, dst = node_ring()
    net = Network(g)
    rng = np.random.default_rng(5)
    nbytes = rng.integers(1000, 1010, len(src)).astype(float)
    flows, groups = full_and_bundle_links(net, src, dst, nbytes)
    free = FlowBatch(flows.link_ptr, flows.links, nbytes, np.zeros(len(src)))     # latency-free, as Network solves
    base = Fluid().finish_times(free, net.routing.capacity)
    # shuffle whole bundles (a spine-crossing one onto one that is not) and flows within each bundle
    members = groups[0]
    moved = members[rng.permutation(len(members))]
    moved = np.array([row[rng.permutation(len(row))] for row in moved])
    perm = np.empty(len(src), dtype=np.int64)
    perm[moved.ravel()] = members.ravel()                     # flow moved[i] gets the bytes of members[i]
    permuted = FlowBatch(flows.link_ptr, flows.links, nbytes[perm], np.zeros(len(src)))
    got = Fluid().finish_times(permuted, net.routing.capacity)
    assert np.array_equal(got, base[perm])
    v1, _ = canonical_sizes(groups, nbytes)
    v2, _ = canonical_sizes(groups, nbytes[perm])
    assert np.array_equal(v1, v2)


@pytest.mark.parametrize("size", [7777777, 64 * 20 * 8 + 13, 1 << 20])
@pytest.mark.parametrize("inter", ["leaf_spine", "switch", "fat_tree"])
def test_hierarchical_allreduce_costs_the_unbundled_floats_with_fewer_solves(size, inter):
    g, _, _ = node_ring(inter_kind=inter)
    s = collectives.schedule("hierarchical", 160, size, devices_per_node=8)
    net, plain = Network(g, gamma=3e-11), Network(g, gamma=3e-11)
    plain.model = Unbundled()
    assert net.schedule_cost(s) == plain.schedule_cost(s)
    if inter == "fat_tree":     # edge uplinks carry several nodes' flows at the NICs' rate: no bundles
        assert net.steps_solved == plain.steps_solved > 10
    else:
        assert net.steps_solved <= 4 < 10 < plain.steps_solved
    shuffled = np.random.default_rng(1).permutation(160)          # ranks of a node on several nodes
    assert net.schedule_cost(s, shuffled) == plain.schedule_cost(s, shuffled)


def test_a_link_shared_by_two_bundles_or_barely_faster_refuses_the_grouping():
    g, src, dst = node_ring()
    net = Network(g)
    flows = net.flows(src, dst, np.ones(len(src)))
    cap = net.routing.capacity
    assert bundles(flows.link_ptr, flows.links, cap) is not None
    spine_links = np.unique(flows.links[np.isin(flows.links, np.flatnonzero(cap == 5e10))])
    assert len(spine_links)
    close = cap.copy()
    close[spine_links] = cap[flows.links].min() * (1 + 1e-12)
    assert bundles(flows.link_ptr, flows.links, close) is None
    # every device to one receiver: the receiver's links carry every node's flows
    incast = net.flows(src[8:], np.zeros(len(src) - 8, dtype=np.int64), np.ones(len(src) - 8))
    assert bundles(incast.link_ptr, incast.links, cap) is None
    # one flow alone on its NIC: no bundle of two
    single = net.flows(src[::8], dst[::8], np.ones(len(src) // 8))
    assert bundles(single.link_ptr, single.links, cap) is None


def test_rotated_steps_share_a_solve_unless_a_flow_is_empty():
    g, src, dst = node_ring(nodes=4)
    for nbytes, solves in ((np.arange(32.0) % 3 + 1, 1), (np.arange(32.0) % 3, 4)):
        net, plain = Network(g), Network(g)
        plain.model = Unbundled()
        for shift in range(0, 32, 8):                          # node n's sizes move to node n + 1
            rolled = np.roll(nbytes, shift)
            assert net.step_time(src, dst, rolled) == plain.step_time(src, dst, rolled)
        assert (net.steps_solved, plain.steps_solved) == (solves, 4)
