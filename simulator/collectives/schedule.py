"""Schedules: a collective algorithm written once, as plain data.

A collective algorithm (ring allreduce, Rabenseifner, a binomial broadcast, a
parameter-server push, ...) is a :class:`Schedule`: a tuple of :class:`Step`
objects, each a set of *concurrent* transfers ``(src, dst, chunk, op)`` where
``op`` is ``"copy"`` (``dst[chunk] = src[chunk]``) or ``"reduce"``
(``dst[chunk] += src[chunk]``). Within a step every source is read before any
destination is written. The buffer of ``size_bytes`` bytes that every rank holds
is cut into chunks whose sizes are ``Schedule.chunk_bytes``.

The same schedule is timed by the simulator, executed by ``kernels`` on real
buffers and costed by :mod:`simulator.collectives.analytic`, so this module is
the contract between them. It also holds :func:`verify`, which executes a
schedule *symbolically* and checks the collective's postcondition.

What this module deliberately does not do: time anything, move real bytes, or
know any algorithm. It imports only the standard library and numpy, because the
Numba kernels import it.

Buffers and chunks, per collective (``p`` ranks, ``n = size_bytes``)
-----------------------------------------------------------------------
allreduce, reduce, reduce_scatter
    Every rank starts with its own contribution in every chunk. allreduce: every
    rank ends with every chunk reduced over all ranks; reduce: ``root`` does;
    reduce_scatter: rank ``chunk_owner[c]`` ends with chunk ``c`` reduced.
broadcast
    ``root`` starts with every chunk; every rank ends with root's data.
allgather
    Rank ``chunk_owner[c]`` starts with chunk ``c``; every rank ends with every
    chunk, each exactly as its owner had it.
alltoall
    ``p * p`` chunks; chunk ``i * p + j`` is block ``j`` of rank ``i``'s send
    buffer (``chunk_owner[c] == c // p``) and must end on rank ``j`` (as block
    ``i`` of its receive buffer). ``chunk_bytes`` therefore sums to ``p * n``;
    :attr:`Schedule.size_bytes` still reports ``n``, one rank's buffer.
ps_push, ps_pull (parameter server)
    ``servers = k`` extra ranks follow the ``p`` workers: ranks ``0..p-1`` are
    workers, ``p..p+k-1`` servers, ``Schedule.ranks == p + k``. The model is
    ``k`` shards (chunks); shard ``s`` lives on server ``chunk_owner[s] == p + s``.
    push: every worker starts with its gradient in every shard and the servers'
    buffers start at **zero**; server ``p + s`` ends with shard ``s`` reduced
    over all workers. pull: server ``p + s`` starts with shard ``s``; every
    worker ends with every shard as its server had it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "COLLECTIVES",
    "Schedule",
    "ScheduleError",
    "Step",
    "Transfer",
    "split_evenly",
    "verify",
]

COLLECTIVES = (
    "allreduce",
    "reduce_scatter",
    "allgather",
    "broadcast",
    "reduce",
    "alltoall",
    "ps_push",
    "ps_pull",
)
_SUMMING = ("allreduce", "reduce", "reduce_scatter", "ps_push")

Op = Literal["copy", "reduce"]


class ScheduleError(ValueError):
    """A schedule that cannot be built, or that does not do what its collective promises."""


def split_evenly(size_bytes: int, parts: int) -> tuple[int, ...]:
    """Cut ``size_bytes`` into ``parts`` chunk sizes that differ by at most one byte.

    The first ``size_bytes % parts`` chunks get the extra byte; when
    ``size_bytes < parts`` the last chunks are empty.

    Examples
    --------
    >>> split_evenly(10, 4)
    (3, 3, 2, 2)
    >>> split_evenly(2, 3)
    (1, 1, 0)
    """
    if parts < 1:
        raise ValueError(f"split_evenly: parts must be >= 1, got {parts}")
    if size_bytes < 0:
        raise ValueError(f"split_evenly: size_bytes must be >= 0, got {size_bytes}")
    base, extra = divmod(int(size_bytes), int(parts))
    return (base + 1,) * extra + (base,) * (parts - extra)


@dataclass(frozen=True, slots=True)
class Transfer:
    """One transfer: ``dst[chunk] = src[chunk]`` (copy) or ``dst[chunk] += src[chunk]`` (reduce)."""

    src: int
    dst: int
    chunk: int
    op: Op

    def __post_init__(self) -> None:
        if self.op not in ("copy", "reduce"):
            raise ValueError(f"Transfer.op: expected 'copy' or 'reduce', got {self.op!r}")


def _frozen(values: object, dtype: type, name: str) -> np.ndarray:
    """``values`` as a read-only 1-D array of ``dtype``; no copy when it already is one.

    An array that already has the right dtype is frozen *in place*, so builders
    can share one array between many steps.
    """
    if isinstance(values, np.ndarray) and values.dtype == dtype:
        arr = values  # np.asarray may return a view when the dtype objects differ
    else:
        arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.flags.writeable:
        arr.flags.writeable = False
    return arr


_UNKNOWN = object()
_ROTATION_BASES: dict[tuple[int, int], tuple[weakref.ref, bool]] = {}


def _rotation_of(chunk: np.ndarray) -> int | None:
    """See :attr:`Step.rotation`."""
    n, base = chunk.shape[0], chunk.base
    if (n == 0 or not isinstance(base, np.ndarray) or base.dtype != chunk.dtype or base.ndim != 1
            or not base.flags.c_contiguous or not chunk.flags.c_contiguous or base.flags.writeable):
        return None
    key = (id(base), n)
    known = _ROTATION_BASES.get(key)
    if known is None or known[0]() is not base:
        if len(_ROTATION_BASES) > 64:
            _ROTATION_BASES.clear()
        known = _ROTATION_BASES[key] = (weakref.ref(base), bool(np.array_equal(base, np.arange(len(base)) % n)))
    return int(chunk[0]) if known[1] else None


class Step:
    """A set of concurrent transfers, stored as read-only arrays.

    Transfer ``i`` moves chunk ``chunk[i]`` from rank ``src[i]`` to rank
    ``dst[i]``, adding it there when ``reduce[i]`` and overwriting otherwise.
    All sources are read before any destination is written. Several reduces
    may target the same ``(dst, chunk)`` in one step (they all add up); a copy
    may not share its target with any other transfer of the step.

    Arrays are frozen in place and may be shared between steps (a ring's
    ``src`` and ``dst`` are the same objects in every step), so never build
    :class:`Transfer` objects for big schedules: use the arrays.

    **Chunk ranges.** With ``count`` given, the arrays describe *messages*:
    message ``i`` moves the ``count[i]`` consecutive chunks ``chunk[i], chunk[i] + 1,
    ...`` (taken modulo ``wrap`` when it is given) from ``src[i]`` to ``dst[i]``,
    as one message on the network (Rabenseifner's halves, Bruck's blocks). The
    attributes ``src``, ``dst``, ``chunk`` and ``reduce`` are still one entry per
    chunk moved (expanded on first use, for ``verify`` and the kernels); the
    network and the α-β-γ cost read :meth:`messages` and :meth:`message_bytes`
    and never expand. Without ``count`` every transfer is its own message.
    """

    __slots__ = ("_src", "_dst", "_chunk", "_reduce", "_count", "_wrap", "_expanded", "_rotation")

    def __init__(self, src: object, dst: object, chunk: object, reduce: object,
                 count: object | None = None, wrap: int | None = None) -> None:
        arrays = (_frozen(src, np.int32, "Step.src"), _frozen(dst, np.int32, "Step.dst"),
                  _frozen(chunk, np.int32, "Step.chunk"), _frozen(reduce, np.bool_, "Step.reduce"))
        n = arrays[0].shape[0]
        if not arrays[1].shape[0] == arrays[2].shape[0] == arrays[3].shape[0] == n:
            raise ValueError(
                "Step: src, dst, chunk and reduce must have the same length, got "
                f"{n}, {arrays[1].shape[0]}, {arrays[2].shape[0]}, {arrays[3].shape[0]}"
            )
        if count is not None:
            count = _frozen(count, np.int32, "Step.count")
            if count.shape[0] != n or (n and count.min() < 1):
                raise ValueError(f"Step.count: expected {n} chunk counts >= 1")
        if wrap is not None:
            if count is None or int(wrap) < 1:
                raise ValueError("Step.wrap: only with count, and >= 1")
            wrap = int(wrap)
            if n and (count.max() > wrap or arrays[2].min() < 0 or arrays[2].max() >= wrap):
                raise ValueError(f"Step.wrap: ranges must start in 0..{wrap - 1} and hold at most {wrap} chunks")
        setter = object.__setattr__
        for name, value in zip(("_src", "_dst", "_chunk", "_reduce"), arrays, strict=True):
            setter(self, name, value)
        setter(self, "_count", count)
        setter(self, "_wrap", wrap)
        setter(self, "_expanded", arrays if count is None else None)
        setter(self, "_rotation", _UNKNOWN)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Step is frozen: cannot set {name}")

    # per chunk moved (the original contract: verify, kernels, Transfer objects)
    @property
    def src(self) -> np.ndarray:
        """int32[n]: sending rank of each chunk moved."""
        return self._per_chunk()[0]

    @property
    def dst(self) -> np.ndarray:
        """int32[n]: receiving rank of each chunk moved."""
        return self._per_chunk()[1]

    @property
    def chunk(self) -> np.ndarray:
        """int32[n]: the chunk moved."""
        return self._per_chunk()[2]

    @property
    def reduce(self) -> np.ndarray:
        """bool[n]: whether the receiver adds (else overwrites)."""
        return self._per_chunk()[3]

    @property
    def first(self) -> np.ndarray:
        """int32[messages]: the first chunk of each message (``chunk`` itself when ``count`` is None)."""
        return self._chunk

    @property
    def count(self) -> np.ndarray | None:
        """int32[messages]: chunks per message, or None when every transfer is one chunk."""
        return self._count

    @property
    def wrap(self) -> int | None:
        """Chunk ids of a range are taken modulo this (None: no wrap-around)."""
        return self._wrap

    @property
    def rotation(self) -> int | None:
        """``r`` when the step moves each of its ``n`` chunks once as ``chunk[i] == (r + i) mod n``, else None.

        Read from the memory layout, not from the values: ``chunk`` must be a contiguous
        view into an array checked once to hold ``j mod n`` at ``j`` (a ring's shared
        array), so asking costs O(1) per step. None when that cannot be shown.
        """
        if self._rotation is _UNKNOWN:
            object.__setattr__(self, "_rotation", _rotation_of(self._chunk) if self._count is None else None)
        return self._rotation

    def _per_chunk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        expanded = self._expanded
        if expanded is None:
            count = self._count.astype(np.int64)
            total = int(count.sum())
            starts = np.cumsum(count) - count
            within = np.arange(total, dtype=np.int64) - np.repeat(starts, count)
            chunk = np.repeat(self._chunk.astype(np.int64), count) + within
            if self._wrap is not None:
                chunk %= self._wrap
            expanded = tuple(_frozen(a, dtype, "Step") for a, dtype in (
                (np.repeat(self._src, count), np.int32), (np.repeat(self._dst, count), np.int32),
                (chunk.astype(np.int32), np.int32), (np.repeat(self._reduce, count), np.bool_)))
            object.__setattr__(self, "_expanded", expanded)
        return expanded

    # per message (what the network and the α-β-γ cost read)
    def messages(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(src, dst, reduce)`` of each message (one entry per transfer when ``count`` is None)."""
        return self._src, self._dst, self._reduce

    def message_bytes(self, chunk_bytes: np.ndarray) -> np.ndarray:
        """float64 bytes of each message (exact: sums of integer chunk sizes)."""
        if self._count is None:
            return np.asarray(chunk_bytes, dtype=np.float64)[self._chunk]
        sizes = np.asarray(chunk_bytes, dtype=np.int64)
        if self._wrap is not None:
            sizes = np.tile(sizes[: self._wrap], 2)
        cum = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=cum[1:])
        first = self._chunk.astype(np.int64)
        return (cum[first + self._count] - cum[first]).astype(np.float64)

    @property
    def n_messages(self) -> int:
        """Number of messages (transfers as the network sees them)."""
        return int(self._src.shape[0])

    def __len__(self) -> int:
        """Number of chunks moved (transfers of one chunk each)."""
        if self._count is None:
            return int(self._src.shape[0])
        return int(self._count.sum())

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        # rebuild through __init__ so unpickled arrays are read-only again
        return (Step, (self._src, self._dst, self._chunk, self._reduce, self._count, self._wrap))

    def transfers(self) -> Iterator[Transfer]:
        """Yield the step's transfers as :class:`Transfer` objects (for small schedules)."""
        for s, d, c, r in zip(
            self.src.tolist(),
            self.dst.tolist(),
            self.chunk.tolist(),
            self.reduce.tolist(),
            strict=True,
        ):
            yield Transfer(s, d, c, "reduce" if r else "copy")

    @classmethod
    def from_transfers(cls, transfers: Iterable[Transfer | tuple[int, int, int, str]]) -> Step:
        """Build a step from :class:`Transfer` objects or ``(src, dst, chunk, op)`` tuples."""
        items = [t if isinstance(t, Transfer) else Transfer(*t) for t in transfers]
        return cls(
            src=[t.src for t in items],
            dst=[t.dst for t in items],
            chunk=[t.chunk for t in items],
            reduce=[t.op == "reduce" for t in items],
        )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{t.src}->{t.dst} c{t.chunk}{'+' if t.op == 'reduce' else ''}"
            for _, t in zip(range(4), self.transfers(), strict=False)
        )
        more = ", ..." if len(self) > 4 else ""
        return f"Step({len(self)} transfers: {shown}{more})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Schedule:
    """A collective algorithm as data: chunk sizes and a tuple of steps.

    Attributes
    ----------
    collective : one of :data:`COLLECTIVES`.
    algorithm : the algorithm's registry name (``"ring"``, ``"rabenseifner"``, ...).
    ranks : number of ranks the schedule addresses (workers + servers for ps_*).
    chunk_bytes : read-only int64 array, bytes of each chunk.
    steps : the steps, executed in order.
    root : the root rank of broadcast / reduce (0 otherwise).
    chunk_owner : read-only int32 array or None: the rank that owns chunk ``c``
        (allgather: starts with it; reduce_scatter: ends with it; alltoall:
        sends it; ps_*: the server holding shard ``c``). Filled in by default.
    servers : parameter-server ranks at the end of the rank range (ps_* only).
    switches : in-network reducers at the end of the rank range (``nvls``: the switch's reduction
        and multicast engines, ranks ``ranks - 2`` and ``ranks - 1``). A switch rank holds no input
        (its buffer starts at the reduction's identity, like a ps_push server), has a port per link
        (the α-β-γ cost does not count its bytes against one port) and reduces in the switch (no γ).
        The collective's postcondition is about the ``workers`` only.
    slices : ``c >= 1``: the schedule runs as ``c`` slices of its chunks, pipelined through its
        steps, so one slice's reduction overlaps the next one's transfer (NCCL's chunked steps).
        It costs one slice's pass through every step (the pipeline fill) plus ``c - 1`` slices at
        the pace of the busiest resource (a port or link per direction, a rank's reductions);
        ``c = 1`` is the unpipelined step-after-step cost (:mod:`~.analytic`). The steps, and
        so ``verify`` and the kernels' result, do not depend on it.
    """

    collective: str
    algorithm: str
    ranks: int
    chunk_bytes: np.ndarray
    steps: tuple[Step, ...]
    root: int = 0
    chunk_owner: np.ndarray | None = None
    servers: int = 0
    switches: int = 0
    slices: int = 1

    def __post_init__(self) -> None:
        where = f"Schedule({self.algorithm} {self.collective})"
        if self.collective not in COLLECTIVES:
            raise ValueError(
                f"{where}: unknown collective; expected one of {', '.join(COLLECTIVES)}"
            )
        if self.ranks < 1:
            raise ValueError(f"{where}: ranks must be >= 1, got {self.ranks}")
        chunk_bytes = _frozen(self.chunk_bytes, np.int64, f"{where}.chunk_bytes")
        if chunk_bytes.shape[0] == 0 or (chunk_bytes < 0).any():
            raise ValueError(f"{where}: chunk_bytes must be a non-empty list of sizes >= 0")
        object.__setattr__(self, "chunk_bytes", chunk_bytes)
        object.__setattr__(self, "steps", tuple(self.steps))
        if not all(isinstance(step, Step) for step in self.steps):
            raise ValueError(f"{where}: steps must be Step objects")
        if not 0 <= self.root < self.ranks:
            raise ValueError(f"{where}: root {self.root} out of range 0..{self.ranks - 1}")
        self._check_servers(where)
        owner = self.chunk_owner if self.chunk_owner is not None else self._default_owner()
        if owner is not None:
            owner = _frozen(owner, np.int32, f"{where}.chunk_owner")
            if owner.shape[0] != self.chunks or (owner < 0).any() or (owner >= self.ranks).any():
                raise ValueError(
                    f"{where}: chunk_owner must name a rank for each of {self.chunks} chunks"
                )
        object.__setattr__(self, "chunk_owner", owner)

    def _check_servers(self, where: str) -> None:
        if self.collective in ("ps_push", "ps_pull"):
            if not 1 <= self.servers < self.ranks or self.chunks != self.servers:
                raise ValueError(
                    f"{where}: needs 1 <= servers < ranks and one chunk (shard) per server, "
                    f"got servers={self.servers}, ranks={self.ranks}, chunks={self.chunks}"
                )
        elif self.servers != 0:
            raise ValueError(f"{where}: servers is only meaningful for ps_push / ps_pull")
        if self.switches and (self.collective != "allreduce" or self.servers or not 0 < self.switches < self.ranks):
            raise ValueError(f"{where}: switches (in-network reducers) need an allreduce and "
                             f"0 < switches < ranks, got switches={self.switches}")
        if isinstance(self.slices, bool) or not isinstance(self.slices, int) or self.slices < 1:
            raise ValueError(f"{where}: slices must be an integer >= 1, got {self.slices!r}")
        if self.collective == "alltoall" and self.chunks != self.ranks**2:
            raise ValueError(f"{where}: needs ranks**2 chunks, got {self.chunks}")

    def _default_owner(self) -> np.ndarray | None:
        chunks = np.arange(self.chunks)
        if self.collective in ("allgather", "reduce_scatter"):
            return chunks % self.ranks
        if self.collective == "alltoall":
            return chunks // self.ranks
        if self.collective in ("ps_push", "ps_pull"):
            return self.workers + chunks
        return None

    @classmethod
    def from_transfers(
        cls,
        collective: str,
        algorithm: str,
        ranks: int,
        chunk_bytes: Iterable[int],
        steps: Iterable[Iterable[Transfer | tuple[int, int, int, str]]],
        **metadata: object,
    ) -> Schedule:
        """Build a (small, hand-written) schedule from lists of transfers, one list per step.

        Examples
        --------
        >>> s = Schedule.from_transfers("allreduce", "by_hand", 2, [4],
        ...     [[(1, 0, 0, "reduce")], [(0, 1, 0, "copy")]])
        >>> verify(s)
        >>> s.total_bytes_sent()
        8
        """
        return cls(
            collective=collective,
            algorithm=algorithm,
            ranks=ranks,
            chunk_bytes=np.asarray(list(chunk_bytes), dtype=np.int64),
            steps=tuple(Step.from_transfers(step) for step in steps),
            **metadata,  # type: ignore[arg-type]
        )

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return (
            Schedule,
            (
                self.collective,
                self.algorithm,
                self.ranks,
                self.chunk_bytes,
                self.steps,
                self.root,
                self.chunk_owner,
                self.servers,
                self.switches,
                self.slices,
            ),
        )

    @property
    def chunks(self) -> int:
        """Number of chunks the buffer is cut into."""
        return int(self.chunk_bytes.shape[0])

    @property
    def workers(self) -> int:
        """Ranks that are neither parameter servers nor switches (``ranks - servers - switches``)."""
        return self.ranks - self.servers - self.switches

    @property
    def size_bytes(self) -> int:
        """Bytes of one rank's buffer (for alltoall: one rank's send buffer)."""
        total = int(self.chunk_bytes.sum())
        return total // self.ranks if self.collective == "alltoall" else total

    def total_bytes_sent(self) -> int:
        """Sum over all transfers of the bytes of the chunk they carry."""
        total = 0
        seen: dict[tuple[int, int, int | None], int] = {}
        for step in self.steps:
            key = (id(step.first), id(step.count), step.wrap)
            if key not in seen:
                if step.count is None:
                    seen[key] = int(self.chunk_bytes[step.first].sum())
                else:
                    seen[key] = int(step.message_bytes(self.chunk_bytes).sum())
            total += seen[key]
        return total

    def __repr__(self) -> str:
        extra = f", servers={self.servers}" if self.servers else ""
        extra += f", switches={self.switches}" if self.switches else ""
        extra += f", slices={self.slices}" if self.slices > 1 else ""
        extra += f", root={self.root}" if self.root else ""
        return (
            f"Schedule({self.algorithm} {self.collective}, ranks={self.ranks}{extra}, "
            f"size_bytes={self.size_bytes}, chunks={self.chunks}, steps={len(self.steps)})"
        )


