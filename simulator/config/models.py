"""What a trainsim YAML file may say: frozen pydantic models with units and defaults.

Defaults live only here, on the fields (never ``cfg.get(key, default)`` in engine
code). Every quantity is SI after validation: bytes, seconds, bytes/s, FLOP/s.
Unknown keys are rejected (``extra="forbid"``); the topology is a tagged union on
``kind`` so a misspelt kind lists the valid ones.
"""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from topologies.link_classes import CLASSES as LINK_CLASSES
from topologies.units import UnitError, parse

from .units import Bandwidth, ByteSize, Duration, FlopCount, FlopRate

__all__ = [
    "Cluster", "Communication", "Config", "Convergence", "DeviceShare", "DeviceSpec", "EfficiencySpec", "LayerSpec",
    "Link", "Network", "Output",
    "Checkpoint", "Compression", "FailureLaw", "Faults", "LinkFailures", "Parallelism", "Recovery", "ScheduledFault",
    "Stragglers",
    "Sync", "TopologySpec", "Training", "Workload",
]


def _admits_bool(annotation: Any) -> bool:
    """Does a field's type accept true/false as such (not as the number 1/0 pydantic would make of it)?"""
    if annotation is bool or annotation is Any:
        return True
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return any(_admits_bool(a) for a in typing.get_args(annotation))


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: Any) -> Any:
        """YAML reads ``no``/``off``/``yes``/``on`` as booleans; a number field must not take one as 0 or 1."""
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key) if isinstance(value, bool) else None
                if field is not None and not _admits_bool(field.annotation):
                    raise ValueError(f"{key}: expected a number or text, not {str(value).lower()} (YAML reads yes, no, "
                                     "on and off as true/false; quote them for text)")
        return data


class _LinkClass(StrictModel):
    """A link's class and its overrides (``topologies.link_classes``); all unset: line rate, no software latency."""

    model_config = ConfigDict(serialize_by_alias=True)

    link_class: Literal[tuple(LINK_CLASSES)] | None = Field(  # type: ignore[valid-type]
        None, alias="class", description="nvlink, pcie, infiniband_ndr/hdr/edr, roce, tcp or generic: its defaults")
    efficiency: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None, description="achievable fraction of bandwidth; null: the class's (1.0 without a class)")
    software_latency: Duration | None = Field(
        None, description="seconds a message pays once; null: the class's (0 without a class)")

    def edge_attrs(self) -> tuple[str | None, float | None, float | None]:
        return self.link_class, self.efficiency, self.software_latency


class Link(_LinkClass):
    bandwidth: Bandwidth = Field(description="per direction, e.g. 100Gbps or 25GB/s")
    latency: Duration = Field(0.0, description="per hop, e.g. 1us")


# --- topologies: one model per family in topologies.KINDS --------------------------

MAX_DEVICES = 2**17            # devices a topology may have here (a 16k-GPU job is 2^14; 2^17 takes minutes)
_Count = Annotated[int, Field(ge=1, le=MAX_DEVICES)]


def _at_most(what: str, n: int) -> None:
    if n > MAX_DEVICES:
        raise ValueError(f"{what} = {n:,} devices; at most {MAX_DEVICES:,} (2^17) are simulated here")


class _Flat(StrictModel):
    link: Link

    def build_params(self) -> dict[str, Any]:
        params = self.model_dump(exclude={"kind", "link"})
        return {**params, "bandwidth": self.link.bandwidth, "latency": self.link.latency}


class Ring(_Flat):
    kind: Literal["ring"]
    devices: Annotated[int, Field(ge=2, le=MAX_DEVICES)]

    def build_params(self) -> dict[str, Any]:
        return {"n": self.devices, "bandwidth": self.link.bandwidth, "latency": self.link.latency}


class Reduction(StrictModel):
    """The switch reduces in the network (NVLS / SHARP): the ``nvls`` allreduce runs there."""

    efficiency: Annotated[float, Field(gt=0, le=1)] = Field(
        1.0, description="fraction of its ports' rate the reducing switch reaches (H100 NVSwitch: 0.85)")


class Switch(Ring):
    kind: Literal["switch"]  # type: ignore[assignment]
    reduction: Reduction | None = Field(None, description="the switch reduces (NVLS / SHARP); null: it does not")

    def build_params(self) -> dict[str, Any]:
        extra = {"reduce_efficiency": self.reduction.efficiency} if self.reduction is not None else {}
        return {**super().build_params(), **extra}


class Torus(_Flat):
    kind: Literal["torus"]
    dims: Annotated[tuple[Annotated[int, Field(ge=2, le=MAX_DEVICES)], ...], Field(min_length=1, max_length=3)]

    @model_validator(mode="after")
    def _size(self) -> Torus:
        _at_most("the product of dims", math.prod(self.dims))
        return self


