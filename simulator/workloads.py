"""Training workloads as layer lists: parameters, FLOPs, activations, gradient buckets.

A :class:`Model` is an ordered tuple of :class:`Layer` records, each carrying
what the roofline in :mod:`simulator.compute` and the gradient communication in
the engine need: trainable parameters, forward FLOPs per sample, output
activation bytes per sample and bytes moved per sample. ``PRESETS`` builds
well-known networks programmatically from their architecture (real layer
shapes, not hand-typed totals), and :func:`gradient_buckets` groups gradients
into PyTorch-DDP-style buckets in backward order.

Conventions
-----------
* FLOP = 2 x multiply-accumulate (MAC). Papers and torchvision often quote MACs
  as "FLOPs" (ResNet-50: 4.1 G); here ResNet-50 is about 8.2 GFLOP forward.
* The builders count activations and working weights 16-bit (mixed precision, :data:`ACT_BYTES`);
  :func:`with_precision` re-counts a model at another training precision (:data:`PRECISION_BYTES`).
  Gradients are communicated as ``Model.bytes_per_param`` bytes each (fp32 by default).
* Transformer samples are sequences; per-sample FLOPs = per-token FLOPs x seq_len.

This module does no timing (see :mod:`simulator.compute`) and no I/O: the config
layer turns YAML into the plain dicts :func:`model_from_layers` accepts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "ACT_BYTES",
    "ATTENTION",
    "CONVOLUTION",
    "PRECISION_BYTES",
    "LAYER_KINDS",
    "PRESETS",
    "Bucket",
    "Conv",
    "Layer",
    "Model",
    "Work",
    "block_work",
    "get_model",
    "gradient_buckets",
    "megatron_iteration_flops",
    "model_from_layers",
    "with_attention",
    "with_convolution",
    "with_precision",
    "direct_work",
    "winograd_work",
]

ACT_BYTES = 2
"""Bytes per activation element (fp16/bf16 mixed-precision training): what the builders count in."""

PRECISION_BYTES = {"mixed": 2, "fp32": 4, "tf32": 4}
"""Bytes per activation and working-weight element at each training precision
(:data:`simulator.devices.PRECISIONS`); dropout masks stay 1 byte at every precision."""

_Shape = tuple[int, int, int]  # (channels, height, width) of a CNN feature map

WORK_KINDS = ("gemm", "attention", "elementwise", "embedding")   # as simulator.devices.WORK_KINDS

ATTENTION = ("fused", "unfused")
"""How a transformer block's attention core runs (:func:`block_work`): one fused FlashAttention-style kernel,
or unfused kernels that write the a·s² scores to memory and read them back."""

CONVOLUTION = ("direct", "winograd_2x2", "winograd_4x4")
"""How 3x3 stride-1 convolutions run (:func:`winograd_work`): the direct (implicit-GEMM) convolution, or
Winograd's minimal filtering F(m×m, 3×3) with output tiles of 2×2 or 4×4 (Lavin & Gray, CVPR 2016)."""

WINOGRAD_TILES = {"winograd_2x2": 2, "winograd_4x4": 4}

LAYER_KINDS = (*WORK_KINDS, "transformer", "lm_head")
"""A layer's kind: one piece of work of a :data:`WORK_KINDS` kind, a ``transformer`` block (its GEMM,
attention and elementwise parts; tensor-parallel), or the ``lm_head`` (vocabulary-parallel logits)."""


@dataclass(frozen=True)
class Work:
    """One piece of a layer's forward work, timed at its kind's efficiency (:mod:`simulator.compute`).

    Parameters
    ----------
    kind : {"gemm", "attention", "elementwise", "embedding"}
    flops : float
        Forward FLOPs per sample.
    bytes : float
        Activation bytes read and written per sample (weights excluded).
    params : int, default 0
        Parameters whose weights this piece reads once per batch.
    backward_bytes : float or None, default None
        Activation bytes its backward reads and writes per sample; ``None``: ``BACKWARD_FACTOR`` times
        ``bytes``, the rule of :mod:`simulator.compute` (an unfused attention core's softmax and dropout
        move 11 bytes per score in backward for 9 in forward: :func:`block_work`).
    core : bool, default False
        Part of a transformer block's attention core (scores, softmax, dropout, context): what tensor
        parallelism splits by heads (sequence parallelism or not) and selective recomputation re-runs.
    weight_bytes : float, default ACT_BYTES
        Bytes per weight its kernels read (the working copy: 16-bit at mixed precision, 4 at fp32).
    """

    kind: str
    flops: float
    bytes: float
    params: float = 0
    backward_bytes: float | None = None
    core: bool = False
    weight_bytes: float = ACT_BYTES

    def __post_init__(self) -> None:
        """Check the kind and that every quantity is non-negative."""
        if self.kind not in WORK_KINDS:
            raise ValueError(f"work kind must be one of {', '.join(WORK_KINDS)}, got {self.kind!r}")
        for name in ("flops", "bytes", "params", "weight_bytes"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"work {name} must be >= 0, got {getattr(self, name)!r}")
        if self.backward_bytes is not None and not self.backward_bytes >= 0:
            raise ValueError(f"work backward_bytes must be >= 0, got {self.backward_bytes!r}")

    def split(self, ways: int) -> Work:
        """The 1/``ways`` share of this piece one device of a tensor-parallel group does."""
        back = None if self.backward_bytes is None else self.backward_bytes / ways
        return dataclasses.replace(self, flops=self.flops / ways, bytes=self.bytes / ways,
                                   params=self.params / ways, backward_bytes=back)


@dataclass(frozen=True)
class Conv:
    """A convolution's shape, kept on its layer so that the algorithm it runs with can be changed
    (:func:`with_convolution`): input ``cin × h × w``, output ``cout × ho × wo``, a ``kh × kw`` kernel."""

    cin: int
    h: int
    w: int
    cout: int
    ho: int
    wo: int
    kh: int
    kw: int
    stride: int

    @property
    def winograd(self) -> bool:
        """A 3x3 stride-1 convolution: what F(m×m, 3×3) computes."""
        return self.kh == self.kw == 3 and self.stride == 1


