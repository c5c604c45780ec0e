"""BatchTopK: k·B codes across the training batch, and the calibrated inference threshold."""
import pytest
import torch

from baselines import batchtopk
from baselines.batchtopk import BatchTopKSAE, keep_batch_topk, ranked_values, topk_selection


def test_keeps_exactly_k_times_batch_codes_in_training():
    pre = torch.rand(6, 20) + 0.1  # all positive: every kept value is non-zero
    codes = keep_batch_topk(pre, 3)
    assert int((codes != 0).sum()) == 3 * 6
    assert torch.equal(codes[codes != 0].sort().values, pre.flatten().topk(18).values.sort().values)


def test_codes_per_sample_follow_the_batch_not_k():
    # One sample with much larger activations takes every slot of the batch's budget.
    pre = torch.rand(4, 8)
    pre[0] += 10
    codes = keep_batch_topk(pre, 2)
    assert (codes != 0).sum(1).tolist() == [8, 0, 0, 0]


def test_a_larger_ranking_reused_selects_the_same_codes_and_gradients():
    """Training ranks max_k·B entries once for the thresholds and the selection: its first k·B
    give the codes and the gradient of ranking k·B alone; a ranking of the wrong batch does not."""
    pre = torch.randn(6, 20)
    alone, shared = pre.clone().requires_grad_(), pre.clone().requires_grad_()
    codes = keep_batch_topk(alone.relu(), 3)
    reused = keep_batch_topk(shared.relu(), 3, ranked_values(shared.relu().flatten(), 6 * 12))
    assert torch.equal(codes, reused)
    (codes * torch.arange(120.0).view(6, 20)).sum().backward()
    (reused * torch.arange(120.0).view(6, 20)).sum().backward()
    assert torch.equal(alone.grad, shared.grad)
    # A ranking of other values (larger ones: a higher threshold) selects other codes.
    other = keep_batch_topk(pre.relu(), 3, ranked_values(2 * pre.relu().flatten(), 6 * 12))
    assert not torch.equal(codes, other)


@pytest.mark.parametrize("shape", [(7,), (3, 11), (2, 4, 50)])
def test_ranked_values_are_topk_values(shape):
    """numpy's sort on the CPU gives torch.topk's values, in its order, for every row."""
    flat = torch.randn(*shape)
    count = shape[-1] // 2 + 1
    assert torch.equal(ranked_values(flat, count), flat.topk(count, dim=-1).values)
    assert torch.equal(ranked_values(flat, shape[-1]), flat.sort(dim=-1, descending=True).values)
    assert not torch.equal(ranked_values(flat, count), (-flat).topk(count, dim=-1).values)


def test_a_dtype_numpy_cannot_sort_ranks_with_torch_to_the_same_codes():
    """bfloat16 (and any device but the CPU) takes torch.topk's values: the same selection."""
    pre = (torch.rand(6, 20) + 0.1).bfloat16()
    assert torch.equal(ranked_values(pre.flatten(), 18), pre.flatten().topk(18).values)
    assert torch.equal(keep_batch_topk(pre, 3), topk_selection(pre.flatten(-2), 3, 6, 18).view_as(pre))


def test_bfloat16_ties_across_the_cut_are_counted_exactly():
    """bfloat16's 8-bit mantissa makes ties common, and its sums are not exact past 256: the
    count of entries at or above the threshold must still see one entry too many."""
    for seed in range(20):
        torch.manual_seed(seed)
        pre = (torch.rand(4, 250) + 0.1).bfloat16()  # 300 of 1,000 entries kept
        assert torch.equal(keep_batch_topk(pre, 75), topk_selection(pre.flatten(-2), 75, 4, 300).view_as(pre))


def test_a_stack_keeps_each_models_own_k_times_batch():
    """Per-model k on (M, B, n): model m keeps its own k_m·B largest, as it would alone."""
    pre = torch.rand(3, 5, 9) + 0.1
    k = torch.tensor([1, 2, 4])
    codes = keep_batch_topk(pre, k)
    for m in range(3):
        assert torch.equal(codes[m], keep_batch_topk(pre[m], int(k[m])))
        assert int((codes[m] != 0).sum()) == int(k[m]) * 5