# --------------------------------------------------------------------------- verify

_MAX_CELLS = 40_000_000  # ranks x chunks x contributors held in the symbolic state


def verify(schedule: Schedule) -> None:
    """Execute ``schedule`` symbolically and check its collective's postcondition.

    Every ``(rank, chunk)`` holds a multiset of contributions (which rank's
    original data, how many times), or nothing when it holds no defined data.
    A copy replaces the destination's multiset, a reduce adds to it; a step
    reads all its sources before writing. Because counts are kept, double
    counting is caught, not just missing data.

    Raises
    ------
    ScheduleError
        With one message locating the first problem: a transfer naming a rank
        or chunk out of range or sending to itself; a rank sending data it does
        not hold; a reduce into a buffer holding no data; a copy racing another
        write in the same step; a contribution counted twice; or, after the last
        step, a ``(rank, chunk)`` that does not hold what the collective promises.
    ValueError
        When the instance is too large to hold symbolically (verify a smaller one).
    """
    state = _SymbolicState(schedule)
    for index, step in enumerate(schedule.steps):
        state.apply(index, step)
    state.check_postcondition()


def _label(s: Schedule) -> str:
    if s.servers or s.switches:
        extra = f"{s.servers} servers" if s.servers else f"{s.switches} switch"
        return f"{s.algorithm} {s.collective}, p={s.workers} workers + {extra}"
    return f"{s.algorithm} {s.collective}, p={s.ranks}"