@dataclass(frozen=True)
class Layer:
    """One trainable (or parameter-free) layer, with per-sample costs.

    Parameters
    ----------
    name : str
        Unique within its model, e.g. ``"layer1.0.conv1"``.
    params : int
        Trainable parameters (count).
    forward_flops : float
        Forward FLOPs per sample (FLOP = 2 x MAC).
    activation_bytes : float
        Output activations per sample at training precision, bytes.
    memory_bytes : float, default 0.0
        Activation bytes read and written per sample by the forward pass, bytes
        (weights excluded: they are read once per batch). 0 means derive it as
        ``2 * activation_bytes`` (input about as large as the output).
    kind : str, default "gemm"
        One of :data:`LAYER_KINDS`: what its work is timed as, and what tensor parallelism may do
        with it (:mod:`simulator.parallel.tensor` splits ``"transformer"``, ``"embedding"`` and
        ``"lm_head"``). ``"layer"`` is read as ``"gemm"``.
    matrices : tuple of (rows, cols), default ()
        Its weight matrices as 2-D views (a convolution's ``(out, in·k·k)``), what low-rank gradient
        compression (PowerSGD) factorises; the rest of ``params`` (biases, norms) are vectors.
    work : tuple of Work, default ()
        Its forward work in pieces of one kind each (a transformer block: GEMMs, attention core,
        elementwise); their FLOPs and bytes add up to ``forward_flops`` and ``forward_bytes``.
        Empty: one piece of the layer's own kind (``gemm`` for a ``transformer`` or ``lm_head``
        built without parts).
    conv : Conv or None, default None
        A convolution's shape (presets' convolutions): what :func:`with_convolution` re-times.
    """

    name: str
    params: int
    forward_flops: float
    activation_bytes: float
    memory_bytes: float = 0.0
    kind: str = "gemm"
    matrices: tuple[tuple[int, int], ...] = ()
    work: tuple[Work, ...] = ()
    conv: Conv | None = None

    def __post_init__(self) -> None:
        """Check that every quantity is non-negative, ``params`` is whole and the work adds up."""
        if int(self.params) != self.params:
            raise ValueError(f"layer {self.name!r}: params must be an integer, got {self.params!r}")
        object.__setattr__(self, "params", int(self.params))
        for name in ("params", "forward_flops", "activation_bytes", "memory_bytes"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"layer {self.name!r}: {name} must be >= 0, got {value!r}")
        object.__setattr__(self, "matrices", tuple((int(m), int(n)) for m, n in self.matrices))
        if any(m < 1 or n < 1 for m, n in self.matrices):
            raise ValueError(f"layer {self.name!r}: matrices must be positive shapes, got {list(self.matrices)}")
        if self.kind == "layer":
            object.__setattr__(self, "kind", "gemm")
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"layer {self.name!r}: kind must be one of {', '.join(LAYER_KINDS)}, got {self.kind!r}")
        self._check_work()

    def _check_work(self) -> None:
        if not self.work:
            kind = self.kind if self.kind in WORK_KINDS else "gemm"
            object.__setattr__(self, "work", (Work(kind, self.forward_flops, self.forward_bytes, self.params),))
            return
        object.__setattr__(self, "work", tuple(self.work))
        checks = [("forward_flops", self.forward_flops, sum(w.flops for w in self.work))]
        if self.memory_bytes > 0:
            checks.append(("memory_bytes", self.memory_bytes, sum(w.bytes for w in self.work)))
        for what, total, parts in checks:
            if abs(total - parts) > 1e-9 * max(abs(total), 1.0):
                raise ValueError(f"layer {self.name!r}: its work adds up to {parts:g} {what}, not {total:g}")

    def work_of(self, kind: str) -> float:
        """Forward FLOPs per sample of its pieces of ``kind``."""
        return float(sum(w.flops for w in self.work if w.kind == kind))

    @property
    def forward_bytes(self) -> float:
        """Activation bytes moved per sample in forward: ``memory_bytes`` or its derivation."""
        return self.memory_bytes if self.memory_bytes > 0 else 2.0 * self.activation_bytes


