"""Workload presets against published counts; custom models; gradient buckets."""

from __future__ import annotations

import doctest
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import workloads
from simulator.workloads import (
    ACT_BYTES,
    PRESETS,
    Layer,
    Model,
    get_model,
    gradient_buckets,
    model_from_layers,
)

MIB = 2**20


# ------------------------------------------------------------------ published figures


def test_resnet50_matches_torchvision():
    # torchvision ResNet50_Weights.IMAGENET1K_V1 meta: num_params 25,557,032,
    # "GFLOPS" 4.09 (multiply-adds); FLOP = 2 x MAC here.
    model = get_model("resnet50")
    assert model.parameters == 25_557_032
    assert model.forward_flops == pytest.approx(2 * 4.09e9, rel=0.03)


def test_resnet50_has_fifty_weight_layers_plus_four_projections():
    # He et al. 2016: 1 stem conv + 16 bottlenecks x 3 convs + 1 fc = 50.
    names = [layer.name for layer in get_model("resnet50").layers]
    convs = [n for n in names if "conv" in n]
    projections = [n for n in names if n.endswith("downsample.0")]
    assert len(convs) + names.count("fc") == 50
    assert len(projections) == 4


def test_resnet50_shapes_flow_through_the_network():
    layers = {layer.name: layer for layer in get_model("resnet50").layers}
    # stem: 64 x 112 x 112 after the 7x7/2 conv; 2048 x 7 x 7 before pooling.
    assert layers["conv1"].activation_bytes == 64 * 112 * 112 * ACT_BYTES
    assert layers["layer4.2.add"].activation_bytes == 2048 * 7 * 7 * ACT_BYTES
    assert layers["avgpool"].activation_bytes == 2048 * ACT_BYTES
    assert layers["fc"].params == 2048 * 1000 + 1000


def test_vgg16_matches_torchvision():
    # torchvision VGG16_Weights.IMAGENET1K_V1 meta: num_params 138,357,544, "GFLOPS" 15.47.
    model = get_model("vgg16")
    assert model.parameters == 138_357_544
    assert model.forward_flops == pytest.approx(2 * 15.47e9, rel=0.03)
    weighted = [layer for layer in model.layers if layer.params > 0]
    assert len(weighted) == 16  # 13 conv + 3 fc: the "16" in VGG-16


def test_bert_large_matches_published_counts():
    # Devlin et al. 2019: BERT-large 340M. HuggingFace bert-large-uncased BertModel has
    # 335,141,888 parameters including the pooler (h^2 + h), which the preset omits.
    model = get_model("bert_large")
    h = 1024
    assert model.parameters == 335_141_888 - (h * h + h)
    assert model.parameters == pytest.approx(340e6, rel=0.03)
    assert (model.num_layers, model.hidden, model.heads, model.seq_len) == (24, 1024, 16, 512)


def test_gpt2_xl_matches_published_counts():
    # HuggingFace gpt2-xl: 1,557,611,200 parameters (tied LM head); "1.5B" in Radford et al.
    model = get_model("gpt2_xl")
    assert model.parameters == 1_557_611_200
    assert (model.num_layers, model.hidden, model.heads, model.seq_len) == (48, 1600, 25, 1024)


def test_gpt3_matches_published_parameter_count():
    # Brown et al. 2020, Table 2.1: GPT-3 175B has 175.0 B parameters.
    assert get_model("gpt3_175b").parameters == pytest.approx(175.0e9, rel=0.01)


def test_gpt3_training_compute_matches_brown_et_al():
    # Brown et al. 2020, Table D.1: 3.14e23 FLOP to train GPT-3 175B on 300 B tokens,
    # counted as 6 N D, which ignores attention (<10 % of compute, their footnote).
    model = get_model("gpt3_175b")
    per_token = model.forward_flops / model.seq_len
    total = 3 * per_token * 300e9
    assert 1.0 <= total / 3.14e23 <= 1.10


@pytest.mark.parametrize("name", ["bert_large", "gpt2_xl", "gpt3_175b"])
def test_transformer_flops_follow_megatron_formula(name):
    # Narayanan et al. 2021 (Megatron-LM, SC'21), Sec. 5.1: with activation recomputation
    # one iteration costs F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)) FLOPs: four passes
    # over the blocks (forward, recompute, 2 x backward) and three over the logits.
    m = get_model(name)
    b, s, n, h, v = 1, m.seq_len, m.num_layers, m.hidden, m.vocab
    blocks = sum(x.forward_flops for x in m.layers if x.name.startswith("block"))
    head = sum(x.forward_flops for x in m.layers if x.name == "lm_head")
    megatron = 96 * b * s * n * h * h * (1 + s / (6 * h) + (v / (16 * n * h) if head else 0))
    assert 4 * blocks + 3 * head == pytest.approx(megatron, rel=1e-12)


