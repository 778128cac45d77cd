"""Every registered schedule does what its collective promises; broken ones are caught.

Truth here is the collective's postcondition, checked by ``verify``'s symbolic
execution, plus facts stated independently in this file: which algorithms need
a power of two, how many bytes a ring moves, how PS ranks are numbered.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simulator.collectives import (
    ALGORITHMS,
    Schedule,
    ScheduleError,
    Step,
    Transfer,
    algorithms,
    check_options,
    schedule,
    verify,
)
from simulator.collectives.schedule import split_evenly

EXPECTED_TABLE = {
    "allreduce": {
        "ring",
        "recursive_doubling",
        "rabenseifner",
        "binomial_tree",
        "nvls",
        "double_binary_tree",
        "hierarchical",
    },
    "reduce_scatter": {"ring", "recursive_halving", "pairwise", "hierarchical"},
    "allgather": {"ring", "recursive_doubling", "bruck", "hierarchical"},
    "broadcast": {"binomial_tree", "scatter_allgather"},
    "reduce": {"binomial_tree"},
    "alltoall": {"pairwise"},
    "ps_push": {"sharded"},
    "ps_pull": {"sharded"},
}
POWER_OF_TWO_ONLY = {("reduce_scatter", "recursive_halving"), ("allgather", "recursive_doubling")}
PARAMETER_SERVER = {"ps_push", "ps_pull"}
REGISTERED = sorted(ALGORITHMS)
LOCATED = (re.compile(r"step \d+"), re.compile(r"rank \d+"), re.compile(r"chunk \d+"))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def is_power_of_two(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def options_for(collective: str, algorithm: str, ranks: int, draw=None) -> dict:
    """Topology info an algorithm may need; drawn by hypothesis when ``draw`` is given."""
    pick = draw or (lambda strategy, default: default)
    return {
        "devices_per_node": pick(
            st.one_of(
                st.sampled_from([g for g in range(1, ranks + 1) if ranks % g == 0]),
                st.integers(1, ranks),
            ),
            next(g for g in (4, 3, 2, 1) if ranks % g == 0),
        ),
        "root": pick(st.integers(0, ranks - 1), ranks - 1),
        "servers": pick(st.integers(1, 8), 3),
        "pipeline_chunks": pick(st.integers(1, 4), 2),
    }


def expect_unsupported(collective: str, algorithm: str, ranks: int, options: dict) -> bool:
    if (collective, algorithm) in POWER_OF_TWO_ONLY:
        return not is_power_of_two(ranks)
    if algorithm == "hierarchical":
        return ranks % options["devices_per_node"] != 0
    return False


def check_shape(s: Schedule, collective: str, algorithm: str, ranks: int, size: int, opts: dict):
    assert (s.collective, s.algorithm) == (collective, algorithm)
    servers = opts["servers"] if collective in PARAMETER_SERVER else 0
    switches = 2 if algorithm == "nvls" else 0     # the switch's reduce and multicast engines, after the workers
    assert s.ranks == ranks + servers + switches and s.servers == servers and s.switches == switches
    assert s.size_bytes == size
    copies = ranks if collective == "alltoall" else 1
    assert int(s.chunk_bytes.sum()) == copies * size
    if collective in ("broadcast", "reduce"):
        assert s.root == opts["root"]


# -------------------------------------------------------------------------------------- the table


def test_registry_is_the_documented_table():
    table: dict[str, set[str]] = {}
    for collective, algorithm in ALGORITHMS:
        table.setdefault(collective, set()).add(algorithm)
    assert table == EXPECTED_TABLE
    assert set(algorithms("allgather")) == EXPECTED_TABLE["allgather"]


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown allreduce algorithm 'rign'.*ring.*rabenseifner"):
        schedule("rign", 4, 100)
    with pytest.raises(ValueError, match="unknown allgather algorithm 'rabenseifner'.*bruck"):
        schedule("rabenseifner", 4, 100, collective="allgather")
    with pytest.raises(ValueError, match="unknown collective 'gossip'"):
        schedule("ring", 4, 100, collective="gossip")
    with pytest.raises(ValueError, match="unknown collective"):
        algorithms("gossip")


@pytest.mark.parametrize("ranks", [0, -3])
def test_rank_count_below_one_is_a_schedule_error(ranks):
    with pytest.raises(ScheduleError, match="ranks >= 1"):
        schedule("ring", ranks, 100)


@pytest.mark.parametrize("bad", [-1, 2.5, "64MiB", True])
def test_size_must_be_a_whole_number_of_bytes(bad):
    with pytest.raises(ValueError, match="size_bytes"):
        schedule("ring", 4, bad)


def test_power_of_two_algorithms_refuse_other_counts_with_a_reason():
    with pytest.raises(
        ScheduleError, match=r"recursive_halving reduce_scatter needs a power-of-two.*p=6"
    ):
        schedule("recursive_halving", 6, 100, collective="reduce_scatter")
    with pytest.raises(
        ScheduleError, match=r"recursive_doubling allgather needs a power-of-two.*p=12"
    ):
        schedule("recursive_doubling", 12, 100, collective="allgather")


def test_hierarchical_needs_devices_per_node_dividing_p():
    with pytest.raises(ScheduleError, match="devices_per_node"):
        schedule("hierarchical", 8, 100)
    with pytest.raises(
        ScheduleError, match=r"multiple of devices_per_node.*p=10.*devices_per_node=4"
    ):
        schedule("hierarchical", 10, 100, devices_per_node=4)
    with pytest.raises(ScheduleError, match="devices_per_node must be an integer >= 1"):
        schedule("hierarchical", 8, 100, devices_per_node=0)


@pytest.mark.parametrize("collective", ["reduce_scatter", "allgather"])
@pytest.mark.parametrize("g", [1, 2, 4])
@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_hierarchical_reduce_scatter_and_allgather_keep_the_contract_and_cross_the_nodes_once(collective, g, m):
    """Rank r ends with (starts with) chunk r, the ring's numbering; each rank's NIC carries its shard once,
    in the inter-node phase, which comes second for reduce_scatter and first for allgather."""
    p = g * m
    pow2 = [o for o in ("ring", "rabenseifner") if o == "ring" or is_power_of_two(m)]
    for n in (0, 1, p - 1, p * 1000 + 7):
        for inter in pow2:
            for intra in ("ring", "rabenseifner") if is_power_of_two(g) else ("ring",):
                s = schedule("hierarchical", p, n, collective, devices_per_node=g, inter=inter, intra=intra)
                verify(s)
                assert s.chunk_owner.tolist() == list(range(p))
                assert s.chunk_bytes.tolist() == list(split_evenly(n, p))
                crossing = np.zeros(p)
                phases = []
                for step in s.steps:
                    across = step.src // g != step.dst // g
                    assert across.all() or not across.any()          # a step is intra- or inter-node
                    phases.append(bool(across.any()))
                    ends = step.src if collective == "reduce_scatter" else step.dst
                    np.add.at(crossing, ends[across], s.chunk_bytes[step.chunk[across]])
                assert phases == sorted(phases, reverse=collective == "allgather")
                # across the nodes a rank sends (reduce_scatter) or receives (allgather) exactly its local index's
                # shard, chunks l, g + l, ..., but its own chunk, once: (m-1)/m n/g when p divides n
                shard = [sum(s.chunk_bytes[node * g + local] for node in range(m)) for local in range(g)]
                assert crossing.tolist() == [shard[r % g] - s.chunk_bytes[r] for r in range(p)]


def test_hierarchical_phases_refuse_what_they_cannot_build_in_one_line():
    with pytest.raises(ScheduleError, match=r"^hierarchical reduce_scatter: inter must be one of ring, rabenseifner, "
                                            r"got 'recursive_doubling'$"):
        schedule("hierarchical", 8, 100, "reduce_scatter", devices_per_node=2, inter="recursive_doubling")
    with pytest.raises(ScheduleError, match="intra must be one of ring, rabenseifner, recursive_doubling"):
        schedule("hierarchical", 8, 100, "allgather", devices_per_node=2, intra="double_binary_tree")
    with pytest.raises(ScheduleError, match=r"allgather with inter: rabenseifner \(nodes\) needs a power-of-two.*p=3"):
        schedule("hierarchical", 6, 100, "allgather", devices_per_node=2, inter="rabenseifner")
    with pytest.raises(ScheduleError, match=r"multiple of devices_per_node.*p=10"):
        schedule("hierarchical", 10, 100, "reduce_scatter", devices_per_node=4)
    check_options("hierarchical", {"inter": "ring", "intra": "rabenseifner", "slices": 2}, "allgather")
    with pytest.raises(ScheduleError, match="takes no option 'pipeline_chunks'; it takes inter, intra, slices"):
        check_options("hierarchical", {"pipeline_chunks": 4}, "reduce_scatter")


def test_root_out_of_range_is_a_schedule_error():
    with pytest.raises(ScheduleError, match="root 4 out of range 0..3"):
        schedule("binomial_tree", 4, 100, collective="broadcast", root=4)


# ---------------------------------------------------------------------- every schedule is correct


@FAST
@given(
    pair=st.sampled_from(REGISTERED),
    ranks=st.integers(2, 64),
    size=st.one_of(st.integers(0, 70), st.integers(71, 100_000)),
    data=st.data(),
)
def test_every_registered_schedule_verifies(pair, ranks, size, data):
    collective, algorithm = pair
    opts = options_for(collective, algorithm, ranks, lambda strategy, default: data.draw(strategy))
    if expect_unsupported(collective, algorithm, ranks, opts):
        with pytest.raises(ScheduleError, match=algorithm):
            schedule(algorithm, ranks, size, collective, **opts)
        return
    s = schedule(algorithm, ranks, size, collective, **opts)
    check_shape(s, collective, algorithm, ranks, size, opts)
    verify(s)


@pytest.mark.parametrize("pair", REGISTERED, ids=lambda pair: f"{pair[0]}-{pair[1]}")
def test_small_rank_counts_exhaustively(pair):
    collective, algorithm = pair
    for ranks in range(2, 11):
        for size in (0, 1, ranks - 1, 1000 * ranks + 7):
            opts = options_for(collective, algorithm, ranks)
            if expect_unsupported(collective, algorithm, ranks, opts):
                with pytest.raises(ScheduleError):
                    schedule(algorithm, ranks, size, collective, **opts)
                continue
            s = schedule(algorithm, ranks, size, collective, **opts)
            check_shape(s, collective, algorithm, ranks, size, opts)
            verify(s)


@pytest.mark.parametrize("pair", REGISTERED, ids=lambda pair: f"{pair[0]}-{pair[1]}")
def test_one_rank(pair):
    collective, algorithm = pair
    s = schedule(algorithm, 1, 123, collective, devices_per_node=1, servers=2)
    verify(s)
    if collective in PARAMETER_SERVER:  # one worker still talks to its servers
        assert s.ranks == 3 and len(s.steps) == 1
    else:
        assert s.ranks == 1 and s.steps == () and s.chunk_bytes.tolist() == [123]


def test_parameter_server_ranks_follow_the_workers():
    push = schedule("sharded", 5, 1000, "ps_push", servers=3)
    pull = schedule("sharded", 5, 1000, "ps_pull", servers=3)
    for s in (push, pull):
        assert s.ranks == 8 and s.servers == 3 and s.workers == 5
        assert s.chunk_owner.tolist() == [5, 6, 7]
        assert s.chunk_bytes.tolist() == [334, 333, 333]
    assert {(t.src, t.dst, t.chunk, t.op) for t in push.steps[0].transfers()} == {
        (w, 5 + k, k, "reduce") for w in range(5) for k in range(3)
    }
    assert {(t.src, t.dst, t.chunk, t.op) for t in pull.steps[0].transfers()} == {
        (5 + k, w, k, "copy") for w in range(5) for k in range(3)
    }


def test_alltoall_chunks_are_blocks_of_each_send_buffer():
    s = schedule("pairwise", 3, 10, "alltoall")
    assert s.chunk_bytes.tolist() == [4, 3, 3] * 3  # block j of rank i is chunk 3i + j
    assert s.chunk_owner.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert s.size_bytes == 10
    assert [(t.src, t.dst, t.chunk) for t in s.steps[0].transfers()] == [
        (0, 1, 1),
        (1, 2, 5),
        (2, 0, 6),
    ]


# -------------------------------------------------------------------- broken schedules are caught


def rebuilt(
    s: Schedule,
    index: int,
    keep: np.ndarray | None = None,
    extra: int | None = None,
    flip: int | None = None,
) -> Schedule:
    """``s`` with step ``index`` changed: transfers masked, one duplicated, or one op flipped."""
    step = s.steps[index]
    src, dst, chunk, red = (np.array(a) for a in (step.src, step.dst, step.chunk, step.reduce))
    if keep is not None:
        src, dst, chunk, red = src[keep], dst[keep], chunk[keep], red[keep]
    if extra is not None:
        src, dst = np.append(src, src[extra]), np.append(dst, dst[extra])
        chunk, red = np.append(chunk, chunk[extra]), np.append(red, red[extra])
    if flip is not None:
        red[flip] = not red[flip]
    steps = list(s.steps)
    steps[index] = Step(src, dst, chunk, red)
    return dataclasses.replace(s, steps=tuple(steps))


def assert_located(error: pytest.ExceptionInfo, s: Schedule):
    message = str(error.value)
    assert message.startswith(f"{s.algorithm} {s.collective}, p=")
    for pattern in LOCATED:
        assert pattern.search(message), message


@settings(max_examples=300, deadline=None)
@given(pair=st.sampled_from(REGISTERED), ranks=st.integers(2, 12), data=st.data())
def test_mutated_schedules_are_rejected_with_a_located_message(pair, ranks, data):
    collective, algorithm = pair
    opts = options_for(collective, algorithm, ranks)
    assume(not expect_unsupported(collective, algorithm, ranks, opts))
    s = schedule(algorithm, ranks, 97, collective, **opts)
    busy = [i for i, step in enumerate(s.steps) if len(step)]
    index = data.draw(st.sampled_from(busy))
    step = s.steps[index]
    i = data.draw(st.integers(0, len(step) - 1))
    mutation = data.draw(st.sampled_from(["drop", "duplicate", "flip"]))
    # nvls: a worker's one store into the switch's multicast engine (its buffer at the identity) is the same
    # whether it copies or adds, so that flip is no mutation
    assume(not (mutation == "flip" and s.switches and step.dst[i] >= s.workers and not step.reduce[i]))
    # nvls: the multicast's delivery of shard j back to worker j repeats what the reduce engine already gave
    # j (its reduced shard), so dropping it leaves every buffer correct: no mutation either (hypothesis found
    # ranks=2, last step, transfer 0)
    assume(not (mutation == "drop" and s.switches and step.src[i] >= s.workers and step.dst[i] < s.workers
                and step.chunk[i] == step.dst[i] and index == len(s.steps) - 1))
    if mutation == "drop":
        keep = np.ones(len(step), dtype=bool)
        keep[i] = False
        broken = rebuilt(s, index, keep=keep)
    elif mutation == "duplicate":
        broken = rebuilt(s, index, extra=i)
    else:  # copy -> reduce, or reduce -> copy
        broken = rebuilt(s, index, flip=i)
    with pytest.raises(ScheduleError) as error:
        verify(broken)
    assert_located(error, s)


def test_ring_messages_name_what_went_wrong():
    s = schedule("ring", 6, 100)
    keep = np.ones(6, dtype=bool)
    keep[1] = False  # rank 1 no longer passes its partial sum on at step 2
    with pytest.raises(
        ScheduleError,
        match=r"^ring allreduce, p=6: after step 9 rank \d chunk \d holds "
        r"\{.*\}; expected each of 0\.\.5 once \(missing",
    ):
        verify(rebuilt(s, 2, keep=keep))
    with pytest.raises(
        ScheduleError,
        match=r"^ring allreduce, p=6: step 2: rank 2 chunk 4 now holds .*"
        r"counted twice",
    ):
        verify(rebuilt(s, 2, extra=1))
    with pytest.raises(ScheduleError, match=r"step 7: rank 4 chunk 1 is written by 2 transfers"):
        verify(rebuilt(s, 7, extra=3))  # a duplicated copy races itself
    with pytest.raises(ScheduleError, match=r"step 7: rank 4 chunk 1 now holds .*counted twice"):
        verify(rebuilt(s, 7, flip=3))  # allgather copy turned into a reduce


def hand_made(collective: str, ranks: int, chunks: int, steps, **meta) -> Schedule:
    return Schedule.from_transfers(collective, "by_hand", ranks, [10] * chunks, steps, **meta)


def test_transfers_out_of_range_or_to_self_are_rejected():
    cases = [
        (
            [(0, 4, 0, "reduce")],
            r"step 0 transfer 0 \(0->4 chunk 0 reduce\): destination rank out of range 0..3",
        ),
        ([(1, 2, 0, "copy"), (-1, 2, 0, "copy")], r"step 0 transfer 1 .*source rank out of range"),
        ([(0, 1, 2, "copy")], r"step 0 transfer 0 .*chunk out of range 0..1"),
        (
            [(3, 3, 0, "reduce")],
            r"step 0 transfer 0 \(3->3 chunk 0 reduce\): a rank sends to itself",
        ),
    ]
    for step, message in cases:
        with pytest.raises(ScheduleError, match=message):
            verify(hand_made("allreduce", 4, 2, [step]))


def test_reading_or_reducing_into_nothing_is_rejected():
    with pytest.raises(
        ScheduleError, match=r"step 0: rank 1 sends chunk 0 to rank 2 but holds no data"
    ):
        verify(hand_made("allgather", 3, 3, [[(1, 2, 0, "copy")]]))
    with pytest.raises(
        ScheduleError, match=r"step 0: rank 0 reduces chunk 0 into rank 1, which holds no data"
    ):
        verify(hand_made("broadcast", 2, 1, [[(0, 1, 0, "reduce")]]))


def test_hand_written_schedules_round_trip_and_verify():
    steps = [
        [Transfer(1, 0, 0, "reduce"), Transfer(2, 0, 0, "reduce")],
        [(0, 1, 0, "copy"), (0, 2, 0, "copy")],
    ]
    s = hand_made("allreduce", 3, 1, steps)
    verify(s)  # concurrent reduces into one cell are allowed
    assert list(s.steps[0].transfers()) == steps[0]
    assert s.total_bytes_sent() == 40
    with pytest.raises(
        ScheduleError, match=r"with no steps rank 0 chunk 0 holds \{0:1\}; expected each of 0..2"
    ):
        verify(hand_made("allreduce", 3, 1, []))


def test_bad_steps_and_transfers_are_value_errors():
    with pytest.raises(ValueError, match="'copy' or 'reduce'"):
        Transfer(0, 1, 0, "add")
    with pytest.raises(ValueError, match="same length"):
        Step([0, 1], [1], [0, 0], [True, True])
    step = schedule("ring", 4, 100).steps[0]
    with pytest.raises(ValueError, match="read-only"):
        step.src[0] = 3


# -------------------------------------------------------------------------------- bytes and scale


@given(ranks=st.integers(2, 64), multiple=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_ring_allreduce_sends_2_p_minus_1_over_p_n_per_rank(ranks, multiple):
    n = ranks * multiple
    # every one of p ranks sends 2(p-1)/p * n bytes
    assert schedule("ring", ranks, n).total_bytes_sent() == ranks * (2 * (ranks - 1) * n // ranks)


@pytest.mark.parametrize(
    ("collective", "algorithm", "ranks", "total"),
    [
        ("allgather", "ring", 6, lambda p, n: (p - 1) * n),
        ("allgather", "bruck", 6, lambda p, n: (p - 1) * n),
        ("allgather", "recursive_doubling", 8, lambda p, n: (p - 1) * n),
        ("reduce_scatter", "pairwise", 7, lambda p, n: (p - 1) * n),
        ("allreduce", "rabenseifner", 8, lambda p, n: 2 * (p - 1) * n),
        ("allreduce", "recursive_doubling", 8, lambda p, n: p * 3 * n),
        ("allreduce", "binomial_tree", 8, lambda p, n: 2 * (p - 1) * n),
        ("broadcast", "binomial_tree", 5, lambda p, n: (p - 1) * n),
        ("alltoall", "pairwise", 5, lambda p, n: (p - 1) * n),
        ("ps_push", "sharded", 4, lambda p, n: p * n),
    ],
)
def test_bytes_are_conserved(collective, algorithm, ranks, total):
    n = 840 * 7
    assert schedule(algorithm, ranks, n, collective, servers=2).total_bytes_sent() == total(
        ranks, n
    )


def test_ring_at_8192_ranks_is_built_from_shared_arrays():
    start = time.perf_counter()
    s = schedule("ring", 8192, 2**30)
    elapsed = time.perf_counter() - start
    assert len(s.steps) == 2 * 8191
    assert len(s.steps[0]) == 8192
    assert s.steps[0].src is s.steps[5].src and s.steps[0].dst is s.steps[16000].dst
    assert s.steps[3].chunk.base is s.steps[9000].chunk.base  # views, not copies
    assert elapsed < 1.0, f"ring over 8192 ranks took {elapsed:.2f} s to build"


@given(size=st.integers(0, 10**12), parts=st.integers(1, 10_000))
def test_split_evenly(size, parts):
    chunks = split_evenly(size, parts)
    assert len(chunks) == parts and sum(chunks) == size
    assert list(chunks) == sorted(chunks, reverse=True) and chunks[0] - chunks[-1] <= 1


def test_collectives_import_only_stdlib_and_numpy():
    code = (
        "import sys, simulator.collectives; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'simpy', 'pydantic', 'networkx', 'numba', 'yaml', 'pint'}); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_schedules_pickle_with_shared_read_only_arrays():
    s = pickle.loads(pickle.dumps(schedule("ring", 6, 1000)))  # e.g. shipped to a Dask worker
    verify(s)
    assert s.steps[0].src is s.steps[7].src
    assert not s.steps[0].src.flags.writeable and not s.chunk_bytes.flags.writeable