class _SymbolicState:
    """counts[rank, chunk, k]: how often contributor ``holders[chunk, k]`` is in that cell."""

    def __init__(self, s: Schedule) -> None:
        self.s, self.label = s, _label(s)
        ranks, chunks = s.ranks, s.chunks
        summing = s.collective in _SUMMING
        contributors = s.workers if summing else 1
        if ranks * chunks * contributors > _MAX_CELLS:
            raise ValueError(
                f"{self.label}: too large to verify symbolically ({ranks} ranks x {chunks} "
                f"chunks x {contributors} contributors); verify a smaller instance"
            )
        self.counts = np.zeros((ranks, chunks, contributors), dtype=np.int32)
        self.defined = np.zeros((ranks, chunks), dtype=bool)
        every_chunk = np.arange(chunks)
        if summing:
            self.holders = np.broadcast_to(np.arange(contributors), (chunks, contributors))
            workers = np.arange(s.workers)
            self.counts[workers, :, workers] = 1
            self.defined[:] = True  # ps_push: the servers' buffers start at zero
        else:
            start = np.full(chunks, s.root) if s.chunk_owner is None else s.chunk_owner
            self.holders = start.reshape(chunks, 1)
            self.counts[start, every_chunk, 0] = 1
            self.defined[start, every_chunk] = True
        self.last_step = -1

    # -- one step -------------------------------------------------------------

    def apply(self, index: int, step: Step) -> None:
        self.last_step = index
        if len(step) == 0:
            return
        self._check_bounds(index, step)
        src, dst, chunk, red = step.src, step.dst, step.chunk, step.reduce
        self._check_reads(index, step)
        self._check_races(index, step)
        values = self.counts[src, chunk]  # all reads happen before any write
        copy = ~red
        self.counts[dst[copy], chunk[copy]] = values[copy]
        np.add.at(self.counts, (dst[red], chunk[red]), values[red])
        self.defined[dst, chunk] = True
        over = (self.counts[dst, chunk] > 1).any(axis=1)
        if over.any():
            i = int(np.argmax(over))
            d, c = int(dst[i]), int(chunk[i])
            raise ScheduleError(
                f"{self.label}: step {index}: rank {d} chunk {c} now holds {self._show(d, c)}; "
                f"a contribution is counted twice (transfer {i}: {_show_transfer(step, i)})"
            )

    def _check_bounds(self, index: int, step: Step) -> None:
        ranks, chunks = self.s.ranks, self.s.chunks
        problems = (
            ((step.src < 0) | (step.src >= ranks), f"source rank out of range 0..{ranks - 1}"),
            ((step.dst < 0) | (step.dst >= ranks), f"destination rank out of range 0..{ranks - 1}"),
            ((step.chunk < 0) | (step.chunk >= chunks), f"chunk out of range 0..{chunks - 1}"),
            (step.src == step.dst, "a rank sends to itself"),
        )
        for bad, reason in problems:
            if bad.any():
                i = int(np.argmax(bad))
                raise ScheduleError(
                    f"{self.label}: step {index} transfer {i} ({_show_transfer(step, i)}): {reason}"
                )

    def _check_reads(self, index: int, step: Step) -> None:
        src, dst, chunk, red = step.src, step.dst, step.chunk, step.reduce
        unheld = ~self.defined[src, chunk]
        if unheld.any():
            i = int(np.argmax(unheld))
            raise ScheduleError(
                f"{self.label}: step {index}: rank {src[i]} sends chunk {chunk[i]} "
                f"to rank {dst[i]} but holds no data for it"
            )
        blind = red & ~self.defined[dst, chunk]
        if blind.any():
            i = int(np.argmax(blind))
            raise ScheduleError(
                f"{self.label}: step {index}: rank {src[i]} reduces chunk {chunk[i]} into rank "
                f"{dst[i]}, which holds no data for it (a copy is needed first)"
            )

    def _check_races(self, index: int, step: Step) -> None:
        if step.reduce.all():
            return
        keys = step.dst.astype(np.int64) * self.s.chunks + step.chunk
        _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
        racing = ~step.reduce & (counts[inverse] > 1)
        if racing.any():
            i = int(np.argmax(racing))
            raise ScheduleError(
                f"{self.label}: step {index}: rank {step.dst[i]} chunk {step.chunk[i]} is "
                f"written by {counts[inverse][i]} transfers in one step and one is a copy "
                f"(transfer {i}: {_show_transfer(step, i)}); the result would depend on order"
            )

    # -- the end --------------------------------------------------------------

    def check_postcondition(self) -> None:
        ranks, chunks, expected, wanted = self._targets()
        got = self.counts[ranks, chunks]
        wrong = (got != expected).any(axis=1)
        if not wrong.any():
            return
        i = int(np.argmax(wrong))
        r, c = int(ranks[i]), int(chunks[i])
        when = f"after step {self.last_step}" if self.last_step >= 0 else "with no steps"
        diff = self._diff(r, c, expected[i])
        raise ScheduleError(
            f"{self.label}: {when} rank {r} chunk {c} holds {self._show(r, c)}; "
            f"expected {wanted(c)}{diff}"
        )

    def _targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[int], str]]:
        """(rank, chunk) cells to check, the counts each must hold, and how to say it."""
        s = self.s
        every_chunk = np.arange(s.chunks)
        everyone = np.repeat(np.arange(s.workers), s.chunks), np.tile(every_chunk, s.workers)  # not switches
        if s.collective in _SUMMING:
            ranks = {
                "allreduce": everyone[0],
                "reduce": np.full(s.chunks, s.root),
                "reduce_scatter": s.chunk_owner,
                "ps_push": s.chunk_owner,
            }[s.collective]
            chunks = everyone[1] if s.collective == "allreduce" else every_chunk
            return ranks, chunks, np.ones((len(ranks), s.workers), np.int32), self._each_once
        if s.collective == "alltoall":
            ranks, chunks = every_chunk % s.ranks, every_chunk
        elif s.collective == "ps_pull":
            ranks = np.repeat(np.arange(s.workers), s.chunks)
            chunks = np.tile(every_chunk, s.workers)
        else:  # broadcast, allgather: every rank ends with every chunk
            ranks, chunks = everyone
        return ranks, chunks, np.ones((len(ranks), 1), np.int32), self._one_copy

    def _each_once(self, chunk: int) -> str:
        return f"each of 0..{self.s.workers - 1} once"

    def _one_copy(self, chunk: int) -> str:
        return f"{{{int(self.holders[chunk, 0])}:1}}"

    def _show(self, rank: int, chunk: int, limit: int = 12) -> str:
        if not self.defined[rank, chunk]:
            return "nothing"
        counts = self.counts[rank, chunk]
        present = np.flatnonzero(counts)
        items = [f"{int(self.holders[chunk, k])}:{int(counts[k])}" for k in present[:limit]]
        more = ", ..." if len(present) > limit else ""
        return "{" + ", ".join(items) + more + "}"

    def _diff(self, rank: int, chunk: int, expected: np.ndarray) -> str:
        if self.counts.shape[2] <= 1:
            return ""
        counts = self.counts[rank, chunk]
        missing = [int(self.holders[chunk, k]) for k in np.flatnonzero(counts < expected)]
        extra = [int(self.holders[chunk, k]) for k in np.flatnonzero(counts > expected)]
        parts = [
            f"missing {_some(missing)}" if missing else "",
            f"extra {_some(extra)}" if extra else "",
        ]
        joined = "; ".join(p for p in parts if p)
        return f" ({joined})" if joined else ""


def _some(values: list[int], limit: int = 8) -> str:
    return ", ".join(map(str, values[:limit])) + (", ..." if len(values) > limit else "")


def _show_transfer(step: Step, i: int) -> str:
    op = "reduce" if step.reduce[i] else "copy"
    return f"{step.src[i]}->{step.dst[i]} chunk {step.chunk[i]} {op}"