def test_resnet101_matches_torchvision():
    # torchvision ResNet101_Weights.IMAGENET1K_V1 meta: num_params 44,549,160, "GFLOPS" 7.80 (MACs).
    model = get_model("resnet101")
    assert model.parameters == 44_549_160
    assert model.forward_flops == pytest.approx(2 * 7.80e9, rel=0.03)
    convs = [x for x in model.layers if "conv" in x.name]
    assert len(convs) + 1 == 101  # 1 stem conv + 33 bottlenecks x 3 convs + 1 fc


def test_inception_v3_matches_torchvision():
    # torchvision Inception_V3_Weights.IMAGENET1K_V1 meta: num_params 27,161,264 (with the auxiliary
    # classifier, as trained), "GFLOPS" 5.71 (MACs); without AuxLogits the model has 23,834,568.
    model = get_model("inception_v3")
    assert model.parameters == 27_161_264
    assert workloads._inception_v3(aux_logits=False).parameters == 23_834_568
    assert model.forward_flops == pytest.approx(2 * 5.71e9, rel=0.03)
    layers = {x.name: x for x in model.layers}
    # 299 x 299 in; Mixed_5b's output is 256 x 35 x 35, Mixed_6a's 768 x 17 x 17, Mixed_7c's 2048 x 8 x 8
    assert layers["Mixed_5b.concat"].activation_bytes == 256 * 35 * 35 * ACT_BYTES
    assert layers["Mixed_6a.concat"].activation_bytes == 768 * 17 * 17 * ACT_BYTES
    assert layers["Mixed_7c.concat"].activation_bytes == 2048 * 8 * 8 * ACT_BYTES
    assert layers["fc"].params == 2048 * 1000 + 1000


MEGATRON_SHAPES = [  # (preset, layers, hidden, heads, seq, published billions of parameters)
    ("megatron_1.7b", 24, 2304, 24, 2048, 1.7),      # Narayanan et al. SC'21, Table 1
    ("megatron_18.4b", 40, 6144, 48, 2048, 18.4),
    ("megatron_145.6b", 80, 12288, 96, 2048, 145.6),
    ("megatron_1t", 128, 25600, 160, 2048, 1008.0),
    ("megatron_175b", 96, 12288, 96, 2048, 174.6),   # their Table 2
    ("megatron_1.2b", 40, 1536, 16, 1024, 1.2),      # Shoeybi et al. 2019, Table 1
    ("megatron_8.3b", 72, 3072, 32, 1024, 8.3),
]


@pytest.mark.parametrize(("name", "l", "h", "a", "s", "billions"), MEGATRON_SHAPES)
def test_megatron_gpt_shapes_follow_the_papers_parameter_formula(name, l, h, a, s, billions):  # noqa: E741
    # Narayanan et al. 2021, Sec. 5.1: P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)), V = 51200.
    # The preset also holds the final LayerNorm (2h), which the formula leaves out.
    model = get_model(name)
    v = 51200
    formula = 12 * l * h * h * (1 + 13 / (12 * h) + (v + s) / (12 * l * h))
    assert model.parameters == pytest.approx(formula + 2 * h, rel=1e-12)
    assert (model.num_layers, model.hidden, model.heads, model.seq_len, model.vocab) == (l, h, a, s, v)
    # the papers print the count rounded to 0.1 B ("1.7B" is 1.65 B, rounded up from the formula)
    assert model.parameters / 1e9 == pytest.approx(billions, abs=0.051)


@pytest.mark.parametrize("name", ["megatron_1.7b", "megatron_1t", "gpt3_175b"])
@pytest.mark.parametrize("recompute", [True, False])
def test_megatron_iteration_flops_is_the_papers_formula(name, recompute):
    # Narayanan et al. 2021, Sec. 5.1: 96 B s l h^2 (1 + s/6h + V/16lh) with recomputation,
    # 72 B s l h^2 (1 + s/6h + V/12lh) without; checked against the layers' own FLOPs: the blocks
    # run 4 (3) forward-equivalents, the logit layer 3 (recomputation does not redo it).
    m = get_model(name)
    batch = 8
    blocks = sum(x.forward_flops for x in m.layers if x.kind == "transformer")
    head = sum(x.forward_flops for x in m.layers if x.kind == "lm_head")
    expected = batch * ((4 if recompute else 3) * blocks + 3 * head)
    assert workloads.megatron_iteration_flops(m, batch, recompute=recompute) == pytest.approx(expected, rel=1e-12)


def test_megatron_iteration_flops_needs_a_transformer():
    with pytest.raises(ValueError, match="transformer shape"):
        workloads.megatron_iteration_flops(get_model("resnet50"), 1)


def test_cnn_presets_have_no_transformer_shape():
    for name in ("resnet50", "resnet101", "inception_v3", "vgg16"):
        model = get_model(name)
        assert model.sample_unit == "images"
        assert model.num_layers is model.hidden is model.seq_len is model.vocab is None


def test_presets_are_well_formed():
    for model in PRESETS.values():
        names = [layer.name for layer in model.layers]
        assert len(set(names)) == len(names)
        assert model.gradient_bytes == model.parameters * 4
        assert all(layer.forward_bytes > 0 for layer in model.layers)


