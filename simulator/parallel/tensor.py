"""Megatron-style tensor parallelism: how a layer splits over T devices and what it must all-reduce.

Shoeybi et al. 2019 split each transformer block's attention by heads and its MLP
by columns then rows, so every device holds 1/T of the block's weights and does
1/T of its FLOPs and activation traffic. Two conjugate operators keep the results
exact: ``g`` all-reduces in forward (after attention and after the MLP) and ``f``
all-reduces in backward (before each), so a block costs **2 all-reduces in forward
and 2 in backward**, each of the block's output activations, ``b·s·h`` elements at
16 bits. The vocabulary-parallel embedding all-reduces once in forward; the
vocabulary-parallel output layer (``lm_head``) once in backward (its small
cross-entropy all-reduces of ``b·s`` scalars are ignored). Full activation
recomputation (``parallelism.recompute``) re-runs each forward in backward,
all-reduces included.

Communication volume
--------------------
With a ring all-reduce each of the T ranks sends ``2(T−1)/T · n`` bytes for an
``n``-byte message. For one block and one microbatch, with ``n = 2·b·s·h`` bytes:

- per device, per pass (forward *or* backward): ``2 · 2(T−1)/T · 2bsh = 8·b·s·h·(T−1)/T`` **bytes**;
- per device, forward + backward: ``16·b·s·h·(T−1)/T`` bytes, which is Narayanan et al.
  2021's "8bsh(t−1)/t per layer per device for each microbatch" counted in *elements*.

Other layer kinds (convolutions, custom layer lists) have no tensor-parallel form
here; asking for ``tensor > 1`` with them is a config error.
"""

from __future__ import annotations

import dataclasses

from simulator.config import ConfigError
from simulator.workloads import Layer, Model

__all__ = ["ALLREDUCES", "check_recompute", "check_tensor_parallel", "message_bytes", "split_layer"]

#: layer kind -> (all-reduces in forward, all-reduces in backward) within the tensor group
ALLREDUCES: dict[str, tuple[int, int]] = {"transformer": (2, 2), "embedding": (1, 0), "lm_head": (0, 1)}


def check_tensor_parallel(model: Model, tensor: int) -> None:
    """``ConfigError`` unless ``model`` can be split ``tensor`` ways (heads and hidden divisible)."""
    if tensor == 1:
        return
    if model.hidden is None or model.seq_len is None or not any(la.kind == "transformer" for la in model.layers):
        raise ConfigError(f"parallelism.tensor: {tensor}-way tensor parallelism splits transformer blocks, "
                          f"and {model.name} has none (use bert_large, gpt2_xl, gpt3_175b, a megatron_* preset, "
                          "layers of kind: transformer_block, or tensor: 1)")
    for what, value in (("attention heads", model.heads), ("hidden size", model.hidden)):
        if value is not None and value % tensor:
            raise ConfigError(f"parallelism.tensor: {tensor} must divide {model.name}'s {value} {what}")


def check_recompute(model: Model, recompute: str) -> None:
    """``ConfigError`` when recomputation is asked of a model without transformer blocks (nothing to re-run)."""
    if recompute != "none" and not any(la.kind == "transformer" for la in model.layers):
        what = "the attention core of" if recompute == "selective" else "the activations of"
        raise ConfigError(f"parallelism.recompute: {recompute} recomputation re-runs {what} transformer blocks, and "
                          f"{model.name} has none; use recompute: none")


def split_layer(layer: Layer, tensor: int, sequence_parallel: bool = False) -> Layer:
    """The 1/T share of ``layer`` one device holds and computes (the whole layer if it does not split).

    A split layer's GEMM and attention work is divided by T, and so is all of a block's attention core
    (``Work.core``: each rank runs a/T heads, an unfused core's softmax and dropout included); its other
    elementwise work (LayerNorm, dropout, residual adds, GeLU of a block; the head's LayerNorm and
    softmax) is replicated on every rank of the group unless ``sequence_parallel`` splits it along the
    sequence (Korthikanti et al. 2022, §4.2.2). Parameters are divided by T either way (as before).
    """
    if tensor == 1 or layer.kind not in ALLREDUCES:
        return layer
    # each weight matrix is split along its longer side (Megatron's column / row parallel GEMMs)
    matrices = tuple((-(-m // tensor), n) if m >= n else (m, -(-n // tensor)) for m, n in layer.matrices)
    work = tuple(w.split(tensor) if w.kind != "elementwise" or w.core or sequence_parallel else w for w in layer.work)
    return dataclasses.replace(layer, params=-(-layer.params // tensor), forward_flops=sum(w.flops for w in work),
                               activation_bytes=layer.activation_bytes / tensor,
                               memory_bytes=sum(w.bytes for w in work), matrices=matrices, work=work)


def message_bytes(model: Model, microbatch: int) -> int:
    """Bytes of one tensor-parallel all-reduce: a microbatch's block output, ``b·s·h`` values at the training
    precision (``Model.element_bytes``: 2 at mixed precision)."""
    assert model.seq_len is not None and model.hidden is not None
    return int(microbatch * model.seq_len * model.hidden * model.element_bytes)