@dataclass(frozen=True)
class Model:
    """A network as an ordered tuple of layers (forward order).

    Parameters
    ----------
    name : str
        Preset key or user label.
    layers : tuple of Layer
        Forward order; a list is accepted and stored as a tuple.
    bytes_per_param : int, default 4
        Bytes per gradient element as communicated (fp32 gradients).
    sample_unit : str, default "samples"
        What one sample is ("images", "sequences"), for reports.
    num_layers, hidden, heads, seq_len, vocab : int or None
        Transformer shape (None for CNNs and custom models).
    attention : {"fused", "unfused"}, default "fused"
        How its transformer blocks' attention core was built (:func:`block_work`; change it with
        :func:`with_attention`): what their time and their kept activations (:mod:`simulator.parallel.memory`)
        assume.
    convolution : {"direct", "winograd_2x2", "winograd_4x4"}, default "direct"
        How its 3x3 stride-1 convolutions run (:func:`winograd_work`; change it with :func:`with_convolution`).
    precision : {"mixed", "fp32", "tf32"}, default "mixed"
        The training precision its byte counts are at (:data:`PRECISION_BYTES`; change it with
        :func:`with_precision`).
    """

    name: str
    layers: tuple[Layer, ...]
    bytes_per_param: int = 4
    sample_unit: str = "samples"
    num_layers: int | None = None
    hidden: int | None = None
    heads: int | None = None
    seq_len: int | None = None
    vocab: int | None = None
    attention: str = "fused"
    convolution: str = "direct"
    precision: str = "mixed"

    def __post_init__(self) -> None:
        """Store layers as a tuple; reject empty models, duplicate layer names, an unknown attention or
        convolution."""
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.attention not in ATTENTION:
            raise ValueError(f"model {self.name!r}: attention must be one of {', '.join(ATTENTION)}, "
                             f"got {self.attention!r}")
        if self.convolution not in CONVOLUTION:
            raise ValueError(f"model {self.name!r}: convolution must be one of {', '.join(CONVOLUTION)}, "
                             f"got {self.convolution!r}")
        if self.precision not in PRECISION_BYTES:
            raise ValueError(f"model {self.name!r}: precision must be one of {', '.join(PRECISION_BYTES)}, "
                             f"got {self.precision!r}")
        if not self.layers:
            raise ValueError(f"model {self.name!r}: needs at least one layer")
        if not self.bytes_per_param > 0:
            raise ValueError(f"model {self.name!r}: bytes_per_param must be > 0")
        names = [layer.name for layer in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model {self.name!r}: duplicate layer names {duplicates}")

    @property
    def parameters(self) -> int:
        """Trainable parameters (count)."""
        return sum(layer.params for layer in self.layers)

    @property
    def forward_flops(self) -> float:
        """Forward FLOPs per sample."""
        return float(sum(layer.forward_flops for layer in self.layers))

    @property
    def activation_bytes(self) -> float:
        """Sum of layer output activations per sample, bytes (a proxy for saved activations)."""
        return float(sum(layer.activation_bytes for layer in self.layers))

    @property
    def element_bytes(self) -> int:
        """Bytes per activation and working-weight element at its precision (:data:`PRECISION_BYTES`)."""
        return PRECISION_BYTES[self.precision]

    @property
    def gradient_bytes(self) -> int:
        """Bytes of one full gradient as communicated: ``parameters * bytes_per_param``."""
        return self.parameters * self.bytes_per_param


# --------------------------------------------------------------------------- CNN parts


def _conv(
    name: str,
    x: _Shape,
    cout: int,
    k: int | tuple[int, int],
    stride: int = 1,
    pad: int | tuple[int, int] = 0,
    bias: bool = False,
) -> tuple[Layer, _Shape]:
    """Build a kh x kw convolution (``k`` an int for square kernels, or ``(kh, kw)``; ``pad`` likewise).

    Params kh*kw*cin*cout (+cout bias), MACs = kh*kw*cin*cout*Ho*Wo.
    """
    cin, h, w = x
    kh, kw = (k, k) if isinstance(k, int) else k
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    ho, wo = (h + 2 * ph - kh) // stride + 1, (w + 2 * pw - kw) // stride + 1
    conv, params = Conv(cin, h, w, cout, ho, wo, kh, kw, stride), kh * kw * cin * cout + (cout if bias else 0)
    work = direct_work(conv, params)
    layer = Layer(name, params, work[0].flops, cout * ho * wo * ACT_BYTES, work[0].bytes,
                  matrices=((cout, cin * kh * kw),), work=work, conv=conv)
    return layer, (cout, ho, wo)


def direct_work(conv: Conv, params: int, element_bytes: int = ACT_BYTES) -> tuple[Work]:
    """A convolution's forward work per sample run directly (one implicit GEMM): 2·kh·kw·cin·cout·ho·wo
    FLOPs over its input and output, its weights read once a batch."""
    flops = 2.0 * (conv.kh * conv.kw * conv.cin * conv.cout) * conv.ho * conv.wo
    moved = (conv.cin * conv.h * conv.w + conv.cout * conv.ho * conv.wo) * element_bytes
    return (Work("gemm", flops, moved, params, weight_bytes=element_bytes),)


def winograd_work(conv: Conv, m: int, params: int, element_bytes: int = ACT_BYTES) -> tuple[Work, Work]:
    """A 3x3 stride-1 convolution's forward work per sample under Winograd's F(m×m, 3×3), non-fused.

    Lavin & Gray (CVPR 2016, "Fast Algorithms for Convolutional Neural Networks", Sec. 4): the output is
    cut into m×m tiles, t = ⌈ho/m⌉·⌈wo/m⌉ of them, each computed from an α×α input tile (α = m + 2):

    - input transform Bᵀ·d·B and output transform Aᵀ·M·A: ``elementwise`` work, reading the input
      (cin·h·w) and writing the transformed input U (cin·α²·t), reading the products M (cout·α²·t) and
      writing the output (cout·ho·wo); their additions are not counted (memory-bound, as the other
      elementwise work here);
    - the products: α² GEMMs of (cout × cin)·(cin × t), 2·α²·cout·cin·t FLOPs, a ``gemm`` piece reading U
      and writing M. Per output element that is α²/m² multiplies for the direct convolution's 9: 2.25×
      fewer for F(2×2, 3×3) (16 for 36) and 4× fewer for F(4×4, 3×3) (36 for 144) when the tiles divide
      the output (Lavin & Gray, Sec. 4: "reduces the number of multiplications by a factor of 2.25" and 4).

    The weights' transform (cout·cin·α² values, once a batch) is where the ``params`` are read. Backward is
    timed, as for every piece, at twice the forward (:mod:`simulator.compute`): the data gradient of a 3x3
    stride-1 convolution is one too, and the filter gradient takes the same transforms (Lavin & Gray, Sec. 4).
    """
    alpha = m + 2
    tiles = -(-conv.ho // m) * -(-conv.wo // m)
    u, mm = conv.cin * alpha * alpha * tiles, conv.cout * alpha * alpha * tiles
    e = element_bytes
    products = Work("gemm", 2.0 * alpha * alpha * conv.cout * conv.cin * tiles, (u + mm) * e, params,
                    weight_bytes=e)
    transforms = Work("elementwise", 0.0, (conv.cin * conv.h * conv.w + u + mm + conv.cout * conv.ho * conv.wo) * e,
                      weight_bytes=e)
    return products, transforms


def with_convolution(model: Model, convolution: str) -> Model:
    """``model`` with its 3x3 stride-1 convolutions run ``direct`` or by Winograd (:func:`winograd_work`).

    Raises
    ------
    ValueError
        If ``convolution`` is not one of :data:`CONVOLUTION`, or the model has no 3x3 stride-1 convolution.
    """
    if convolution not in CONVOLUTION:
        raise ValueError(f"convolution must be one of {', '.join(CONVOLUTION)}, got {convolution!r}")
    if not any(la.conv is not None and la.conv.winograd for la in model.layers):
        raise ValueError(f"model {model.name!r} has no 3x3 stride-1 convolution")
    if convolution == model.convolution:
        return model

    e = model.element_bytes

    def rebuilt(la: Layer) -> Layer:
        if la.conv is None or not la.conv.winograd:
            return la
        if convolution == "direct":
            work = direct_work(la.conv, la.params, e)
        else:
            work = winograd_work(la.conv, WINOGRAD_TILES[convolution], la.params, e)
        return dataclasses.replace(la, forward_flops=sum(w.flops for w in work),
                                   memory_bytes=sum(w.bytes for w in work), work=work)

    return dataclasses.replace(model, layers=tuple(rebuilt(la) for la in model.layers), convolution=convolution)


def _elementwise(name: str, x: _Shape, *, params: int = 0, flops: float, passes: int) -> Layer:
    """Build a memory-bound op over a feature map: ``flops`` and ``passes`` per element."""
    elements = x[0] * x[1] * x[2]
    size = elements * ACT_BYTES
    return Layer(name, params, flops * elements, size, passes * size, kind="elementwise")


def _bn(name: str, x: _Shape, relu: bool = True) -> Layer:
    """BatchNorm (2C params) in training mode, optionally followed by an in-place ReLU.

    BN reads its input twice (statistics, normalise) and writes once: 3 passes;
    ReLU reads and writes once more: 2 passes.
    """
    return _elementwise(name, x, params=2 * x[0], flops=5 if relu else 4, passes=5 if relu else 3)


def _pool(name: str, x: _Shape, k: int, stride: int, pad: int = 0) -> tuple[Layer, _Shape]:
    """Max pooling: k*k comparisons per output element, reads input, writes output."""
    c, h, w = x
    out = (c, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1)
    n_out = out[0] * out[1] * out[2]
    layer = Layer(name, 0, float(k * k * n_out), n_out * ACT_BYTES, (c * h * w + n_out) * ACT_BYTES,
                  kind="elementwise")
    return layer, out


def _global_pool(name: str, x: _Shape) -> Layer:
    """Global average pooling to C x 1 x 1: one add per input element."""
    c, h, w = x
    return Layer(name, 0, float(c * h * w), c * ACT_BYTES, (c * h * w + c) * ACT_BYTES, kind="elementwise")


def _fc(name: str, n_in: int, n_out: int) -> Layer:
    """Build a fully-connected layer with bias."""
    return Layer(
        name,
        n_in * n_out + n_out,
        2.0 * n_in * n_out,
        n_out * ACT_BYTES,
        (n_in + n_out) * ACT_BYTES,
        matrices=((n_out, n_in),),
    )


def _bottleneck(prefix: str, x: _Shape, width: int, stride: int) -> tuple[list[Layer], _Shape]:
    """ResNet v1.5 bottleneck (torchvision): 1x1, 3x3 (strided), 1x1 x4, projection if needed."""
    conv1, y1 = _conv(f"{prefix}.conv1", x, width, 1)
    conv2, y2 = _conv(f"{prefix}.conv2", y1, width, 3, stride, 1)
    conv3, y = _conv(f"{prefix}.conv3", y2, 4 * width, 1)
    layers = [
        conv1,
        _bn(f"{prefix}.bn1", y1),
        conv2,
        _bn(f"{prefix}.bn2", y2),
        conv3,
        _bn(f"{prefix}.bn3", y, relu=False),
    ]
    if stride != 1 or x[0] != 4 * width:
        proj, _ = _conv(f"{prefix}.downsample.0", x, 4 * width, 1, stride)
        layers += [proj, _bn(f"{prefix}.downsample.1", y, relu=False)]
    # residual add (read 2, write 1) then in-place ReLU (read 1, write 1)
    layers.append(_elementwise(f"{prefix}.add", y, flops=2, passes=5))
    return layers, y


def _resnet(name: str, blocks: tuple[int, int, int, int]) -> Model:
    """ResNet v1.5 (He et al. 2016; torchvision ``resnet50`` / ``resnet101``), 224x224 input.

    ``blocks``: bottlenecks per stage, (3, 4, 6, 3) for ResNet-50, (3, 4, 23, 3) for ResNet-101.
    """
    x: _Shape = (3, 224, 224)
    conv, x = _conv("conv1", x, 64, 7, 2, 3)
    layers = [conv, _bn("bn1", x)]
    pool, x = _pool("maxpool", x, 3, 2, 1)
    layers.append(pool)
    for stage, (count, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        for block in range(count):
            stride = 2 if block == 0 and stage > 0 else 1
            block_layers, x = _bottleneck(f"layer{stage + 1}.{block}", x, width, stride)
            layers += block_layers
    layers.append(_global_pool("avgpool", x))
    layers.append(_fc("fc", x[0], 1000))
    return Model(name, tuple(layers), sample_unit="images")


_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16() -> Model:
    """VGG-16 (Simonyan & Zisserman 2015, configuration D; torchvision ``vgg16``)."""
    x: _Shape = (3, 224, 224)
    layers: list[Layer] = []
    block, index = 1, 1
    for spec in _VGG16:
        if spec == "M":
            pool, x = _pool(f"pool{block}", x, 2, 2)
            layers.append(pool)
            block, index = block + 1, 1
            continue
        conv, x = _conv(f"conv{block}_{index}", x, int(spec), 3, 1, 1, bias=True)
        layers += [conv, _elementwise(f"relu{block}_{index}", x, flops=1, passes=2)]
        index += 1
    n_in = x[0] * x[1] * x[2]
    for name, n_out in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        layers.append(_fc(name, n_in, n_out))
        if name != "fc8":
            layers.append(_elementwise(f"relu{name[2:]}", (n_out, 1, 1), flops=1, passes=2))
        n_in = n_out
    return Model("vgg16", tuple(layers), sample_unit="images")


def _basic(name: str, x: _Shape, cout: int, k: int | tuple[int, int], stride: int = 1,
           pad: int | tuple[int, int] = 0) -> tuple[list[Layer], _Shape]:
    """Inception's BasicConv2d (torchvision): a bias-free convolution, BatchNorm, ReLU."""
    conv, y = _conv(f"{name}.conv", x, cout, k, stride, pad)
    return [conv, _bn(f"{name}.bn", y)], y


def _chain(prefix: str, x: _Shape, convs: Iterable[tuple]) -> tuple[list[Layer], _Shape]:
    """BasicConv2d layers one after another: each spec is ``(name, cout, k[, stride[, pad]])``."""
    layers: list[Layer] = []
    for name, *spec in convs:
        built, x = _basic(f"{prefix}.{name}", x, *spec)
        layers += built
    return layers, x


def _mixed(prefix: str, x: _Shape, branches: Iterable[tuple], pool: str, pool_conv: int = 0,
           inner: tuple[str, ...] = ()) -> tuple[list[Layer], _Shape]:
    """One Inception module: branches of BasicConv2d chains, a pooling branch, the concat.

    Each branch is ``(name, convs)`` reading the module's input, or ``(name, convs, source)`` reading
    branch ``source``'s output (Mixed_7b/7c split a branch in a 1x3 and a 3x1 half); branches named
    in ``inner`` feed others and are not concatenated. ``pool``: ``"avg"`` (3x3, stride 1, then a 1x1
    BasicConv2d of ``pool_conv`` channels) or ``"max"`` (3x3, stride 2, the input's channels pass
    through). Branches run one after another on the device.
    """
    layers: list[Layer] = []
    outputs: dict[str, _Shape] = {}
    for name, convs, *source in branches:
        built, outputs[name] = _chain(f"{prefix}.{name}", outputs[source[0]] if source else x, convs)
        layers += built
    if pool == "avg":
        pooled, y = _pool(f"{prefix}.branch_pool.avg", x, 3, 1, 1)
        built, y = _basic(f"{prefix}.branch_pool", y, pool_conv, 1)
        layers += [pooled, *built]
    else:
        pooled, y = _pool(f"{prefix}.branch_pool.max", x, 3, 2)
        layers.append(pooled)
    channels = y[0] + sum(shape[0] for name, shape in outputs.items() if name not in inner)
    out: _Shape = (channels, y[1], y[2])
    layers.append(_elementwise(f"{prefix}.concat", out, flops=0, passes=2))
    return layers, out


def _inception_a(prefix: str, x: _Shape, pool_features: int) -> tuple[list[Layer], _Shape]:
    return _mixed(prefix, x, [
        ("branch1x1", [("", 64, 1)]),
        ("branch5x5", [("1", 48, 1), ("2", 64, 5, 1, 2)]),
        ("branch3x3dbl", [("1", 64, 1), ("2", 96, 3, 1, 1), ("3", 96, 3, 1, 1)]),
    ], "avg", pool_features)


def _inception_c(prefix: str, x: _Shape, c7: int) -> tuple[list[Layer], _Shape]:
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    return _mixed(prefix, x, [
        ("branch1x1", [("", 192, 1)]),
        ("branch7x7", [("1", c7, 1), ("2", c7, *row), ("3", 192, *col)]),
        ("branch7x7dbl", [("1", c7, 1), ("2", c7, *col), ("3", c7, *row), ("4", c7, *col),
                          ("5", 192, *row)]),
    ], "avg", 192)


def _inception_e(prefix: str, x: _Shape) -> tuple[list[Layer], _Shape]:
    row, col = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    return _mixed(prefix, x, [
        ("branch1x1", [("", 320, 1)]),
        ("branch3x3_1", [("", 384, 1)]),
        ("branch3x3_2a", [("", 384, *row)], "branch3x3_1"), ("branch3x3_2b", [("", 384, *col)], "branch3x3_1"),
        ("branch3x3dbl", [("1", 448, 1), ("2", 384, 3, 1, 1)]),
        ("branch3x3dbl_3a", [("", 384, *row)], "branch3x3dbl"),
        ("branch3x3dbl_3b", [("", 384, *col)], "branch3x3dbl"),
    ], "avg", 192, inner=("branch3x3_1", "branch3x3dbl"))


def _inception_v3(*, aux_logits: bool = True) -> Model:
    """Inception v3 (Szegedy et al. 2016; torchvision ``inception_v3``), 299x299 input.

    Layer shapes follow torchvision's ``Inception3`` module by module. The auxiliary classifier
    (on Mixed_6e, trained with the main head) is kept unless ``aux_logits=False``.
    """
    x: _Shape = (3, 299, 299)
    layers, x = _chain("", x, [("Conv2d_1a_3x3", 32, 3, 2), ("Conv2d_2a_3x3", 32, 3),
                              ("Conv2d_2b_3x3", 64, 3, 1, 1)])
    pool, x = _pool("maxpool1", x, 3, 2)
    layers.append(pool)
    built, x = _chain("", x, [("Conv2d_3b_1x1", 80, 1), ("Conv2d_4a_3x3", 192, 3)])
    layers += built
    pool, x = _pool("maxpool2", x, 3, 2)
    layers.append(pool)
    for name, features in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        built, x = _inception_a(name, x, features)
        layers += built
    built, x = _mixed("Mixed_6a", x, [("branch3x3", [("", 384, 3, 2)]),
                                      ("branch3x3dbl", [("1", 64, 1), ("2", 96, 3, 1, 1), ("3", 96, 3, 2)])],
                      "max")
    layers += built
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        built, x = _inception_c(name, x, c7)
        layers += built
    if aux_logits:
        pool, y = _pool("AuxLogits.avg", x, 5, 3)
        built, y = _chain("AuxLogits", y, [("conv0", 128, 1), ("conv1", 768, 5)])
        layers += [pool, *built, _fc("AuxLogits.fc", y[0], 1000)]
    built, x = _mixed("Mixed_7a", x, [("branch3x3", [("1", 192, 1), ("2", 320, 3, 2)]),
                                      ("branch7x7x3", [("1", 192, 1), ("2", 192, (1, 7), 1, (0, 3)),
                                                       ("3", 192, (7, 1), 1, (3, 0)), ("4", 192, 3, 2)])],
                      "max")
    layers += built
    for name in ("Mixed_7b", "Mixed_7c"):
        built, x = _inception_e(name, x)
        layers += built
    layers.append(_global_pool("avgpool", x))
    layers.append(_fc("fc", x[0], 1000))
    return Model("inception_v3", tuple(layers), sample_unit="images")


# ------------------------------------------------------------------- transformer parts


def _embedding(s: int, h: int, vocab: int, bert: bool) -> Layer:
    """Token + position (+ BERT token-type and LayerNorm) embeddings: gathers, no GEMM."""
    params = (vocab + s) * h + ((2 * h + 2 * h) if bert else 0)
    tables = 3 if bert else 2
    passes = tables + 1 + (2 if bert else 0)  # gather rows, write the sum, LayerNorm
    return Layer(
        "embedding",
        params,
        float(s * h * (tables - 1 + (5 if bert else 0))),
        s * h * ACT_BYTES,
        passes * s * h * ACT_BYTES,
        kind="embedding",
        matrices=((vocab, h), (s, h)),
    )


def block_work(s: int, h: int, heads: int = 1, attention: str = "fused",
               element_bytes: int = ACT_BYTES) -> tuple[Work, ...]:
    """A transformer block's forward work per sequence: its GEMMs, its attention core, its elementwise ops.

    - ``gemm``: QKV, projection and the two 4h MLP matrices, 24·s·h² FLOPs (Narayanan et al. 2021,
      appendix); activations in and out, 16-bit: QKV 2sh + 6sh, projection 2sh + 2sh, MLP 2sh + 8sh and
      8sh + 2sh = 32·s·h bytes; weights 12h² + 9h (the biases).
    - the attention core (``core``): scores QKᵀ, softmax, dropout and context AV, 4·s²·h FLOPs; how it
      moves its a·s² scores (``heads`` a) is ``attention`` (:data:`ATTENTION`):

      ``fused`` (FlashAttention, Dao et al. 2022; Megatron-core and PyTorch's SDPA today): one
      ``attention`` kernel, the scores never leave the chip; it reads Q, K, V and writes the context,
      8·s·h bytes (backward twice that, the rule of :mod:`simulator.compute`).

      ``unfused`` (Megatron-LM before FlashAttention: Shoeybi et al. 2019, Narayanan et al. 2021):
      the scores go through HBM between four kernels. Forward, per score element (fp16: 2 bytes, the
      dropout mask 1 byte), as Dao et al. 2022, Sec. 2.2 and Algorithm 0, count the standard
      implementation's HBM traffic, with Megatron's dropout on the probabilities added:

      ====================================================  =====  =======
      kernel                                                reads  writes
      ====================================================  =====  =======
      QKᵀ, batched GEMM (Q, K in: 4sh)                                2
      scale-mask-softmax (Megatron's fused kernel)            2      2
      dropout of the probabilities (output and 1-byte mask)   2      3
      AV, batched GEMM (V in, context out: 4sh)               2
      ====================================================  =====  =======

      13 bytes per score, 13·a·s². Backward (Dao et al. 2022, Algorithm 3, with dropout): dV = P̃ᵀ·dO
      reads the dropped probabilities P̃ (2), dP̃ = dO·Vᵀ writes dP̃ (2); dropout backward reads dP̃ and
      the mask, writes dP (2 + 1 + 2); softmax backward reads its output P and dP, writes dS (2 + 2 + 2);
      dQ = dS·K and dK = dSᵀ·Q are two batched GEMMs, each reading dS (2 + 2): 19 bytes per score,
      19·a·s². What stays in HBM for backward is P, the mask and P̃: Korthikanti et al. 2022's 5·a·s²
      bytes (:mod:`simulator.parallel.memory`). As work: the two batched GEMMs are ``gemm`` pieces (cuBLAS
      strided-batched GEMMs, ``torch.baddbmm`` / ``bmm``, the kernels the ``gemm`` share describes; the
      ``attention`` share is a fused FlashAttention kernel's, which these runs do not have): 4·s²·h
      FLOPs over 8·s·h + 4·a·s² bytes (their intensity, about h/a FLOP a byte, is below an A100's
      ridge of 153 for heads of 128 or less, so they are memory-bound on the roofline); backward twice
      both. Softmax and dropout are an ``elementwise`` piece of 9·a·s² bytes, 11·a·s² in backward.
    - ``elementwise``: two LayerNorms (read and write: 2 × 4sh), two dropout + residual adds (read
      2 × 2sh, write 2sh and a 1-byte mask sh: 2 × 7sh) and GeLU on 4h (8sh + 8sh): 38·s·h bytes; the
      LayerNorms' 4h weights. Their FLOPs are not counted (memory-bound; Narayanan's count).

    The bytes above are at 16-bit elements (``element_bytes`` 2, mixed precision). At ``element_bytes`` e
    every value is e bytes and the dropout masks stay 1 byte: GEMMs 16·e·s·h, the fused core 4·e·s·h, the
    elementwise rest (18·e + 2)·s·h; unfused, the batched GEMMs 4·e·s·h + 2·e·a·s², softmax and dropout
    (4·e + 1)·a·s² forward and (5·e + 1)·a·s² backward. Weights are read at e bytes each.
    """
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    e = float(element_bytes)
    gemm = Work("gemm", 24.0 * s * h * h, 16.0 * e * s * h, 12 * h * h + 9 * h, weight_bytes=e)
    rest = Work("elementwise", 0.0, (18.0 * e + 2.0) * s * h, 4 * h, weight_bytes=e)
    if attention == "fused":
        return gemm, Work("attention", 4.0 * s * s * h, 4.0 * e * s * h, core=True, weight_bytes=e), rest
    scores = float(heads) * s * s
    return (gemm, Work("gemm", 4.0 * s * s * h, 4.0 * e * s * h + 2.0 * e * scores, core=True, weight_bytes=e),
            Work("elementwise", 0.0, (4.0 * e + 1.0) * scores, backward_bytes=(5.0 * e + 1.0) * scores, core=True,
                 weight_bytes=e), rest)


def _block(name: str, s: int, h: int, heads: int, attention: str = "fused", element_bytes: int = ACT_BYTES) -> Layer:
    """One pre/post-LN transformer block: attention + 4h MLP, as its GEMM, attention and elementwise work.

    Params 12h^2 + 13h. Forward FLOPs per token 24h^2 (QKV, projection, MLP GEMMs)
    + 4sh (scores QK^T and context AV), Narayanan et al. 2021, appendix; bytes moved as
    :func:`block_work` counts them for ``attention``. (What a block *keeps* for backward is
    Korthikanti et al. 2022's s·h·(34 + 5·a·s/h) bytes unfused: :mod:`simulator.parallel.memory`.)
    """
    work = block_work(s, h, heads, attention, element_bytes)
    return Layer(name, 12 * h * h + 13 * h, sum(w.flops for w in work), s * h * element_bytes,
                 sum(w.bytes for w in work), kind="transformer",
                 matrices=((3 * h, h), (h, h), (4 * h, h), (h, 4 * h)),   # QKV, projection, MLP in and out
                 work=work)


def with_attention(model: Model, attention: str) -> Model:
    """``model`` with its transformer blocks' attention core ``fused`` or ``unfused`` (:func:`block_work`).

    Raises
    ------
    ValueError
        If ``attention`` is not one of :data:`ATTENTION`, or the model has no transformer blocks.
    """
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {attention!r}")
    if not any(la.kind == "transformer" for la in model.layers):
        raise ValueError(f"model {model.name!r} has no transformer blocks, so it has no attention core")
    if attention == model.attention:
        return model
    s, h, a = model.seq_len, model.hidden, model.heads
    assert s is not None and h is not None and a is not None   # a model with blocks has their shape
    e = model.element_bytes
    layers = tuple(_block(la.name, s, h, a, attention, e) if la.kind == "transformer" else la for la in model.layers)
    return dataclasses.replace(model, layers=layers, attention=attention)


def with_precision(model: Model, precision: str, *, as_given: Iterable[str] = ()) -> Model:
    """``model`` counted at the training ``precision`` (:data:`PRECISION_BYTES`).

    Transformer blocks are rebuilt at its element size (:func:`block_work`: their 1-byte dropout masks
    stay 1 byte); every other layer's activation and memory bytes scale by the ratio of element sizes
    (a convolution, pooling or embedding moves values of one size), except the layers named in
    ``as_given``, whose byte counts a user typed as they are at that precision. Every piece of work reads
    its weights at the new element size.

    Raises
    ------
    ValueError
        If ``precision`` is not one of :data:`PRECISION_BYTES`.
    """
    if precision not in PRECISION_BYTES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_BYTES)}, got {precision!r}")
    if precision == model.precision:
        return model
    e, given = PRECISION_BYTES[precision], frozenset(as_given)
    r = e / model.element_bytes

    def rebuilt(la: Layer) -> Layer:
        if la.kind == "transformer":
            assert model.seq_len and model.hidden and model.heads   # a model with blocks has their shape
            return _block(la.name, model.seq_len, model.hidden, model.heads, model.attention, e)
        if la.name in given:
            return dataclasses.replace(la, work=tuple(dataclasses.replace(w, weight_bytes=e) for w in la.work))
        work = tuple(dataclasses.replace(w, bytes=w.bytes * r, weight_bytes=e,
                                         backward_bytes=None if w.backward_bytes is None else w.backward_bytes * r)
                     for w in la.work)
        return dataclasses.replace(la, activation_bytes=la.activation_bytes * r, memory_bytes=la.memory_bytes * r,
                                   work=work)

    return dataclasses.replace(model, layers=tuple(rebuilt(la) for la in model.layers), precision=precision)


def _lm_head(s: int, h: int, vocab: int) -> Layer:
    """Build the final LayerNorm (2h params) + logits through the tied embedding (no extra params).

    FLOPs 2*h*vocab per token (a GEMM reading s·h and writing the s·vocab logits); the LayerNorm
    (read and write s·h) and softmax-CE (reads the logits back) are elementwise.
    """
    work = (Work("gemm", 2.0 * h * vocab * s, (s * h + s * vocab) * ACT_BYTES),
            Work("elementwise", 0.0, (2 * s * h + s * vocab) * ACT_BYTES, 2 * h))
    return Layer(
        "lm_head",
        2 * h,
        2.0 * h * vocab * s,
        s * vocab * ACT_BYTES,
        (3 * s * h + 2 * s * vocab) * ACT_BYTES,
        kind="lm_head",
        work=work,
    )


def _transformer(
    name: str,
    *,
    num_layers: int,
    hidden: int,
    heads: int,
    seq_len: int,
    vocab: int,
    causal_lm: bool,
) -> Model:
    """Build a BERT-style encoder (``causal_lm=False``) or a GPT-style decoder + LM head."""
    layers = [_embedding(seq_len, hidden, vocab, bert=not causal_lm)]
    layers += [_block(f"block{i}", seq_len, hidden, heads) for i in range(num_layers)]
    if causal_lm:
        layers.append(_lm_head(seq_len, hidden, vocab))
    return Model(
        name,
        tuple(layers),
        sample_unit="sequences",
        num_layers=num_layers,
        hidden=hidden,
        heads=heads,
        seq_len=seq_len,
        vocab=vocab,
    )


_BUILDERS: dict[str, Callable[[], Model]] = {
    "resnet50": lambda: _resnet("resnet50", (3, 4, 6, 3)),
    "resnet101": lambda: _resnet("resnet101", (3, 4, 23, 3)),
    "inception_v3": _inception_v3,
    "vgg16": _vgg16,
    # Devlin et al. 2019: BERT-large, L=24, H=1024, A=16; seq 512, WordPiece vocab 30522.
    # Encoder only (no pooler, no MLM head).
    "bert_large": lambda: _transformer(
        "bert_large",
        num_layers=24,
        hidden=1024,
        heads=16,
        seq_len=512,
        vocab=30522,
        causal_lm=False,
    ),
    # Radford et al. 2019: GPT-2 XL, 48 layers, d_model 1600, 25 heads, context 1024, BPE 50257.
    "gpt2_xl": lambda: _transformer(
        "gpt2_xl", num_layers=48, hidden=1600, heads=25, seq_len=1024, vocab=50257, causal_lm=True
    ),
    # Brown et al. 2020, Table 2.1: GPT-3 175B, 96 layers, d_model 12288, 96 heads, n_ctx 2048.
    "gpt3_175b": lambda: _transformer(
        "gpt3_175b",
        num_layers=96,
        hidden=12288,
        heads=96,
        seq_len=2048,
        vocab=50257,
        causal_lm=True,
    ),
}

# Narayanan et al. 2021 (Megatron-LM, SC'21), Table 1 (and Table 2's GPT-3 shape): GPT models with
# seq 2048 and vocab 51200 (GPT-2's 50257 padded to a multiple of 1024); (layers, hidden, heads).
# Shoeybi et al. 2019 (Megatron-LM), Table 1: the 1.2B single-GPU baseline and the 8.3B model, seq 1024.
_MEGATRON = {
    "megatron_1.7b": (24, 2304, 24, 2048),
    "megatron_18.4b": (40, 6144, 48, 2048),
    "megatron_145.6b": (80, 12288, 96, 2048),
    "megatron_175b": (96, 12288, 96, 2048),
    "megatron_1t": (128, 25600, 160, 2048),
    "megatron_1.2b": (40, 1536, 16, 1024),
    "megatron_8.3b": (72, 3072, 32, 1024),
}
_BUILDERS.update({
    name: functools.partial(_transformer, name, num_layers=layers, hidden=hidden, heads=heads, seq_len=seq,
                            vocab=51200, causal_lm=True)
    for name, (layers, hidden, heads, seq) in _MEGATRON.items()
})


class _Presets(Mapping[str, Model]):
    """The preset models by name, each built the first time it is looked up and the same object after
    (building all of them took ~15 ms of every start-up; a run needs one)."""

    def __init__(self, builders: Mapping[str, Callable[[], Model]]):
        self._builders = builders
        self._built: dict[str, Model] = {}

    def __getitem__(self, name: str) -> Model:
        if name not in self._built:
            self._built[name] = self._builders[name]()
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


PRESETS: Mapping[str, Model] = _Presets(_BUILDERS)


def get_model(name: str) -> Model:
    """Look a preset up in :data:`PRESETS` (case-insensitive).

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the known names.

    Examples
    --------
    >>> get_model("resnet50").parameters
    25557032
    """
    key = name.strip().lower()
    if key not in PRESETS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(sorted(PRESETS))}")
    return PRESETS[key]