def test_unknown_model_raises_keyerror_listing_known_names():
    with pytest.raises(KeyError) as info:
        get_model("resnet51")
    for name in PRESETS:
        assert name in str(info.value)
    assert get_model("ResNet50") is PRESETS["resnet50"]


# --------------------------------------------------------------------- custom models


def _spec(name, params, flops=1e6, act=1e3):
    return {"name": name, "params": params, "forward_flops": flops, "activation_bytes": act}


def test_model_from_layers_builds_a_model():
    model = model_from_layers(
        "tiny", [_spec("a", 10), {**_spec("b", 0), "memory_bytes": 7.0}], bytes_per_param=2
    )
    assert model.parameters == 10
    assert model.forward_flops == 2e6
    assert model.gradient_bytes == 20
    assert model.layers[0].forward_bytes == 2e3  # derived: 2 x activation_bytes
    assert model.layers[1].forward_bytes == 7.0  # given


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([_spec("a", 1), {"name": "b", "params": 1}], r"layers\[1\]: missing"),
        ([{**_spec("a", 1), "flops": 3}], r"layers\[0\]: unexpected \['flops'\]"),
        ([_spec("a", -1)], "params must be >= 0"),
        ([_spec("a", 1.5)], "params must be an integer"),
        ([_spec("a", 1), _spec("a", 2)], "duplicate layer names"),
        ([], "at least one layer"),
    ],
)
def test_model_from_layers_rejects_bad_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        model_from_layers("bad", layers)


def test_model_accepts_a_list_and_stores_a_tuple():
    model = Model("m", [Layer("a", 1, 1.0, 1.0)])  # type: ignore[arg-type]
    assert isinstance(model.layers, tuple)


# --------------------------------------------------------------------------- buckets


def _model(params: list[int]) -> Model:
    return model_from_layers("m", [_spec(f"l{i}", p) for i, p in enumerate(params)])


def _check_buckets(model: Model, cap: float | None) -> None:
    buckets = gradient_buckets(model, cap)
    limit = cap if cap is not None and cap > 0 else math.inf
    assert [b.index for b in buckets] == list(range(len(buckets)))
    # backward order: every layer once, last layer first
    flat = [i for b in buckets for i in b.layers]
    assert flat == list(reversed(range(len(model.layers))))
    # bytes conserved, and each bucket's bytes are its layers' gradients
    assert sum(b.bytes for b in buckets) == model.gradient_bytes
    for bucket in buckets:
        grads = [model.layers[i].params * model.bytes_per_param for i in bucket.layers]
        assert bucket.bytes == sum(grads)
        assert bucket.bytes <= limit or sum(g > 0 for g in grads) == 1
    # greedy: the next bucket's first gradient would not have fitted
    for current, following in zip(buckets, buckets[1:], strict=False):
        first = next(model.layers[i].params for i in following.layers if model.layers[i].params)
        assert current.bytes + first * model.bytes_per_param > limit
    assert gradient_buckets(model, cap) == buckets  # deterministic


@given(
    params=st.lists(st.integers(0, 1000), min_size=1, max_size=40),
    cap=st.one_of(st.none(), st.integers(-10, 5000)),
)
def test_bucket_invariants_hold_for_any_model(params, cap):
    _check_buckets(_model(params), cap)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_bucket_invariants_hold_for_presets(name):
    _check_buckets(get_model(name), 25 * MIB)


def test_resnet50_at_25_mib_needs_at_least_four_buckets():
    model = get_model("resnet50")  # 102 MB of fp32 gradients
    buckets = gradient_buckets(model, 25 * MIB)
    assert len(buckets) >= math.ceil(model.gradient_bytes / (25 * MIB))
    assert buckets[0].layers[0] == len(model.layers) - 1  # fc's gradient goes first


def test_a_layer_larger_than_a_bucket_gets_its_own():
    model = get_model("vgg16")  # fc6: 25088 x 4096 weights, about 411 MB in fp32
    fc6 = next(i for i, layer in enumerate(model.layers) if layer.name == "fc6")
    (home,) = [b for b in gradient_buckets(model, 25 * MIB) if fc6 in b.layers]
    assert [i for i in home.layers if model.layers[i].params] == [fc6]
    assert home.bytes > 25 * MIB


@pytest.mark.parametrize("cap", [None, 0, -1])
def test_no_bucket_size_means_one_bucket(cap):
    model = _model([3, 0, 5])
    (only,) = gradient_buckets(model, cap)
    assert only == workloads.Bucket(0, (2, 1, 0), 32)


def test_parameter_free_layers_join_a_bucket_without_bytes():
    model = _model([0, 10, 0, 10, 0])  # 40-byte gradients, cap 40
    buckets = gradient_buckets(model, 40)
    assert [(b.layers, b.bytes) for b in buckets] == [((4, 3, 2), 40), ((1, 0), 40)]


def test_docstring_examples_run():
    assert doctest.testmod(workloads).failed == 0
