"""Elaboration of a data × tensor × pipeline job: stages, schedule, prices and memory, before time zero.

:func:`build_plan` turns a validated config and its resolved hardware into a
:class:`ParallelPlan`: the placement, the (virtual) stages balanced by compute, the
schedule's op lists, and every duration the SimPy processes will need, each asked
of :class:`simulator.network.Network` or :mod:`simulator.compute` once:

- per microbatch and virtual stage: forward and backward compute (each layer's 1/T
  share, on the roofline) and the tensor-parallel all-reduces
  (:mod:`.tensor`), timed as a ring all-reduce of the tensor group on its devices;
- per stage boundary: the activation (forward) and gradient (backward) transfer,
  Megatron's scatter/gather form (Narayanan et al. 2021, §4.1): each of the T ranks
  sends its 1/T slice to its peer in the next stage, concurrently (one network
  step, so the slices share the NIC fairly), then the receivers all-gather it;
- per virtual stage: its gradient parts, the DDP buckets of its layers
  (``communication.bucket_size``; one part with ``null``), released by the chunk's last
  backward as it produces them (all after it with ``overlap: false``); plain data parallelism is the plan with
  T = P = M = 1, whose single virtual stage holds the model and whose parts are the buckets;
- per stage, chunk and part (allreduce pattern): the data-parallel gradient collectives
  across the D replicas — the T tensor-index groups of a stage run concurrently and are
  timed together, step by step, so they contend for the links they share — and their
  ZeRO variants (reduce-scatter, then parameter all-gathers); parameter servers price
  their own traffic (:mod:`simulator.engine.parameter_server`);
- per stage: the optimizer step over the device's (ZeRO-sharded) parameters, and
  the memory need (:mod:`.memory`), checked against the device.

Not modelled: contention *between* different transfers that happen to overlap in
time (two replicas' pipeline sends, two stages' gradient syncs): each is timed on
an otherwise idle network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from simulator import collectives, compression, compute
from simulator.config import Config, ConfigError
from simulator.errors import TrainsimInputError
from simulator.network import Network
from simulator.resolve import ResolvedHardware, resolve_hardware
from simulator.tuner import Choice, best_algorithm, fastest
from simulator.workloads import Layer, Model, gradient_buckets

from .memory import (
    STATE_BYTES,
    DeviceMemory,
    check_fits,
    layer_activation_bytes,
    model_state_bytes,
    recompute_working_bytes,
)
from .placement import ParallelSizes, Placement, parallel_sizes, place
from .schedules import Schedule, build_schedule, peak_in_flight
from .stages import balance
from .tensor import ALLREDUCES, check_recompute, check_tensor_parallel, message_bytes, split_layer

__all__ = ["Collective", "GradientPart", "ParallelPlan", "build_plan", "explain", "memory_summary", "stage_rows"]


@dataclass(frozen=True)
class Collective:
    """One collective of a stage's gradient stream: what, how long, and the bytes every rank sent."""

    name: str
    seconds: float
    bytes: float


@dataclass(frozen=True)
class GradientPart:
    """Gradients a device releases together during a chunk's last backward (a DDP bucket).

    ``layers`` are global layer indices in backward order; ``bytes`` the gradient bytes one
    device holds of them (its 1/T share); ``backward_s`` the backward compute per microbatch
    that produces them (recomputation included).
    """

    layers: tuple[int, ...]
    bytes: int
    backward_s: float
    values: int = 0                                  # gradient values (bytes / bytes a value)
    matrices: tuple[tuple[int, int], ...] = ()       # its layers' weight matrices, as one device holds them