_LAYER_KEYS = {"name", "kind", "params", "forward_flops", "activation_bytes", "memory_bytes", "matrices"}
_BLOCK_KEYS = {"name", "kind", "hidden", "heads", "seq_len"}


def model_from_layers(
    name: str,
    layers: Iterable[Mapping[str, object]],
    *,
    bytes_per_param: int = 4,
    sample_unit: str = "samples",
) -> Model:
    """Build a custom model from plain dicts (as a YAML layer list gives them).

    Parameters
    ----------
    name : str
        Model label.
    layers : iterable of mapping
        Forward order. Each has ``name`` and optionally ``kind`` (``gemm`` by default,
        ``attention``, ``elementwise``, ``embedding``: the efficiency its work runs at). Such a layer
        gives ``params`` (count), ``forward_flops`` (FLOP per sample) and optionally
        ``activation_bytes`` and ``memory_bytes`` (bytes per sample) and ``matrices``, all already
        numbers. ``kind: transformer_block`` gives its shape instead (``hidden``, ``heads``,
        ``seq_len``) and is built like the presets' blocks (GEMM, attention and elementwise work,
        12h² + 13h params), so it can be tensor-split; the model then has that shape.
    bytes_per_param : int, default 4
        Gradient bytes per parameter.
    sample_unit : str, default "samples"

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        Naming the layer index and the missing or unexpected key.
    """
    built, shape = [], {}
    for i, spec in enumerate(layers):
        block = spec.get("kind") == "transformer_block"
        allowed, optional = (_BLOCK_KEYS, {"kind"}) if block else \
            (_LAYER_KEYS, {"kind", "activation_bytes", "memory_bytes", "matrices"})
        missing = sorted(allowed - optional - {k for k, v in spec.items() if v is not None})
        unexpected = sorted(k for k, v in spec.items() if k not in allowed and v not in (None, (), 0, 0.0))
        if missing or unexpected:
            problem = f"missing {missing}" if missing else f"unexpected {unexpected}"
            raise ValueError(f"model {name!r}: layers[{i}]: {problem}")
        if block:
            s, h, a = int(spec["seq_len"]), int(spec["hidden"]), int(spec["heads"])  # type: ignore[call-overload]
            built.append(_block(str(spec["name"]), s, h, a))
            shape = {"seq_len": s, "hidden": h, "heads": a}
            continue
        built.append(Layer(**{k: v for k, v in spec.items() if k in _LAYER_KEYS}))  # type: ignore[arg-type]
    return Model(name, tuple(built), bytes_per_param=bytes_per_param, sample_unit=sample_unit, **shape)


