"""Resolve a config's names into hardware: topology graph, device, model, algorithm.

Checks that need several pieces together live here (more workers than devices,
a model that does not fit in device memory, an algorithm that cannot run on this
many ranks); each raises ``ConfigError`` naming the key, so ``trainsim run``
fails before anything is simulated or written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx

import topologies
from simulator import collectives, compute
from simulator.config import Config, ConfigError
from simulator.config.models import DeviceSpec, EfficiencySpec, FromFile, Hierarchical
from simulator.devices import Device, Efficiency, get_device
from simulator.parallel.placement import model_parallel, parallel_sizes
from simulator.workloads import Model, get_model, model_from_layers, with_attention, with_convolution, with_precision
from topologies.link_classes import set_class

if TYPE_CHECKING:
    from simulator.network.profile import HardwareProfile

__all__ = ["ResolvedHardware", "build_topology", "resolve_hardware"]

@dataclass(frozen=True)
class ResolvedHardware:
    graph: nx.Graph
    device: Device
    model: Model
    workers: int
    algorithm: str
    gamma: float                      # seconds per byte reduced
    topology_info: dict[str, Any]     # what topology-aware algorithms need (devices_per_node)
    profile: HardwareProfile | None = None  # cluster.profile: calibrated α, β, γ time the collectives

    def schedule(self, nbytes: int) -> collectives.Schedule:
        return collectives.schedule(self.algorithm, self.workers, nbytes, **self.topology_info)


def build_topology(config: Config, profile: HardwareProfile | None = None) -> nx.Graph:
    """The config's topology with its link classes, ``network.link_classes`` and a link profile's figures applied.

    ``profile``: the loaded ``cluster.profile`` (loaded here when not given).
    """
    spec = config.cluster.topology
    try:
        if isinstance(spec, FromFile):
            graph = topologies.load(spec.path)
        else:
            graph = topologies.build(spec.kind, **spec.build_params())
            _set_link_classes(graph, spec)
            topologies.check(graph, source=spec.kind)
    except topologies.TopologyError as e:
        raise ConfigError(f"cluster.topology: {e}") from None
    profile = load_config_profile(config) if profile is None else profile
    given = {name: (o.efficiency, o.software_latency) for name, o in config.network.link_classes.items()}
    if given and profile is not None and not profile.per_link:
        raise ConfigError("network.link_classes: a calibrated cluster.profile with regimes times collectives as a "
                          "whole-collective formula, not on the links; remove one of the two")
    _apply_class_figures(graph, given, "network.link_classes")
    if profile is not None and profile.per_link:
        for name, figures in profile.link_figures().items():
            for attr, value in zip(("efficiency", "software_latency"), figures, strict=True):
                if value is not None and given.get(name, (None, None))[attr == "software_latency"] is not None:
                    raise ConfigError(f"network.link_classes.{name}.{attr}: cluster.profile's link_classes set it "
                                      "too; remove one of the two")
        _apply_class_figures(graph, profile.link_figures(), "cluster.profile: link_classes")
    return graph


def _apply_class_figures(graph: nx.Graph, figures: dict[str, tuple[float | None, float | None]], where: str) -> None:
    """Give every link of each named class the figure it does not set itself; each figure must reach a link."""
    for name, values in figures.items():
        edges = [data for _, _, data in graph.edges(data=True) if data.get("class") == name]
        if not edges:
            raise ConfigError(f"{where}.{name}: no link of cluster.topology has class {name}")
        for attr, value in zip(("efficiency", "software_latency"), values, strict=True):
            if value is None:
                continue
            free = [data for data in edges if data.get(attr) is None]
            if not free:
                raise ConfigError(f"{where}.{name}.{attr}: every link of class {name} sets its own {attr}")
            for data in free:
                data[attr] = float(value)


def load_config_profile(config: Config) -> HardwareProfile | None:
    """``cluster.profile`` loaded and checked against the job (None without one)."""
    if config.cluster.profile is None:
        return None
    from simulator.network.profile import ProfileError, load_profile  # pydantic models, only with a profile

    try:
        profile = load_profile(config.cluster.profile)
    except ProfileError as e:
        raise ConfigError(f"cluster.profile: {e}") from None
    if not profile.per_link:
        if config.communication.launch_latency:
            raise ConfigError("communication.launch_latency: a calibrated cluster.profile's fitted alpha already "
                              "holds the launch cost of every collective; remove one of the two")
        if config.communication.pattern == "parameter_server":
            raise ConfigError("cluster.profile: a calibrated profile times collectives; with communication.pattern: "
                              "parameter_server the pushes and pulls are flows on the topology's links, so remove "
                              "one of the two (or use a link profile: trainsim calibrate --link-class)")
    elif profile.gamma_s_per_byte is not None and config.communication.pattern == "parameter_server" \
            and config.parallelism.tensor == 1:
        raise ConfigError("cluster.profile: gamma_s_per_byte times reductions in collectives; a parameter-server "
                          "job without tensor parallelism runs none (servers apply at their memory bandwidth)")
    return profile


def _set_link_classes(graph: nx.Graph, spec: Any) -> None:
    """Write the config's link ``class`` / ``efficiency`` / ``software_latency`` onto the built edges.

    A flat topology's one ``link`` describes every edge; in ``hierarchical``, ``intra`` describes the
    device links and ``inter`` the rest (NIC uplinks and the fabric). Nothing is written when unset.
    """
    if isinstance(spec, Hierarchical):
        intra, inter = spec.intra.edge_attrs(), spec.inter.edge_attrs()
        if intra == inter == (None, None, None):
            return
        role = dict(graph.nodes(data="role"))
        for u, v, data in graph.edges(data=True):
            set_class(data, *(intra if "device" in (role[u], role[v]) else inter))
        return
    attrs = spec.link.edge_attrs()
    if attrs != (None, None, None):
        for _, _, data in graph.edges(data=True):
            set_class(data, *attrs)


def resolve_device(spec: str | DeviceSpec, precision: str = "mixed") -> Device:
    """The device a config names, as it trains at ``precision`` (``workload.precision``)."""
    if isinstance(spec, str):
        try:
            device = get_device(spec)
        except KeyError as e:
            raise ConfigError(f"cluster.device: {e.args[0]}") from None
        return _at_precision(device, precision)
    for key in ("fp32_flops", "tf32_flops"):
        if getattr(spec, key) is not None and not key.startswith(precision):
            raise ConfigError(f"cluster.device.{key}: applies with workload.precision: {key[:4]}, and this run "
                              f"trains at {precision}; remove it")
    given = {k: v for k, v in spec.model_dump(exclude={"memory", "efficiency"}).items() if v is not None}
    if spec.memory is not None:
        given["memory_bytes"] = spec.memory
    try:
        base = get_device(spec.name)
    except KeyError:
        missing = [k for k in ("kind", "peak_flops", "memory_bandwidth", "memory_bytes") if k not in given]
        if missing:
            names = ", ".join(m.replace("memory_bytes", "memory") for m in missing)
            raise ConfigError(f"cluster.device: {spec.name!r} is not in the catalog, so it needs {names}") from None
        base = None
    eff = spec.efficiency
    if isinstance(eff, EfficiencySpec):   # only the kinds given change: the catalog's (or 0.5) for the rest
        given["efficiency"] = (base.efficiency if base is not None else Efficiency()).replace(**eff.given())
    elif eff is not None:
        given["efficiency"] = Efficiency.of(eff)
    device = dataclasses.replace(base, **given) if base is not None else Device(**given)
    return _at_precision(device, precision)


def _at_precision(device: Device, precision: str) -> Device:
    try:
        return device.at_precision(precision)
    except ValueError:   # no peak at that precision
        raise ConfigError(f"cluster.device: {device.name} has no {precision} peak; give cluster.device."
                          f"{precision}_flops, or train at workload.precision: mixed") from None


def check_efficiency_kinds(spec: str | DeviceSpec, model: Model, where: str) -> None:
    """A per-kind efficiency the model has no work of is refused (it would change nothing)."""
    if not isinstance(spec, DeviceSpec) or not isinstance(spec.efficiency, EfficiencySpec):
        return
    present = {w.kind for la in model.layers for w in la.work} | {"elementwise"}   # the optimizer step
    for kind in spec.efficiency.given():
        if kind not in present:
            unfused = " (workload.attention: unfused runs the attention core as GEMMs and elementwise work)" \
                if kind == "attention" and model.attention == "unfused" else ""
            raise ConfigError(f"{where}.efficiency.{kind}: {model.name} has no {kind} work{unfused}, so it would "
                              "change nothing; remove it")


def resolve_model(config: Config) -> Model:
    spec = config.workload.model
    if isinstance(spec, str):
        try:
            model = get_model(spec)
        except KeyError as e:
            raise ConfigError(f"workload.model: {e.args[0]}") from None
    else:
        try:
            model = model_from_layers(spec.name, [layer.model_dump() for layer in spec.layers])
        except ValueError as e:
            raise ConfigError(f"workload.model: {e}") from None
    attention = config.workload.attention
    if any(la.kind == "transformer" for la in model.layers):
        model = with_attention(model, attention)
    elif "attention" in config.workload.model_fields_set:
        raise ConfigError(f"workload.attention: {attention} sets how transformer blocks run their attention core, "
                          f"and {model.name} has none (a preset transformer or layers of kind: transformer_block); "
                          "remove it")
    convolution = config.workload.convolution
    if any(la.conv is not None and la.conv.winograd for la in model.layers):
        model = with_convolution(model, convolution)
    elif "convolution" in config.workload.model_fields_set:
        raise ConfigError(f"workload.convolution: {convolution} sets how 3x3 stride-1 convolutions run, and "
                          f"{model.name} has none (a preset CNN: resnet50, resnet101, inception_v3, vgg16); remove it")
    # a custom layer's typed byte counts are as they are at the run's precision; the rest is re-counted
    typed = () if isinstance(spec, str) else [la.name for la in spec.layers if la.kind != "transformer_block"]
    model = with_precision(model, config.workload.precision, as_given=typed)
    # gradients as the collective sums them: fp16/bf16 in 2 bytes; fp32 (and what other methods start from) in 4
    from simulator.compression import INPLACE

    return dataclasses.replace(model, bytes_per_param=INPLACE.get(config.communication.compression.method, 4))


def resolve_algorithm(config: Config, workers: int, info: dict[str, Any]) -> str:
    name = config.communication.algorithm
    options = config.communication.algorithm_options
    valid = collectives.algorithms("allreduce")
    if name == "auto":  # chosen by simulator.tuner once the network exists; options go to candidates taking them
        takers = {key: [a for a in valid if key in collectives.OPTIONS.get(("allreduce", a), ())] for key in options}
        for key, algs in takers.items():
            if not algs:
                raise ConfigError(f"communication.algorithm_options: no algorithm auto chooses from takes {key!r}")
        return name
    if name not in valid:
        raise ConfigError(f"communication.algorithm: expected auto or one of {', '.join(valid)}, got {name!r}")
    try:
        collectives.check_options(name, options)
    except collectives.ScheduleError as e:
        raise ConfigError(f"communication.algorithm_options: {e}") from None
    for key, given in (("communication.algorithm", {}), ("communication.algorithm_options", options)):
        try:
            collectives.schedule(name, workers, workers, **info, **given)  # tiny probe: rank count, option values
        except collectives.ScheduleError as e:
            raise ConfigError(f"{key}: {e}") from None
    return name


def resolve_hardware(config: Config, graph: nx.Graph | None = None) -> ResolvedHardware:
    """Everything a job needs resolved; ``graph`` replaces the config's topology (a faulted variant of it)."""
    profile = load_config_profile(config)
    graph = build_topology(config, profile) if graph is None else graph
    n_devices = sum(1 for _, d in graph.nodes(data=True) if d.get("role") == "device")
    workers = parallel_sizes(config.parallelism, n_devices).data  # data-parallel replicas
    parallel = model_parallel(config.parallelism)  # groups inside a node: simulator.parallel.placement
    device = resolve_device(config.cluster.device, config.workload.precision)
    model = resolve_model(config)
    check_efficiency_kinds(config.cluster.device, model, "cluster.device")
    for i, share in enumerate(config.stragglers.heterogeneity):
        check_efficiency_kinds(share.device, model, f"stragglers.heterogeneity.{i}.device")
    info = {"devices_per_node": int(graph.graph.get("devices_per_host", 1))}
    algorithm = resolve_algorithm(config, workers, {"devices_per_node": 1} if parallel else info)
    if algorithm == "nvls" and not any(d.get("reduces") for _, d in graph.nodes(data=True)):
        raise ConfigError("communication.algorithm: nvls reduces in the switch, but no switch of cluster.topology "
                          "reduces (give the topology reduction: {efficiency: ...}, or reduces: true to a switch "
                          "node of a topology file)")
    gamma = compute.reduce_time_per_byte(device)
    if profile is not None and profile.per_link:   # applied on the links (build_topology); its γ times reductions
        gamma = gamma if profile.gamma_s_per_byte is None else profile.gamma_s_per_byte
        profile = None
    return ResolvedHardware(graph, device, model, workers, algorithm, gamma, info, profile)