@dataclass(frozen=True)
class ParallelPlan:
    """Everything the rank processes need; arrays are indexed [replica, virtual stage] or [stage, chunk].

    Plain data parallelism is the plan with T = P = M = 1: one virtual stage holding every
    layer, whose gradient parts are the buckets.
    """

    sizes: ParallelSizes
    placement: Placement
    microbatches: int
    microbatch_size: int
    chunks: int
    schedule_name: str
    ops: Schedule
    virtual: tuple[range, ...]          # layer ranges of virtual stage u = chunk·P + stage
    compute_f: np.ndarray               # [V] seconds of compute per microbatch
    compute_b: np.ndarray               # [V] (recomputation included)
    forward_layers: tuple[np.ndarray, ...]  # [V] per-layer forward seconds per microbatch (sum = compute_f)
    parts: tuple[tuple[GradientPart, ...], ...]  # [V] gradient parts in release order
    overlap: bool                       # parts released as backward produces them (else after the last backward)
    layer_bytes: np.ndarray             # [layers] gradient bytes one device holds of each layer
    tensor_f: np.ndarray                # [D, V] seconds of tensor-parallel all-reduces per microbatch
    tensor_b: np.ndarray                # [D, V]
    tensor_bytes: np.ndarray            # [V] bytes all T ranks send per microbatch, forward + backward
    gather: np.ndarray                  # [P, v] ZeRO-3 parameter all-gather before each op
    gather_bytes: np.ndarray            # [P, v]
    send_f: np.ndarray                  # [D, V-1] activation transfer u → u+1
    send_b: np.ndarray                  # [D, V-1] gradient transfer u+1 → u
    send_bytes: np.ndarray              # [V-1] bytes of one transfer (all T slices)
    grad_sync: tuple[tuple[tuple[tuple[Collective, ...], ...], ...], ...]  # [stage][chunk][part] (allreduce only)
    after_step: tuple[tuple[Collective, ...], ...]              # [stage]: ZeRO-1/2 parameter all-gathers
    optimizer_s: np.ndarray             # [P]
    memory: tuple[DeviceMemory, ...]    # [P] one device of each stage
    algorithm: str
    tensor_bytes_per_block_pass: float  # bytes one device sends per block, microbatch and pass
    auto: Choice | None                 # algorithm: auto — the candidates' seconds (or bounds, pruned)
    zero: int                           # ZeRO stage
    recompute: str                      # none | selective | full
    wire: tuple[tuple[float, float, float], ...] = ()  # [P] per device and iteration: fp32 bytes, wire bytes, codec s
    compression: str = "fp32"
    average: tuple[tuple[Collective, ...], ...] = ()   # [P] local SGD: fp32 parameter allreduces, bucket by bucket
    priority: bool = False                              # communication.priority
    algorithm_options: tuple[tuple[str, object], ...] = ()  # the ones the algorithm that ran took
    sequence_parallel: bool = False                      # parallelism.sequence_parallel

    @property
    def virtual_stages(self) -> int:
        return len(self.virtual)

    def stage_of(self, u: int) -> int:
        return u % self.sizes.pipeline

    @property
    def model_parallel(self) -> bool:
        """More than bucketed data parallelism: tensor, pipeline, microbatches, ZeRO or recompute."""
        return self.sizes.model_parallel or self.microbatches > 1 or self.zero > 0 or self.recompute != "none"


def algorithm_options(config: Config, algorithm: str) -> dict:
    """``communication.algorithm_options`` that ``algorithm`` takes (with ``auto``: the chosen one's share)."""
    takes = collectives.OPTIONS.get(("allreduce", algorithm), ())
    return {k: v for k, v in config.communication.algorithm_options.items() if k in takes}


PHASES: dict[str, dict[str, str]] = {
    "ring": {"reduce_scatter": "ring", "allgather": "ring"},
    "rabenseifner": {"reduce_scatter": "recursive_halving", "allgather": "recursive_doubling"},
    "recursive_doubling": {"allgather": "recursive_doubling"},
    "hierarchical": {"reduce_scatter": "hierarchical", "allgather": "hierarchical"},
}
"""An allreduce algorithm's own reduce-scatter and all-gather (Rabenseifner = recursive halving, then
recursive doubling; hierarchical = its two-level intra/inter phases, taking its ``inter`` / ``intra``):
what ``communication.algorithm`` runs where ZeRO or an all-gathering codec needs one."""


def phase_algorithm(algorithm: str, name: str, why: str) -> str:
    """The algorithm that runs collective ``name`` for ``communication.algorithm``; ConfigError when it has none."""
    if name == "allreduce":
        return algorithm
    alg = PHASES.get(algorithm, {}).get(name)
    if alg is None:
        having = " or ".join(a for a, phases in PHASES.items() if name in phases)
        raise ConfigError(f"communication.algorithm: {algorithm} has no {name}, and this job's gradients need one "
                          f"({why}); choose {having}")
    return alg