def megatron_iteration_flops(model: Model, batch: int, *, recompute: bool = True) -> float:
    """FLOPs of one training iteration of a GPT model as Megatron-LM counts them.

    Narayanan et al. 2021 (SC'21), Sec. 5.1: with full activation recomputation
    ``F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h))`` (four passes over the blocks: forward,
    recompute, backward twice as large; three over the logit layer); without it
    ``F = 72 B s l h^2 (1 + s/(6h) + V/(12 l h))``. Achieved FLOP/s per GPU is ``F`` over the
    iteration time and the GPU count: the figure their Tables 1 and 2 report.

    Parameters
    ----------
    model : Model
        A transformer preset (``num_layers``, ``hidden``, ``seq_len``, ``vocab`` set).
    batch : int
        Global batch B, sequences per iteration (all data-parallel replicas together).
    recompute : bool, default True

    Examples
    --------
    >>> f = megatron_iteration_flops(get_model("megatron_1t"), 3072)
    >>> round(f / 3072 / 1e15, 1)   # PFLOP per sequence of 2048 tokens
    16.7
    """
    shape = (model.num_layers, model.hidden, model.seq_len, model.vocab)
    if any(x is None for x in shape):
        raise ValueError(f"model {model.name!r}: Megatron's FLOP count needs a transformer shape")
    l, h, s, v = shape  # noqa: E741 (the paper's symbols)
    passes, head = (96, 16) if recompute else (72, 12)
    return float(passes * batch * s * l * h * h * (1 + s / (6 * h) + v / (head * l * h)))


