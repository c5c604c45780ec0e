"""`benchmark perf`: the command and its CSV, the FLOP count against hand-computed values, and the
overcomplete side-by-side's code-equality check. No timing assertions: speeds are measured by
the command itself, never asserted in a unit test."""
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.perf import peers
from benchmark.perf import stacked
from benchmark.perf import throughput as perf
from benchmark.cli import main
from benchmark.registry import VARIANTS

TINY = ["--batch", "16", "--n-latents", "64", "--input-shape", "3", "8", "8", "--steps", "1", "--peak-size", "64"]


def test_perf_writes_one_well_formed_row_per_variant(tmp_path, capsys):
    out = tmp_path / "perf.csv"
    assert main(["perf", "--variant", "relu", "topk", *TINY, "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == perf.PERF_COLUMNS
    assert list(table.variant) == ["relu", "topk"]
    assert (table.batch == 16).all() and (table.n_latents == 64).all() and (table.input_shape == "3x8x8").all()
    assert (table[["samples_per_s", "gflops", "peak_gflops"]] > 0).all().all()
    assert table.frac_of_peak.tolist() == pytest.approx((table.gflops / table.peak_gflops).tolist())
    assert "of peak" in capsys.readouterr().out


def test_perf_refuses_an_unknown_variant(tmp_path, capsys):
    assert main(["perf", "--variant", "nope", *TINY, "--out", str(tmp_path / "p.csv")]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_default_variants_are_those_that_train_on_bare_images():
    names = perf.image_variants()
    assert {"relu", "topk", "mp", "tensor", "conv"} <= set(names)
    assert "supervised" not in names  # needs concept labels


def test_conv_latents_are_rounded_to_its_step():
    model = perf.build_variant("conv", (3, 32, 32), 100, torch.device("cpu"))
    assert model.n_latents % 64 == 0  # 8×8 bottleneck


@pytest.mark.parametrize("input_needs_grad, products", [(False, 2), (True, 3)])
def test_flops_of_a_bare_linear_layer_step(input_needs_grad, products):
    """Forward x·W, backward x^T·g (and g·W^T when x needs a gradient): B·d·K multiply-adds
    each, 2 FLOPs per multiply-add."""
    batch, d, k = 8, 12, 5
    layer = nn.Linear(d, k, bias=False)
    x = torch.randn(batch, d, requires_grad=input_needs_grad)
    flops = perf.count_flops(lambda: layer(x).sum().backward())
    assert flops == products * 2 * batch * d * k
    assert perf.gflops(flops, seconds=0.5) == pytest.approx(products * 2 * batch * d * k / 0.5 / 1e9)


def test_flops_of_a_relu_sae_training_step():
    """Encoder forward, decoder forward, decoder backward (2 products), encoder backward (the
    weight's product; b_dec's gradient is a vector-matrix product, d·K; x needs none)."""
    batch, shape, k = 16, (3, 4, 4), 32
    d = 48
    model = VARIANTS.get("relu")(shape, k)
    step = perf.step_runner(model, torch.rand(batch, *shape))
    assert perf.count_flops(step) == 5 * 2 * batch * d * k + 2 * d * k


def test_flops_of_a_topk_step_count_the_sparse_decode():
    """Dense encoder (forward, weight gradient) plus the k-atom decode and its two backward
    products, B·k·d multiply-adds each."""
    batch, shape, n, k = 16, (3, 4, 4), 64, 2
    d = 48
    model = VARIANTS.get("topk")(shape, n, k=k)
    step = perf.step_runner(model, torch.rand(batch, *shape))
    assert perf.count_flops(step) == 2 * 2 * batch * d * n + 2 * d * n + 3 * 2 * batch * k * d


# ----- overcomplete -----
def overcomplete_or_skip():
    oc = peers.load_overcomplete()
    if oc is None:
        pytest.skip("overcomplete is not installed (pip install 'sae-benchmark[peers]')")
    return oc


def test_topk_codes_equal_overcomplete_with_mapped_weights():
    oc = overcomplete_or_skip()
    torch.manual_seed(0)
    x = torch.rand(32, 3, 4, 4)
    ours, theirs = peers.topk_pair(oc, x.shape[1:], 64, 4, x)
    agreement = peers.code_agreement(*peers.encode_both(ours, theirs, x, peers.their_input(ours, x)))
    assert agreement == {"max_rel_code_diff": pytest.approx(0, abs=1e-5), "same_support_frac": 1.0}
    with torch.no_grad():
        theirs.encoder.final_block[0].bias.zero_()  # forget b_dec and b_enc: the check must see it
    wrong = peers.code_agreement(*peers.encode_both(ours, theirs, x, peers.their_input(ours, x)))
    assert wrong["max_rel_code_diff"] > 1e-2 and wrong["same_support_frac"] < 1


def test_mp_codes_equal_overcomplete_with_mapped_atoms():
    oc = overcomplete_or_skip()
    torch.manual_seed(0)
    x = torch.rand(32, 3, 4, 4)
    ours, theirs = peers.mp_pair(oc, x.shape[1:], 64, 5, x)
    agreement = peers.code_agreement(*peers.encode_both(ours, theirs, x, peers.their_mp_input(ours, x)))
    assert agreement == {"max_rel_code_diff": pytest.approx(0, abs=1e-5), "same_support_frac": 1.0}
    wrong = peers.code_agreement(*peers.encode_both(ours, theirs, x, x.flatten(1)))  # b_dec not removed
    assert wrong["max_rel_code_diff"] > 1e-2


def test_peers_without_overcomplete_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(peers, "load_overcomplete", lambda: None)
    out = tmp_path / "perf.csv"
    assert main(["perf", "--variant", "relu", *TINY, "--peers", "--out", str(out)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if "overcomplete" in l]
    assert lines == ["peers: overcomplete is not installed (pip install 'sae-benchmark[peers]'); comparison skipped"]
    assert out.exists() and not (tmp_path / "perf_peers.csv").exists()


# ----- perf --stack -----
STACK_TINY = ["--batch", "16", "--n-latents", "32", "--input-shape", "12", "--steps", "1"]


@pytest.mark.parametrize("name", stacked.stackable_variants())
def test_a_stack_does_each_models_products_once(name):
    """The floor counts a stacked step's FLOPs over M: the products of one model's own step, no
    more (a stack that multiplied padding, or every model by every model's weights, would not)."""
    x = torch.randn(16, 12, generator=torch.Generator().manual_seed(0))
    row = stacked.measure_stack(name, x, n_latents=32, count=3, repeats=1)
    torch.manual_seed(0)
    alone = perf.count_flops(perf.step_runner(perf.build_variant(name, (12,), 32, torch.device("cpu")), x))
    assert row.flops_per_model == alone > 0
    assert row.floor_ms_per_model == pytest.approx(row.flops_per_model / (row.bmm_gflops * 1e9) * 1e3)


def test_perf_stack_writes_a_row_per_stackable_variant_with_its_floor(tmp_path, capsys):
    out = tmp_path / "perf.csv"
    assert main(["perf", "--stack", "3", "--variant", "relu", "supervised", *STACK_TINY, "--out", str(out)]) == 0
    table = pd.read_csv(tmp_path / "perf_stacked.csv")
    assert list(table.variant) == ["relu"] and (table.models == 3).all()  # supervised does not stack
    (relu,) = table.itertuples()
    batch, d, k = 16, 12, 32
    assert relu.flops_per_model == 5 * 2 * batch * d * k + 2 * d * k  # as test_flops_of_a_relu_sae_training_step
    assert relu.speedup == pytest.approx(relu.single_ms / relu.stacked_ms_per_model)
    printed = capsys.readouterr().out
    assert "supervised: not stackable" in printed and "stacked/floor" in printed


@pytest.mark.parametrize("models", ["1", "-2"])
def test_perf_stack_refuses_fewer_than_two_models(tmp_path, capsys, models):
    assert main(["perf", "--stack", models, *STACK_TINY, "--out", str(tmp_path / "perf.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --stack needs at least 2 models, got {models}"
    assert list(tmp_path.iterdir()) == []