def _collective(network: Network, name: str, algorithm: str, nbytes: int, groups: np.ndarray,
                info: dict, memo: dict, options: dict, why: str = "") -> Collective:
    key = (name, int(nbytes), groups.tobytes())
    if key not in memo:
        ranks = groups.shape[-1]
        alg = phase_algorithm(algorithm, name, why)
        takes = collectives.OPTIONS.get((name, alg), ())
        if any(k not in takes for k in options):
            runs = f"which runs {alg}" if alg != algorithm else f"whose {alg} schedule takes {', '.join(takes)}"
            raise ConfigError(f"communication.algorithm_options: {', '.join(k for k in options if k not in takes)} "
                              f"configure(s) the {algorithm} allreduce, but this job's gradients need a {name} "
                              f"({why}), {runs}; remove them")
        try:
            sched = collectives.schedule(alg, ranks, int(nbytes), collective=name, **info, **options)
        except collectives.ScheduleError as e:
            raise ConfigError(f"communication.algorithm: {e}") from None
        try:
            seconds, sent = network.concurrent_schedule_cost(sched, groups)
        except TrainsimInputError as e:   # nvls: no reducing switch serves these devices
            raise ConfigError(f"communication.algorithm: {e}") from None
        memo[key] = Collective(name, seconds, sent)
    return memo[key]


def _sizes_and_schedule(config: Config, network: Network, model: Model) -> tuple[ParallelSizes, int, int, Schedule]:
    par = config.parallelism
    sizes = parallel_sizes(par, network.devices)
    batch, m = config.workload.batch_per_device, par.microbatches
    if batch % m:
        raise ConfigError(f"workload.batch_per_device: {batch} samples per replica do not split into "
                          f"parallelism.microbatches = {m} equal microbatches")
    check_tensor_parallel(model, sizes.tensor)
    check_recompute(model, par.recompute)
    v = par.chunks if par.schedule == "interleaved" else 1
    if sizes.pipeline * v > len(model.layers):
        raise ConfigError(f"parallelism: {sizes.pipeline} stages × {v} chunks need at least as many layers, "
                          f"but {model.name} has {len(model.layers)}")
    return sizes, batch // m, v, build_schedule(par.schedule, sizes.pipeline, m, v)