# --------------------------------------------------------------------------- buckets


@dataclass(frozen=True)
class Bucket:
    """Gradients communicated together.

    Parameters
    ----------
    index : int
        Position in communication order (0 = first ready in backward).
    layers : tuple of int
        Indices into ``Model.layers``, in backward order (descending); the
        bucket is ready when the backward pass of all of them is done.
    bytes : int
        Gradient bytes in the bucket.
    """

    index: int
    layers: tuple[int, ...]
    bytes: int


def gradient_buckets(model: Model, bucket_bytes: float | None) -> tuple[Bucket, ...]:
    """Group gradients into PyTorch-DDP-style buckets, in backward order.

    Layers are visited last to first; a bucket takes consecutive layers until
    adding the next layer's gradient would exceed ``bucket_bytes`` (a layer
    larger than a bucket gets a bucket of its own; a layer is never split).
    Parameter-free layers add no bytes but join the current bucket, so every
    layer's backward compute belongs to exactly one bucket.

    Parameters
    ----------
    model : Model
    bucket_bytes : float or None
        Bucket capacity, bytes. ``None`` or ``<= 0`` gives one bucket with everything.

    Returns
    -------
    tuple of Bucket
        Bucket bytes sum to ``model.gradient_bytes``.

    Examples
    --------
    >>> m = model_from_layers("m", [dict(name=f"l{i}", params=10, forward_flops=1.0,
    ...                                  activation_bytes=1.0) for i in range(3)])
    >>> [(b.layers, b.bytes) for b in gradient_buckets(m, 80)]
    [((2, 1), 80), ((0,), 40)]
    """
    cap = bucket_bytes if bucket_bytes is not None and bucket_bytes > 0 else float("inf")
    groups: list[tuple[list[int], int]] = [([], 0)]
    for i in reversed(range(len(model.layers))):
        size = model.layers[i].params * model.bytes_per_param
        members, filled = groups[-1]
        if size > 0 and filled > 0 and filled + size > cap:
            groups.append(([], 0))
            members, filled = groups[-1]
        members.append(i)
        groups[-1] = (members, filled + size)
    return tuple(Bucket(k, tuple(members), filled) for k, (members, filled) in enumerate(groups))