class FatTree(_Flat):
    kind: Literal["fat_tree"]
    k: Annotated[int, Field(ge=2, le=160, multiple_of=2)] = Field(description="k³/4 hosts; k ≤ 160")
    oversubscription: Annotated[float, Field(ge=1.0, le=1e6)] = 1.0


class LeafSpine(_Flat):
    kind: Literal["leaf_spine"]
    leaves: _Count
    spines: _Count
    hosts_per_leaf: _Count
    uplink_bandwidth: Bandwidth | None = None

    @model_validator(mode="after")
    def _size(self) -> LeafSpine:
        _at_most("leaves x hosts_per_leaf", self.leaves * self.hosts_per_leaf)
        _at_most("leaves x spines (links)", self.leaves * self.spines)
        return self


class InterFabric(_LinkClass):
    kind: Literal["switch", "leaf_spine", "fat_tree"] = "leaf_spine"
    bandwidth: Bandwidth
    latency: Duration = 0.0
    oversubscription: Annotated[float, Field(ge=1.0, le=1e6)] = 1.0
    hosts_per_leaf: _Count | None = None
    spines: _Count | None = None
    k: Annotated[int, Field(ge=2, le=160, multiple_of=2)] | None = None


class Hierarchical(StrictModel):
    kind: Literal["hierarchical"]
    nodes: _Count
    devices_per_node: Annotated[int, Field(ge=1, le=4096)]
    intra: Link
    inter: InterFabric
    nics_per_node: Annotated[int, Field(ge=1, le=4096)] = 1
    reduction: Reduction | None = Field(None, description="every intra-node switch reduces (NVLS); null: none does")

    @model_validator(mode="after")
    def _size(self) -> Hierarchical:
        _at_most("nodes x devices_per_node", self.nodes * self.devices_per_node)
        return self

    def build_params(self) -> dict[str, Any]:
        inter = self.inter.model_dump(exclude={"kind", "bandwidth", "latency", "link_class", "efficiency",
                                               "software_latency"}, exclude_none=True, by_alias=False)
        if inter.get("oversubscription") == 1.0:
            del inter["oversubscription"]  # the default; not every fabric takes the parameter
        return {
            "nodes": self.nodes, "devices_per_node": self.devices_per_node,
            "intra_bandwidth": self.intra.bandwidth, "intra_latency": self.intra.latency,
            "inter_bandwidth": self.inter.bandwidth, "inter_latency": self.inter.latency,
            "inter_kind": self.inter.kind, "nics_per_node": self.nics_per_node, **inter,
            **({"intra_reduce_efficiency": self.reduction.efficiency} if self.reduction is not None else {}),
        }


class FromFile(StrictModel):
    kind: Literal["file"]
    path: Path


TopologySpec = Annotated[
    Ring | Switch | Torus | FatTree | LeafSpine | Hierarchical | FromFile,
    Field(discriminator="kind"),
]


# --- hardware and workload ---------------------------------------------------------


_Fraction = Annotated[float, Field(gt=0, le=1)]