def _compute(config: Config, hw: ResolvedHardware, split: list[Layer], b: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-layer forward and backward seconds per microbatch (recomputation adds to blocks' backward:
    full, their whole forward; selective, their attention core's forward, an unfused core's s² traffic
    included)."""
    fwd = np.array([compute.layer_time(la, hw.device, b) for la in split])
    bwd = np.array([compute.layer_time(la, hw.device, b, pass_="backward") for la in split])
    mode, block = config.parallelism.recompute, np.array([la.kind == "transformer" for la in split])
    if mode == "full":
        bwd = bwd + np.where(block, fwd, 0.0)
    elif mode == "selective":
        again = np.array([compute.layer_time(la, hw.device, b, core=True) for la in split])
        bwd = bwd + np.where(block, again, 0.0)
    return fwd, bwd


def _tensor_collective(network: Network, placement: Placement, t_: int, nbytes: int, sequence_parallel: bool
                       ) -> tuple[np.ndarray, float]:
    """Seconds [D, P] of one tensor-parallel all-reduce of ``nbytes`` per group, and the bytes a rank sends.

    With sequence parallelism it is a reduce-scatter then an all-gather (Korthikanti et al. 2022, §4.2.2):
    on a ring the same bytes as the all-reduce, as two collectives.
    """
    names = ("reduce_scatter", "allgather") if sequence_parallel else ("allreduce",)
    scheds = [collectives.schedule("ring", t_, nbytes, collective=name) for name in names]
    d_, p_, _ = placement.device.shape
    one, sent = np.zeros((d_, p_)), 0.0
    for d in range(d_):
        for s in range(p_):
            costs = [network.schedule_cost(sched, placement.tensor_group(d, s)) for sched in scheds]
            one[d, s], sent = sum(c[0] for c in costs), sum(c[1] for c in costs)
    return one, sent


def _tensor_costs(network: Network, placement: Placement, model: Model, virtual: tuple[range, ...], b: int,
                  recompute: str, sequence_parallel: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Tensor-parallel all-reduce seconds [D, V] forward and backward, bytes [V], bytes per block-pass.

    Full recomputation re-runs a block's forward all-reduces in backward; selective recomputation re-runs
    only the attention core, which needs none."""
    d_, p_, t_ = placement.device.shape
    counts = np.zeros((len(virtual), 2))
    for u, layers in enumerate(virtual):
        for i in layers:
            kind = model.layers[i].kind
            fwd, bwd = ALLREDUCES.get(kind, (0, 0)) if t_ > 1 else (0, 0)
            counts[u] += (fwd, bwd + (fwd if recompute == "full" and kind == "transformer" else 0))
    if t_ == 1:
        zero = np.zeros((d_, len(virtual)))
        return zero, zero.copy(), np.zeros(len(virtual)), 0.0
    one, sent = _tensor_collective(network, placement, t_, message_bytes(model, b), sequence_parallel)
    stage = np.arange(len(virtual)) % p_
    per_block_pass = ALLREDUCES["transformer"][0] * sent / t_
    return counts[:, 0] * one[:, stage], counts[:, 1] * one[:, stage], counts.sum(axis=1) * sent, per_block_pass


def _sends(network: Network, placement: Placement, model: Model, virtual: tuple[range, ...],
           b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d_, p_, _ = placement.device.shape
    n = len(virtual) - 1
    nbytes = np.array([b * model.layers[virtual[u][-1]].activation_bytes for u in range(n)])
    fwd, bwd = np.zeros((d_, n)), np.zeros((d_, n))
    for d in range(d_):
        for u in range(n):
            a, z = placement.tensor_group(d, u % p_), placement.tensor_group(d, (u + 1) % p_)
            fwd[d, u] = network.scatter_gather_time(a, z, nbytes[u])
            bwd[d, u] = network.scatter_gather_time(z, a, nbytes[u])
    return fwd, bwd, nbytes


def _parts(split: list[Layer], bytes_per_param: int, virtual: tuple[range, ...], bwd: np.ndarray,
           bucket_bytes: float | None) -> tuple[tuple[GradientPart, ...], ...]:
    """Each virtual stage's gradient parts: DDP buckets of its layers (fusion: ``bucket_size``; one with null).

    Whether they are sent as backward produces them or after it is ``communication.overlap``: a separate knob.
    """
    out = []
    for layers in virtual:
        stage = Model("stage", tuple(split[i] for i in layers), bytes_per_param=bytes_per_param)
        buckets = gradient_buckets(stage, bucket_bytes)
        out.append(tuple(GradientPart(tuple(layers[i] for i in b.layers), int(b.bytes),
                                      float(bwd[[layers[i] for i in b.layers]].sum()),
                                      sum(stage.layers[i].params for i in b.layers),
                                      tuple(mat for i in b.layers for mat in stage.layers[i].matrices))
                         for b in buckets))
    return tuple(out)


def _data_parallel(config: Config, network: Network, placement: Placement, algorithm: str,
                   parts: tuple[tuple[GradientPart, ...], ...], chunk_params: np.ndarray, device,
                   priced: dict[tuple[str, int], Collective] | None = None):
    """Per stage, chunk and part: gradient collectives; per stage: after-step gathers; ZeRO-3 gathers [P, v].

    ``priced``: collectives ``auto``'s tuner already simulated on stage 0's data-parallel group
    (``_algorithm``), taken as they are where the job runs that group alone.

    Parameter servers carry the data-parallel traffic themselves: then there are no collectives. A
    compressed part is its encoding's collectives between the compression and the decompression
    (:mod:`simulator.compression`), on the stream like the collectives.
    """
    zero = config.parallelism.zero
    weight_bytes = STATE_BYTES[config.workload.precision].params   # what a ZeRO all-gather carries per parameter
    p_, v = chunk_params.shape
    gather, gather_bytes = np.zeros((p_, v)), np.zeros((p_, v))
    if config.communication.pattern != "allreduce":
        return tuple(tuple(tuple(() for _ in parts[c * p_ + s]) for c in range(v)) for s in range(p_)), \
            tuple(() for _ in range(p_)), gather, gather_bytes
    sync, after, memo = [], [], {}
    options = algorithm_options(config, algorithm)
    why = f"parallelism.zero: {zero}"
    for s in range(p_):
        groups = placement.device[:, s, :].T                   # [T, D]: one data-parallel group per tensor index
        info = {"devices_per_node": placement.devices_per_node_in(groups[0])}
        if priced and s == 0 and len(groups) == 1:    # the very schedules, on the group the tuner timed
            memo.update({(name, n, groups.tobytes()): c for (name, n), c in priced.items()})
        per_chunk, post = [], []
        for c in range(v):
            if zero == 0:
                per_chunk.append(tuple(_encoded(config, network, algorithm, part, groups, info, memo, device)
                                       for part in parts[c * p_ + s]))
            else:
                per_chunk.append(tuple((_collective(network, "reduce_scatter", algorithm, part.bytes, groups, info,
                                                    memo, options, why),) for part in parts[c * p_ + s]))
            if zero == 0:
                continue
            ag = _collective(network, "allgather", algorithm, int(chunk_params[s, c] * weight_bytes), groups, info,
                             memo, options, why)
            if zero == 3:
                gather[s, c], gather_bytes[s, c] = ag.seconds, ag.bytes
            else:
                post.append(ag)
        sync.append(tuple(per_chunk))
        after.append(tuple(post))
    return tuple(sync), tuple(after), gather, gather_bytes


def _encoded(config: Config, network: Network, algorithm: str, part: GradientPart, groups: np.ndarray, info: dict,
             memo: dict, device) -> tuple[Collective, ...]:
    """A gradient part's sync: compress, the encoding's collectives, decompress (plain fp32/fp16: one allreduce)."""
    spec, piece = config.communication.compression, config.communication.partition
    enc = compression.encode(spec, part.values, part.matrices, groups.shape[-1])
    colls = []
    for name, size in enc.collectives:       # communication.partition: equal pieces the stream may reorder
        k = max(1, -(-int(size) // int(piece))) if piece else 1
        colls += [_collective(network, name, algorithm, -(-int(size) // k), groups, info, memo,
                              algorithm_options(config, algorithm),
                              f"communication.compression.method: {spec.method}")] * k
    colls = tuple(colls)
    if spec.method in compression.INPLACE:
        return colls
    squeeze, expand = compression.costs(spec, part.values, part.matrices, groups.shape[-1], device)
    return (Collective(f"compress {spec.method}", squeeze, 0.0), *colls,
            Collective(f"decompress {spec.method}", expand, 0.0))


def _averaging(config: Config, network: Network, placement: Placement, algorithm: str,
               parts: tuple[tuple[GradientPart, ...], ...], p_: int, v: int) -> tuple[tuple[Collective, ...], ...]:
    """``sync.mode: local_sgd``: per stage, the allreduces that average its parameters (fp32, per bucket)."""
    if config.sync.mode != "local_sgd":
        return ()
    out, memo = [], {}
    for s in range(p_):
        groups = placement.device[:, s, :].T
        info = {"devices_per_node": placement.devices_per_node_in(groups[0])}
        out.append(tuple(_collective(network, "allreduce", algorithm, 4 * part.values, groups, info, memo,
                                     algorithm_options(config, algorithm))
                         for c in range(v) for part in parts[c * p_ + s]))
    return tuple(out)


def _wire(config: Config, parts: tuple[tuple[GradientPart, ...], ...], sync: tuple, p_: int, v: int
          ) -> tuple[tuple[float, float, float], ...]:
    """Per stage: the fp32 gradient bytes a device syncs per iteration, the bytes it puts in instead, codec seconds."""
    spec, out = config.communication.compression, []
    for s in range(p_):
        stage_parts = [(c, b, part) for c in range(v) for b, part in enumerate(parts[c * p_ + s])]
        raw = sum(4.0 * part.values for _, _, part in stage_parts)
        if config.communication.pattern == "allreduce" and config.parallelism.zero == 0:
            wire = sum(compression.encode(spec, part.values, part.matrices, 1).wire_bytes for *_, part in stage_parts)
            codec = sum(coll.seconds for c, b, _ in stage_parts for coll in sync[s][c][b]
                        if coll.name.startswith(("compress", "decompress")))
        else:
            wire, codec = float(sum(part.bytes for *_, part in stage_parts)), 0.0
        out.append((raw, float(wire), float(codec)))
    return tuple(out)


def _memory(config: Config, hw: ResolvedHardware, placement: Placement, virtual: tuple[range, ...],
            ops: Schedule, b: int, stage_params: np.ndarray) -> tuple[DeviceMemory, ...]:
    par, model = config.parallelism, hw.model
    d_, p_, t_ = placement.device.shape
    out = []
    for s in range(p_):
        chunks = [virtual[u] for u in range(s, len(virtual), p_)]
        sp = par.sequence_parallel
        per_chunk = [b * sum(layer_activation_bytes(model.layers[i], model, t_, par.recompute, sp) for i in r)
                     for r in chunks]
        acts = peak_in_flight(ops[s], per_chunk)
        acts += b * recompute_working_bytes([model.layers[i] for r in chunks for i in r], model, t_,
                                            par.recompute, sp)
        states = model_state_bytes(stage_params[s], par.zero, d_, model.precision)
        out.append(DeviceMemory(int(placement.device[0, s, 0]), s, float(stage_params[s]), states, acts,
                                peak_in_flight(ops[s])))
    return tuple(out)


def _check_memory(memory: tuple[DeviceMemory, ...], hw: ResolvedHardware, config: Config, model_parallel: bool
                  ) -> None:
    worst = max(memory, key=lambda m: m.total)
    par = config.parallelism
    if not model_parallel:  # plain data parallelism: say it in its own terms
        worst = dataclasses.replace(worst, device=0, stage=None, in_flight=1)
        check_fits(worst, hw.device, "workload", f"{hw.model.name} with batch {config.workload.batch_per_device}")
        return
    what = f"{hw.model.name} ({par.schedule}, {par.microbatches} microbatches, ZeRO-{par.zero})"
    hint = "" if par.recompute == "full" else \
        "; try parallelism.recompute: full (or selective), more stages, ZeRO or fewer microbatches"
    check_fits(worst, hw.device, "parallelism", what, hint)


def _algorithm(config: Config, network: Network, placement: Placement, parts: tuple[tuple[GradientPart, ...], ...]
               ) -> tuple[str, Choice | None, dict[tuple[str, int], Collective]]:
    """The configured algorithm; ``auto`` is timed on stage 0's data-parallel group over its parts.

    Also what the tuner priced of the chosen allreduce on that group: ``(collective, bytes) -> Collective``
    (``_data_parallel`` takes those prices instead of simulating them again; none with ZeRO or an
    all-gathering codec, whose phases ``_collective`` prices and checks).
    """
    algorithm = config.communication.algorithm
    if algorithm != "auto":
        return algorithm, None, {}
    group = placement.data_group(0, 0)
    sizes = [part.bytes for u in range(0, len(parts), placement.sizes.pipeline) for part in parts[u]]
    info = {"devices_per_node": placement.devices_per_node_in(group)}
    phases = _phases_needed(config)
    if not phases:
        choice = best_algorithm(network, len(group), sizes, placement=group,
                                options=config.communication.algorithm_options, **info)
        runs = [("allreduce", n) for n in sizes]
    else:
        candidates = {}   # ZeRO / an all-gathering codec: the candidates that have those phases, timed on them
        for name, own in PHASES.items():
            if phases <= own.keys():
                options = algorithm_options(config, name)
                try:
                    candidates[name] = [(collectives.schedule(own[ph], len(group), n, collective=ph, **info,
                                                              **options), group)
                                        for n in sizes for ph in sorted(phases)]
                except collectives.ScheduleError:
                    continue  # cannot run on this node structure / with these options (as best_algorithm)
        choice = fastest(network, candidates)
        runs = []   # a phase's collective may refuse options the allreduce takes: the plan prices (and checks) it
    if getattr(config.cluster.topology, "reduction", None) is not None and "nvls" not in {**choice.seconds,
                                                                                          **choice.pruned}:
        why = (f"this job's gradients need a {' and a '.join(sorted(phases))}" if phases
               else "no switch reduces for a whole data-parallel group")
        raise ConfigError(f"cluster.topology.reduction: auto cannot use the in-switch (nvls) allreduce here ({why}); "
                          "remove it")
    priced: dict[tuple[str, int], Collective] = {}
    for (name, n), (seconds, sent) in zip(runs, choice.priced[: len(runs)], strict=True):
        priced.setdefault((name, int(n)), Collective(name, seconds, sent))
    return choice.algorithm, choice, priced


def _phases_needed(config: Config) -> set[str]:
    """The collectives other than allreduce that this job's gradients run (ZeRO, all-gathering codecs)."""
    needed = {"reduce_scatter", "allgather"} if config.parallelism.zero else set()
    if config.communication.pattern == "allreduce" and config.parallelism.zero == 0:
        needed |= {name for name, _ in compression.encode(config.communication.compression, 1, (), 2).collectives}
    return needed - {"allreduce"}


def build_plan(config: Config, hw: ResolvedHardware, network: Network, *, check: bool = True) -> ParallelPlan:
    """Elaborate the job; ``ConfigError`` for anything that cannot run (including a model that does not fit)."""
    model, par, comm = hw.model, config.parallelism, config.communication
    sizes, b, v, ops = _sizes_and_schedule(config, network, model)
    placement = place(sizes, par.order, hw.graph)
    t_, p_ = sizes.tensor, sizes.pipeline
    split = [split_layer(la, t_, par.sequence_parallel) for la in model.layers]
    fwd, bwd = _compute(config, hw, split, b)
    virtual = balance(fwd + bwd, p_ * v)
    compute_f = np.array([fwd[list(r)].sum() for r in virtual])
    compute_b = np.array([bwd[list(r)].sum() for r in virtual])
    parts = _parts(split, model.bytes_per_param, virtual, bwd, comm.bucket_size)
    tensor_f, tensor_b, tensor_bytes, per_block = _tensor_costs(network, placement, model, virtual, b, par.recompute,
                                                                par.sequence_parallel)
    send_f, send_b, send_bytes = _sends(network, placement, model, virtual, b)
    params = np.array([sum(split[i].params for i in r) for r in virtual], dtype=float)
    chunk_params = params.reshape(v, p_).T                      # [stage, chunk]
    algorithm, auto, priced = _algorithm(config, network, placement, parts)
    sync, after, gather, gather_bytes = _data_parallel(config, network, placement, algorithm, parts, chunk_params,
                                                       hw.device, priced)
    zero_shards = sizes.data if par.zero else 1
    optimizer = np.array([compute.step_time(Model("stage", tuple(split[i] for u in range(s, p_ * v, p_)
                                                                  for i in virtual[u])), hw.device)
                          for s in range(p_)]) / zero_shards
    memory = _memory(config, hw, placement, virtual, ops, b, chunk_params.sum(axis=1))
    model_parallel = sizes.model_parallel or par.microbatches > 1 or par.zero > 0 or par.recompute != "none"
    if check:
        _check_memory(memory, hw, config, model_parallel)
    layer_bytes = np.array([la.params * model.bytes_per_param for la in split], dtype=float)
    wire = _wire(config, parts, sync, p_, v)
    average = _averaging(config, network, placement, algorithm, parts, p_, v)
    return ParallelPlan(sizes, placement, par.microbatches, b, v, par.schedule, ops, virtual, compute_f, compute_b,
                        tuple(fwd[list(r)] for r in virtual), parts, comm.overlap, layer_bytes, tensor_f, tensor_b,
                        tensor_bytes, gather, gather_bytes, send_f, send_b, send_bytes, sync, after, optimizer,
                        memory, algorithm, per_block, auto, par.zero, par.recompute, wire,
                        comm.compression.method, average, comm.priority,
                        tuple(sorted(algorithm_options(config, algorithm).items())), par.sequence_parallel)


def memory_summary(plan: ParallelPlan, device) -> dict[str, float]:
    """The fullest device's need and the device's capacity, bytes."""
    worst = max(plan.memory, key=lambda m: m.total)
    return {"memory_per_device_bytes": float(worst.total), "memory_capacity_bytes": device.memory_bytes}


def stage_rows(plan: ParallelPlan, model: Model) -> list[dict]:
    """One row per virtual stage: its layers, where replica 0 runs it, its prices and its stage's memory."""
    p_ = plan.sizes.pipeline
    rows = []
    for u, layers in enumerate(plan.virtual):
        s = u % p_
        mem = plan.memory[s]
        first, last = model.layers[layers[0]].name, model.layers[layers[-1]].name
        rows.append({"stage": s, "chunk": u // p_, "layers": first if first == last else f"{first}..{last}",
                     "n_layers": len(layers), "devices": plan.placement.tensor_group(0, s).tolist(),
                     "forward_s": float(plan.compute_f[u] + plan.tensor_f[0, u]),
                     "backward_s": float(plan.compute_b[u] + plan.tensor_b[0, u]),
                     "params_per_device": mem.params, "memory_bytes": float(mem.total),
                     "in_flight": mem.in_flight})
    return rows


def explain(config: Config) -> dict:
    """What ``trainsim run --explain-placement`` shows: the mapping, the groups and the stages (nothing simulated)."""
    hw = resolve_hardware(config)
    network = Network(hw.graph, config.network.model, gamma=hw.gamma, profile=getattr(hw, "profile", None),
                      launch_latency=config.communication.launch_latency)
    plan = build_plan(config, hw, network, check=False)
    return {**plan.placement.describe(), "model": hw.model.name, "device": hw.device.name,
            "memory_capacity_bytes": hw.device.memory_bytes, "stages": stage_rows(plan, hw.model)}