@pytest.mark.parametrize("tie", ["none", "across the cut", "inside the kept set"])
def test_codes_are_torch_topks_bit_for_bit_ties_included(tie, monkeypatch):
    """The threshold path gives torch.topk's selection exactly. A positive tie across the cut at
    the k·B-th value (which topk breaks its own way) takes topk's path, so the codes still
    match; a tie among kept entries keeps them all either way and stays on the threshold path."""
    torch.manual_seed(0)
    pre = torch.randn(4, 8, 30).relu()
    k = torch.tensor([1, 3, 5, 2])
    ranked = pre[1].flatten().sort(descending=True).values
    if tie != "none":  # model 1's k·B-th largest value written into its neighbour across the cut,
        # or its (k·B - 1)-th into the k·B-th
        source, target = (3 * 8 - 1, 3 * 8) if tie == "across the cut" else (3 * 8 - 2, 3 * 8 - 1)
        pre[1].view(-1)[(pre[1].flatten() == ranked[target]).nonzero()[0]] = ranked[source]
        assert int((pre[1] == ranked[source]).sum()) == 2 and ranked[source] > 0
    expected = topk_selection(pre.flatten(-2), k, 8, 5 * 8).view_as(pre)
    if tie != "across the cut":
        monkeypatch.setattr(batchtopk, "topk_selection", None)  # the threshold path alone
    assert torch.equal(keep_batch_topk(pre, k), expected)
    assert torch.equal(keep_batch_topk(pre, k, ranked_values(pre.flatten(-2), 5 * 8)), expected)
    assert not torch.equal(keep_batch_topk(pre, k + 1), expected)


def model_with(k=2, n_latents=8, decay=0.5):
    return BatchTopKSAE((4,), n_latents, k=k, max_k_factor=2, threshold_decay=decay)


def test_thresholds_track_the_jB_th_largest_activation():
    model = model_with().train()
    first = torch.arange(32.0).view(4, 8)  # batch of 4: the (j·4)-th largest, j = 1..4
    model.select(first)
    assert model.thresholds.tolist() == [28.0, 24.0, 20.0, 16.0]
    model.select(first + 4)  # EMA with decay 0.5: halfway to the new values
    assert model.thresholds.tolist() == [30.0, 26.0, 22.0, 18.0]


def test_eval_thresholds_each_sample_alone_and_follows_inference_k():
    model = model_with().train()
    model.select(torch.arange(32.0).view(4, 8))  # thresholds [28, 24, 20, 16]
    model.eval()
    sample = torch.arange(8.0).view(1, 8) * 3  # 0, 3, ..., 21
    assert (model.select(sample) != 0).sum().item() == 0  # nothing above 24 (k = 2)...
    sample[0, 7] = 25.0
    assert model.select(sample)[0].nonzero().flatten().tolist() == [7]  # ...until one is
    model.set_inference_k(4)  # threshold 16: 18 and 25 pass
    assert model.select(sample)[0].nonzero().flatten().tolist() == [6, 7]


def test_uncalibrated_eval_falls_back_to_per_sample_topk():
    model = model_with(k=3).eval()
    codes = model.select(torch.rand(5, 8) + 0.1)
    assert ((codes != 0).sum(1) == 3).all()


def test_inference_k_is_limited_to_the_calibrated_range():
    model = model_with(k=2)
    with pytest.raises(ValueError):
        model.set_inference_k(model.max_k + 1)


def test_training_encode_keeps_k_times_batch_codes():
    torch.manual_seed(0)
    model = BatchTopKSAE((4,), 16, k=3).train()
    with torch.no_grad():
        model.b_enc.fill_(10.0)  # every pre-activation positive
    codes = model.encode(torch.randn(6, 4))
    assert int((codes != 0).sum()) == 3 * 6
    assert bool(model.calibrated)