class EfficiencySpec(StrictModel):
    """Per-kind shares of the roofline (``simulator.devices.Efficiency``); a kind left out keeps the device's."""

    gemm: _Fraction | None = Field(None, description="matrix products: linear layers, convolutions, projections")
    attention: _Fraction | None = Field(None, description="the attention core (scores, softmax, context)")
    elementwise: _Fraction | None = Field(None, description="memory-bound work, as a share of memory bandwidth")
    embedding: _Fraction | None = Field(None, description="embedding gathers")

    def given(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class DeviceSpec(StrictModel):
    """A catalog device with overrides, or a custom one (all four numbers given)."""

    name: str = "custom"
    kind: Literal["cpu", "gpu", "tpu"] | None = None
    peak_flops: FlopRate | None = None
    memory_bandwidth: Bandwidth | None = None
    memory: ByteSize | None = None
    fp32_flops: FlopRate | None = Field(None, description="dense fp32 peak (workload.precision: fp32)")
    tf32_flops: FlopRate | None = Field(None, description="dense TF32 tensor-core peak (workload.precision: tf32)")
    efficiency: _Fraction | EfficiencySpec | None = Field(
        None, description="share of the roofline: a number (every kind) or {gemm, attention, elementwise, embedding}")


LAYER_KINDS = ("gemm", "attention", "elementwise", "embedding", "transformer_block")


class LayerSpec(StrictModel):
    """One layer of a custom model: its numbers, or (``kind: transformer_block``) a block's shape."""

    name: str
    kind: Literal[LAYER_KINDS] = Field(  # type: ignore[valid-type]
        "gemm", description="gemm | attention | elementwise | embedding | transformer_block")
    params: Annotated[int, Field(ge=0)] | None = Field(None, description="required unless transformer_block")
    forward_flops: FlopCount | None = Field(None, description="per sample; required unless transformer_block")
    activation_bytes: ByteSize = 0.0
    memory_bytes: ByteSize = Field(0.0, description="activation bytes read + written per sample; 0: 2 x activation")
    matrices: tuple[tuple[PositiveInt, PositiveInt], ...] = Field(
        (), description="its weight matrices (rows, cols), for PowerSGD; the rest of params are vectors")
    hidden: PositiveInt | None = Field(None, description="transformer_block: hidden size h")
    heads: PositiveInt | None = Field(None, description="transformer_block: attention heads a")
    seq_len: PositiveInt | None = Field(None, description="transformer_block: sequence length s")

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> LayerSpec:
        shape = {k: getattr(self, k) for k in ("hidden", "heads", "seq_len")}
        if self.kind == "transformer_block":
            missing = [k for k, v in shape.items() if v is None]
            if missing:
                raise ValueError(f"kind: transformer_block needs {', '.join(missing)} (its shape: hidden, heads, "
                                 "seq_len)")
            numbers = [k for k in ("params", "forward_flops", "activation_bytes", "memory_bytes", "matrices")
                       if k in self.model_fields_set]
            if numbers:
                raise ValueError(f"{numbers[0]}: a transformer_block's numbers come from its shape (hidden, heads, "
                                 "seq_len); remove it")
            if self.hidden % self.heads:  # type: ignore[operator]
                raise ValueError(f"heads: {self.heads} heads must divide hidden {self.hidden}")
            return self
        given = [k for k, v in shape.items() if v is not None]
        if given:
            raise ValueError(f"{given[0]}: applies to kind: transformer_block only (kind is {self.kind})")
        for key in ("params", "forward_flops"):
            if getattr(self, key) is None:
                raise ValueError(f"{key}: required, but missing (a {self.kind} layer gives params and forward_flops)")
        inside = sum(m * n for m, n in self.matrices)
        if inside > self.params:  # type: ignore[operator]
            raise ValueError(f"matrices hold {inside} values, more than the layer's {self.params} params")
        return self


class CustomModel(StrictModel):
    name: str = "custom"
    layers: Annotated[tuple[LayerSpec, ...], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _a_bare_list(cls, value: Any) -> Any:
        """``model: [layer, ...]`` is a layer list too (DESIGN.md: "preset, or a layer list")."""
        return {"layers": value} if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _blocks_agree(self) -> CustomModel:
        shapes = {(la.hidden, la.seq_len) for la in self.layers if la.kind == "transformer_block"}
        if len(shapes) > 1:
            raise ValueError("layers: every transformer_block of a model needs the same hidden and seq_len (the "
                             f"tensor-parallel messages are s·h), got {sorted(shapes)}")
        heads = {la.heads for la in self.layers if la.kind == "transformer_block"}
        if len(heads) > 1:
            raise ValueError(f"layers: every transformer_block of a model needs the same heads, got {sorted(heads)}")
        return self


class Cluster(StrictModel):
    topology: TopologySpec
    device: str | DeviceSpec = "a100"
    profile: Path | None = None


class Workload(StrictModel):
    model: StrictStr | CustomModel = Field(
        "resnet50", description="a preset name, {name, layers: [...]}, or a bare list of layers")
    batch_per_device: PositiveInt = 32
    attention: Literal["fused", "unfused"] = Field(
        "fused", description="transformer blocks' attention core: fused (FlashAttention-style, the scores stay on "
                             "chip) or unfused (pre-2022 Megatron-LM: the a·s² scores through memory)")
    precision: Literal["mixed", "fp32", "tf32"] = Field(
        "mixed", description="training precision: mixed (fp16/bf16 activations and weights, fp32 master weights; "
                             "the device's 16-bit peak), fp32 (4-byte values, the fp32 peak) or tf32 (4-byte "
                             "values, the TF32 tensor-core peak)")
    convolution: Literal["direct", "winograd_2x2", "winograd_4x4"] = Field(
        "direct", description="3x3 stride-1 convolutions: direct (implicit GEMM) or Winograd F(2x2, 3x3) / F(4x4, 3x3) "
                              "(Lavin & Gray 2016: 2.25x / 4x fewer multiplies, transforms through memory)")

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, value: Any) -> Any:
        if isinstance(value, dict) and "gradient_bytes_per_param" in value:
            raise ValueError("gradient_bytes_per_param moved to communication.compression: fp32 (4 bytes), "
                             "fp16 or bf16 (2 bytes)")
        if isinstance(value, dict) and not isinstance(value.get("model", ""), str | dict | list | tuple):
            raise ValueError(f"model: expected a preset name (e.g. resnet50), a mapping {{name, layers: [...]}} or a "
                             f"list of layers, got {value['model']!r}")
        return value


class Parallelism(StrictModel):
    """data × tensor × pipeline devices (see docs/config.md for the device-count rule)."""

    data: PositiveInt | None = Field(None, description="data-parallel replicas; null = devices / (tensor × pipeline)")
    tensor: PositiveInt = Field(1, description="Megatron-style tensor-parallel group size")
    pipeline: PositiveInt = Field(1, description="pipeline stages")
    microbatches: PositiveInt = Field(1, description="microbatches per replica per iteration")
    schedule: Literal["gpipe", "1f1b", "interleaved"] = "1f1b"
    chunks: PositiveInt = Field(1, description="interleaved only: model chunks per stage (v)")
    order: tuple[Literal["tensor", "pipeline", "data"], ...] = Field(
        ("tensor", "pipeline", "data"), description="placement, fastest-varying first")
    zero: Literal[0, 1, 2, 3] = Field(0, description="ZeRO stage of the data-parallel sharding")
    recompute: Literal["none", "selective", "full"] | bool = Field(
        "none", description="activation recomputation of transformer blocks: none, selective (the attention core, "
                            "Korthikanti et al. 2022) or full; true means full, false none")
    sequence_parallel: bool = Field(False, description="Korthikanti et al. 2022: split the blocks' elementwise "
                                                       "work and activations along the sequence (needs tensor > 1)")

    @field_validator("recompute", mode="after")
    @classmethod
    def _recompute_word(cls, value: str | bool) -> str:
        return {True: "full", False: "none"}.get(value, value) if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _consistent(self) -> Parallelism:
        if sorted(self.order) != ["data", "pipeline", "tensor"]:
            raise ValueError(f"order must name tensor, pipeline and data once each, got {list(self.order)}")
        if self.chunks > 1 and (self.schedule != "interleaved" or self.pipeline < 2):
            raise ValueError(f"chunks ({self.chunks}) applies to schedule interleaved with pipeline >= 2 only")
        if self.schedule == "interleaved" and self.microbatches % self.pipeline:
            raise ValueError(f"schedule interleaved needs microbatches ({self.microbatches}) "
                             f"to be a multiple of pipeline ({self.pipeline})")
        if self.zero >= 2 and self.pipeline > 1:
            raise ValueError(f"zero {self.zero} shards gradients per microbatch and does not combine with "
                             f"pipeline > 1 (as in DeepSpeed); use zero 0 or 1")
        if self.sequence_parallel and self.tensor == 1:
            raise ValueError("sequence_parallel: splits the work of a tensor-parallel group along the sequence; it "
                             "needs tensor > 1 (tensor is 1)")
        return self


class Compression(StrictModel):
    """Gradient precision or compression (simulator/compression.py); a bare name means its defaults."""

    method: Literal["fp32", "fp16", "bf16", "qsgd", "topk", "powersgd"] = "fp32"
    bits: Annotated[int, Field(ge=2, le=16)] | None = Field(None, description="qsgd: bits a value (default 8)")
    ratio: Annotated[float, Field(gt=0, le=1)] | None = Field(None, description="topk: share kept (default 0.01)")
    rank: PositiveInt | None = Field(None, description="powersgd: rank r (default 4)")
    error_feedback: bool | None = Field(None, description="keep the residual for the next step (topk, powersgd, "
                                                          "qsgd; default on for topk and powersgd)")

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"method": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _keys_match_method(self) -> Compression:
        own = {"bits": "qsgd", "ratio": "topk", "rank": "powersgd"}
        for key, method in own.items():
            if getattr(self, key) is not None and self.method != method:
                raise ValueError(f"{key} applies to method {method} only (method is {self.method})")
        if self.error_feedback is not None and self.method in ("fp32", "fp16", "bf16"):
            raise ValueError(f"error_feedback applies to qsgd, topk and powersgd (method is {self.method})")
        defaults = {"qsgd": {"bits": 8, "error_feedback": False}, "topk": {"ratio": 0.01, "error_feedback": True},
                    "powersgd": {"rank": 4, "error_feedback": True}}.get(self.method, {})
        for key, value in defaults.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        return self


class Communication(StrictModel):
    pattern: Literal["allreduce", "parameter_server"] = "allreduce"
    algorithm: str = "ring"
    algorithm_options: dict[str, StrictInt | StrictStr] = Field(
        {}, description="the algorithm's builder options, e.g. {pipeline_chunks: 16} (double_binary_tree)")
    bucket_size: ByteSize | None = Field(25 * 2**20, description="gradient fusion; null: one bucket for everything")
    overlap: bool = True
    compression: Compression = Field(Compression(), description="fp32 | fp16 | bf16 | qsgd | topk | powersgd")
    priority: bool = Field(False, description="allreduce: sync parts in the order the next forward needs them")
    partition: ByteSize | None = Field(None, description="priority only: pieces a part is cut into (ByteScheduler)")
    servers: PositiveInt = Field(1, description="parameter_server only: number of server processes")
    server_placement: Literal["dedicated", "colocated"] = "dedicated"
    sharding: Literal["even", "layer"] = "even"
    server_device: str | DeviceSpec | None = Field(None, description="dedicated servers' device; null = cpu")
    launch_latency: Duration = Field(0.0, description="seconds each collective pays once (NCCL: 8.4us)")


class Sync(StrictModel):
    mode: Literal["bsp", "asp", "ssp", "local_sgd"] = "bsp"
    staleness: Annotated[int, Field(ge=0)] = Field(0, description="ssp only: the bound s, in iterations")
    backup_workers: Annotated[int, Field(ge=0)] = Field(0, description="bsp only: updates use the first p-b")
    period: PositiveInt = Field(1, description="local_sgd only: H local steps between parameter averagings")
    post_local_after: Annotated[int, Field(ge=0)] = Field(
        0, description="local_sgd only: BSP (gradient allreduce) for this many iterations first")

    @model_validator(mode="after")
    def _keys_match_mode(self) -> Sync:
        if self.staleness and self.mode != "ssp":
            raise ValueError(f"staleness applies to mode ssp only (mode is {self.mode})")
        if self.backup_workers and self.mode != "bsp":
            raise ValueError(f"backup_workers applies to mode bsp only (mode is {self.mode})")
        for key in ("period", "post_local_after"):
            if key in self.model_fields_set and self.mode != "local_sgd":
                raise ValueError(f"{key} applies to mode local_sgd only (mode is {self.mode})")
        return self


class DeviceShare(StrictModel):
    device: str | DeviceSpec
    fraction: Annotated[float, Field(gt=0, le=1)]


class Stragglers(StrictModel):
    distribution: Literal["none", "lognormal", "normal", "exponential"] = "none"
    sigma: Annotated[float, Field(ge=0, le=10)] = Field(0.0, description="spread of the noise (at most 10)")
    slow_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0
    slowdown: Annotated[float, Field(ge=1, le=1e6)] = 1.0
    heterogeneity: tuple[DeviceShare, ...] = Field((), description="fractions of workers on other devices")

    @model_validator(mode="after")
    def _fractions_fit(self) -> Stragglers:
        total = sum(share.fraction for share in self.heterogeneity)
        if total > 1 + 1e-9:
            raise ValueError(f"heterogeneity fractions add up to {total:g}, more than 1")
        return self


class Convergence(StrictModel):
    """A real learning problem trained inside the simulation (numpy, seeded)."""

    problem: Literal["logistic_regression", "softmax", "mlp"] = "logistic_regression"
    features: Annotated[int, Field(ge=1, le=10**5)] = 32
    classes: Annotated[int, Field(ge=2, le=10**4)] = 2
    hidden: Annotated[int, Field(ge=1, le=10**4)] = 32
    samples: Annotated[int, Field(ge=1, le=10**7)] = 8192
    batch: PositiveInt | None = Field(None, description="SGD batch per worker; null = workload.batch_per_device")
    lr: Annotated[float, Field(gt=0)] = 0.5
    label_noise: Annotated[float, Field(ge=0, lt=0.5)] = 0.05
    target_loss: Annotated[float, Field(gt=0)] | None = None
    eval_every: PositiveInt = Field(1, description="evaluate the loss every this many iterations' worth of updates")

    @model_validator(mode="after")
    def _classes_match_problem(self) -> Convergence:
        if self.problem == "logistic_regression" and self.classes != 2:
            raise ValueError(f"logistic_regression is binary: classes must be 2 (got {self.classes})")
        if self.samples * self.features > 5 * 10**7:
            raise ValueError(f"samples x features = {self.samples * self.features:,} values; at most 5e7 "
                             "(400 MB of data) here")
        return self


class FailureLaw(StrictModel):
    """Time to failure of each component of one class, drawn afresh for every new or repaired part."""

    distribution: Literal["exponential", "weibull"] = "exponential"
    mtbf: Duration | None = Field(None, description="exponential: mean time between failures of one component")
    shape: Annotated[float, Field(gt=0)] | None = Field(None, description="weibull: k (< 1: infant mortality)")
    scale: Duration | None = Field(None, description="weibull: lambda, e.g. 35000h")

    @model_validator(mode="after")
    def _parameters_match_distribution(self) -> FailureLaw:
        if self.distribution == "exponential":
            if self.mtbf is None or self.mtbf <= 0:
                raise ValueError("an exponential time to failure needs mtbf > 0, e.g. mtbf: 43800h")
            if self.shape is not None or self.scale is not None:
                raise ValueError("shape and scale apply to distribution: weibull only; give mtbf")
        else:
            if self.shape is None or self.scale is None or self.scale <= 0:
                raise ValueError("a weibull time to failure needs shape > 0 and scale > 0, e.g. "
                                 "{distribution: weibull, shape: 0.7, scale: 35000h}")
            if self.mtbf is not None:
                raise ValueError("mtbf applies to distribution: exponential; a weibull law is given by shape and scale")
        return self


class LinkFailures(FailureLaw):
    mode: Literal["down", "degrade"] = Field("down",
                                             description="down: removed from routing; degrade: bandwidth x factor")
    factor: Annotated[float, Field(gt=0, lt=1)] | None = Field(None,
                                                               description="degrade only: remaining bandwidth share")

    @model_validator(mode="after")
    def _factor_matches_mode(self) -> LinkFailures:
        _check_degrade(self.mode, self.factor)
        return self


def _check_degrade(mode: str, factor: float | None) -> None:
    """A degraded link needs the share of bandwidth it keeps; a link that goes down has none."""
    if mode == "degrade" and factor is None:
        raise ValueError("mode: degrade needs factor, the share of bandwidth left, e.g. factor: 0.25")
    if mode == "down" and factor is not None:
        raise ValueError("factor applies to mode: degrade only (mode is down)")


class FaultTarget(StrictModel):
    """Exactly one of: a device rank, a link (its two end nodes), a switch, a parameter server."""

    rank: Annotated[int, Field(ge=0)] | None = None
    link: tuple[str, str] | None = None
    switch: str | None = None
    server: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FaultTarget:
        given = [k for k in ("rank", "link", "switch", "server") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a target names exactly one of rank, link, switch, server (got {given or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("rank", "link", "switch", "server") if getattr(self, k) is not None)


class ScheduledFault(StrictModel):
    at: Duration = Field(description="simulated time of the failure, e.g. 12.5s or 1h")
    target: FaultTarget
    mode: Literal["down", "degrade"] = "down"
    factor: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _mode_fits_target(self) -> ScheduledFault:
        if self.target.kind not in ("link", "switch") and ("mode" in self.model_fields_set or self.factor is not None):
            raise ValueError(f"mode and factor apply to link and switch targets only (target is a {self.target.kind})")
        _check_degrade(self.mode, self.factor)
        return self


class Checkpoint(StrictModel):
    every: Annotated[int, Field(ge=1)] | str | None = Field(
        None, description="an integer: every N iterations; a duration (30min): the first iteration end after it")
    bandwidth: Bandwidth | None = Field(None, description="storage write (and read) bandwidth, e.g. 2TB/s")
    storage: Literal["shared", "per_node"] = Field(
        "shared", description="shared: every writer shares one storage link; per_node: each node its own")
    asynchronous: bool = Field(False, description="snapshot to host memory, then write in the background")
    snapshot_bandwidth: Bandwidth = Field(25e9, description="asynchronous: device-to-host copy bandwidth per device")

    @model_validator(mode="after")
    def _interval_and_storage(self) -> Checkpoint:
        if isinstance(self.every, str):
            try:
                seconds = parse(self.every, "duration")
            except UnitError as e:
                raise ValueError(f"every: expected an iteration count (500) or a duration (30min): {e.expected}") \
                    from None
            if seconds <= 0:
                raise ValueError("every: a checkpoint interval must be > 0")
        if self.every is not None and self.bandwidth is None:
            raise ValueError("a checkpoint every interval needs bandwidth, the storage bandwidth, e.g. 2TB/s")
        if self.asynchronous and self.every is None:
            raise ValueError("asynchronous applies when checkpoints are taken: give every")
        if "snapshot_bandwidth" in self.model_fields_set and not self.asynchronous:
            raise ValueError("snapshot_bandwidth applies to asynchronous: true only")
        if self.every is None and "storage" in self.model_fields_set:
            raise ValueError("storage applies when checkpoints are taken: give every")
        return self

    @property
    def every_iterations(self) -> int | None:
        return self.every if isinstance(self.every, int) else None

    @property
    def every_s(self) -> float | None:
        return parse(self.every, "duration") if isinstance(self.every, str) else None


class Recovery(StrictModel):
    policy: Literal["checkpoint_restart", "elastic", "spares"] = "checkpoint_restart"
    restart: Duration = Field(600.0, description="checkpoint_restart: re-launch time (the reload is added)")
    reconfigure: Duration = Field(30.0, description="elastic/spares: re-forming the groups when membership changes")
    spares: Annotated[int, Field(ge=0)] | None = Field(
        None, description="replacement devices; null: checkpoint_restart and spares always get one, elastic none")
    swap: Duration = Field(0.0, description="elastic/spares: bringing a spare in (state copied from a peer)")
    scale: Literal["per_device", "global"] = Field(
        "per_device", description="elastic: keep the per-device batch (global batch shrinks) or the global batch")

    @model_validator(mode="after")
    def _keys_match_policy(self) -> Recovery:
        only = {"restart": ("checkpoint_restart",), "reconfigure": ("elastic", "spares"),
                "swap": ("elastic", "spares"), "scale": ("elastic",)}
        for key, policies in only.items():
            if key in self.model_fields_set and self.policy not in policies:
                raise ValueError(f"{key} applies to policy {' or '.join(policies)} only (policy is {self.policy})")
        return self


class Faults(StrictModel):
    """What fails, when, and how the job recovers (docs/config.md, "Failures")."""

    devices: FailureLaw | None = None
    links: LinkFailures | None = None
    switches: LinkFailures | None = None
    servers: FailureLaw | None = None
    scheduled: tuple[ScheduledFault, ...] = ()
    repair: Duration | None = Field(None, description="time to repair a failed part; null: it stays failed")
    detection: Duration = Field(30.0, description="time before the job notices a dead peer")
    recovery: Recovery = Recovery()
    checkpoint: Checkpoint = Checkpoint()
    simulate: Literal["auto", "every_iteration"] = Field(
        "auto", description="auto: distinct iterations once, time between events in closed form when exact")


class Training(StrictModel):
    iterations: Annotated[int, Field(ge=1, le=10**9)] = Field(
        20, description="at most 10^9 (10^7 simulated one by one; longer jobs need faults' closed form)")
    warmup: Annotated[int, Field(ge=0)] = 2
    convergence: Convergence | None = None
    replications: PositiveInt = Field(1, description="runs with derived seeds; the summary gives mean and 95 % CI")

    @model_validator(mode="after")
    def _warmup_leaves_iterations(self) -> Training:
        if self.warmup >= self.iterations:
            raise ValueError(f"warmup ({self.warmup}) must be less than iterations ({self.iterations})")
        return self


class ClassOverride(StrictModel):
    """What every link of one class runs at (over the class's cited defaults and a link profile's)."""

    efficiency: Annotated[float, Field(gt=0, le=1)] | None = Field(None, description="fraction of bandwidth")
    software_latency: Duration | None = Field(None, description="seconds a message pays once")

    @model_validator(mode="after")
    def _something(self) -> ClassOverride:
        if self.efficiency is None and self.software_latency is None:
            raise ValueError("give efficiency, software_latency or both")
        return self


class Network(StrictModel):
    model: Literal["fluid", "alpha_beta"] = "fluid"
    link_classes: dict[Literal[tuple(LINK_CLASSES)], ClassOverride] = Field(  # type: ignore[valid-type]
        {}, description="per link class: efficiency / software_latency of every link of that class")


class Output(StrictModel):
    trace_ranks: Annotated[int, Field(ge=0)] = 16
    plots: bool = True


class Config(StrictModel):
    name: str = "trainsim"
    seed: Annotated[int, Field(ge=0)] = Field(0, description="fixes every random draw; a non-negative integer")
    cluster: Cluster
    workload: Workload = Workload()
    parallelism: Parallelism = Parallelism()
    communication: Communication = Communication()
    sync: Sync = Sync()
    stragglers: Stragglers = Stragglers()
    training: Training = Training()
    network: Network = Network()
    output: Output = Output()
    faults: Faults | None = None

    @model_validator(mode="after")
    def _combinations_are_meaningful(self) -> Config:
        """Keys that cannot apply to this job are refused, naming both keys (nothing is silently ignored)."""
        comm = self.communication
        if comm.launch_latency and comm.pattern == "parameter_server" and self.parallelism.tensor == 1:
            raise ValueError("communication.launch_latency: a parameter-server job without tensor parallelism "
                             "runs no collective (pushes and pulls are point-to-point); remove it")
        asynchronous = self.sync.mode not in ("bsp", "local_sgd") or self.sync.backup_workers
        self._local_sgd_fits()
        if asynchronous and comm.pattern != "parameter_server":
            what = f"sync.mode: {self.sync.mode}" if self.sync.mode != "bsp" else "sync.backup_workers:"
            raise ValueError(f"{what} needs communication.pattern: parameter_server (an allreduce is a barrier)")
        if comm.pattern == "allreduce":
            for key in ("servers", "server_placement", "sharding", "server_device"):
                if key in comm.model_fields_set:
                    raise ValueError(f"communication.{key} applies to communication.pattern: parameter_server only "
                                     f"(pattern is allreduce); remove it")
        else:
            if self.parallelism.zero:
                raise ValueError(f"parallelism.zero: ZeRO-{self.parallelism.zero} shards optimizer state across "
                                 "data-parallel ranks, but with communication.pattern: parameter_server the servers "
                                 "hold it; use zero: 0")
            if comm.algorithm_options:
                raise ValueError("communication.algorithm_options: options of a collective algorithm, but with "
                                 "communication.pattern: parameter_server no collective carries the gradients; "
                                 "remove them")
            self._server_device_fits()
            if "algorithm" in comm.model_fields_set:
                raise ValueError("communication.algorithm names a collective, but with communication.pattern: "
                                 "parameter_server the servers carry the gradients; remove it")
            if comm.compression.method not in ("fp32", "fp16", "bf16"):
                raise ValueError(f"communication.compression: {comm.compression.method} is built for allreduce "
                                 "(communication.pattern: allreduce); parameter servers take fp32, fp16 or bf16")
        self._in_switch_reduction_fits()
        self._optimisations_fit()
        self._faults_fit()
        return self

    def _server_device_fits(self) -> None:
        spec = self.communication.server_device
        if isinstance(spec, DeviceSpec) and spec.efficiency is not None:
            raise ValueError("communication.server_device.efficiency: a server only applies pushed gradients, "
                             "timed at its memory bandwidth (3 bytes moved per byte); remove it")

    def _in_switch_reduction_fits(self) -> None:
        """``cluster.topology.reduction`` serves the nvls allreduce, which needs one (resolve checks the switch)."""
        comm = self.communication
        nvls = comm.pattern == "allreduce" and comm.algorithm in ("nvls", "auto")
        if getattr(self.cluster.topology, "reduction", None) is not None and not nvls:
            what = (f"communication.algorithm is {comm.algorithm}" if comm.pattern == "allreduce"
                    else "communication.pattern is parameter_server")
            raise ValueError(f"cluster.topology.reduction: only the nvls allreduce reduces in the switch "
                             f"(communication.algorithm: nvls or auto), but {what}; remove it")

    def _local_sgd_fits(self) -> None:
        comm = self.communication
        if self.sync.mode == "local_sgd":
            if comm.pattern != "allreduce":
                raise ValueError("sync.mode: local_sgd averages parameters with an allreduce; it needs "
                                 "communication.pattern: allreduce")
            if self.parallelism.zero:
                raise ValueError("sync.mode: local_sgd keeps a whole model per replica; it needs parallelism.zero: 0")
            if comm.compression.method != "fp32":
                raise ValueError("communication.compression applies to gradients, but sync.mode: local_sgd "
                                 "averages parameters (fp32); remove one of the two")

    def _optimisations_fit(self) -> None:
        """Compression and priority scheduling only where they mean something."""
        comm = self.communication
        if self.parallelism.zero and comm.compression.method not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"communication.compression: {comm.compression.method} needs parallelism.zero: 0 "
                             "(ZeRO reduce-scatters the gradients it shards)")
        if comm.partition is not None and not comm.priority:
            raise ValueError("communication.partition applies with communication.priority: true only")
        if comm.priority:
            if comm.pattern != "allreduce" and comm.partition is not None:
                raise ValueError("communication.partition cuts allreduce collectives into pieces; parameter "
                                 "servers push whole parts (remove it)")
            if self.parallelism.zero or self.sync.mode == "local_sgd":
                what = f"parallelism.zero: {self.parallelism.zero}" if self.parallelism.zero else "sync.mode: local_sgd"
                raise ValueError(f"communication.priority needs per-part parameter updates; {what} has none")

    def _faults_fit(self) -> None:
        comm = self.communication
        faults = self.faults
        if faults is not None and comm.pattern != "parameter_server":
            if faults.servers is not None:
                raise ValueError("faults.servers applies to communication.pattern: parameter_server only "
                                 "(pattern is allreduce); remove it")
            for i, event in enumerate(faults.scheduled):
                if event.target.kind == "server":
                    raise ValueError(f"faults.scheduled.{i}.target.server: there are no parameter servers "
                                     "(communication.pattern is allreduce)")
