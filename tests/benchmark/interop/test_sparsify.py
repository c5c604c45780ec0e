"""sparsify checkpoints (cfg.json + sae.safetensors) read as variants, on known answers."""
import json

import pytest
import torch
from safetensors.torch import save_file

from benchmark.errors import UserError
from benchmark.interop import checkpoint_class, detect_format
from tasks.reconstruction import Reconstruction

from tests.benchmark.interop._toys import D, inverting, toy_dataset, trained

OFFSET = 0.5


def write_sparsify(folder, k: int, dtype=torch.bfloat16, **cfg_extra):
    """What SparseCoder.save_to_disk writes: its config plus d_in; weights in bf16 as sparsify trains."""
    W_enc, W_dec = inverting()
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"activation": "topk", "expansion_factor": 2, "normalize_decoder": True, "num_latents": 0, "k": k,
           "multi_topk": False, "skip_connection": False, "transcode": False, "d_in": D, **cfg_extra}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {"encoder.weight": W_enc.t(), "encoder.bias": torch.zeros(2 * D), "W_dec": W_dec,
               "b_dec": torch.full((D,), OFFSET)}
    save_file({n: t.to(dtype).contiguous() for n, t in tensors.items()}, str(folder / "sae.safetensors"))
    return folder


def build(folder, dataset):
    cls = checkpoint_class(folder)
    n_latents, _ = cls.configure(dataset, 1, {})
    return cls(dataset.input_shape, n_latents).eval()


def test_topk_with_k_equal_to_d_inverts_and_scores_r2_one(tmp_path):
    """Per sample at most d of the 2d ReLU codes are positive, so k = d keeps them all: x̂ = x."""
    dataset = toy_dataset()
    model = build(write_sparsify(tmp_path / "layers.0", k=D), dataset)
    assert detect_format(tmp_path / "layers.0") == "sparsify"
    assert Reconstruction().evaluate(trained(model), dataset, {})["r2"] == pytest.approx(1.0, abs=1e-12)


def test_a_smaller_k_keeps_exactly_k_codes_and_loses_r2(tmp_path):
    dataset = toy_dataset()
    model = build(write_sparsify(tmp_path / "sae", k=2), dataset)
    codes = model.encode(dataset.test)
    assert (codes != 0).sum(1).eq(2).all()
    assert Reconstruction().evaluate(trained(model), dataset, {})["r2"] < 0.9


def test_b_dec_is_subtracted_before_the_encoder(tmp_path):
    dataset = toy_dataset()
    model = build(write_sparsify(tmp_path / "sae", k=D), dataset)
    x = dataset.test
    expected = torch.cat([(x - OFFSET).relu(), (OFFSET - x).relu()], 1)
    assert torch.equal(model.encode(x), expected)


def test_groupmax_keeps_the_largest_of_each_group(tmp_path):
    """k = 2 groups of 6 latents: group 1 holds ReLU(x - c), group 2 ReLU(c - x)."""
    dataset = toy_dataset()
    model = build(write_sparsify(tmp_path / "sae", k=2, activation="groupmax"), dataset)
    x = dataset.test
    codes = model.encode(x)
    assert (codes != 0).sum(1).le(2).all()
    assert torch.equal(codes[:, :D].amax(1), (x - OFFSET).relu().amax(1))
    assert torch.equal(codes[:, D:].amax(1), (OFFSET - x).relu().amax(1))


@pytest.mark.parametrize("extra, message", [
    ({"transcode": True}, "transcode is set"),
    ({"skip_connection": True}, "skip_connection is set"),
    ({"activation": "softmax"}, "unknown sparsify activation 'softmax'"),
    ({"d_in": D + 1}, r"tensor 'encoder.weight' has shape \[12, 6\]"),
])
def test_bad_checkpoints_are_one_clear_line(tmp_path, extra, message):
    write_sparsify(tmp_path / "bad", k=2, **extra)
    with pytest.raises(UserError, match=message):
        checkpoint_class(tmp_path / "bad")


def test_a_missing_tensor_is_named(tmp_path):
    folder = write_sparsify(tmp_path / "sae", k=2)
    from safetensors.torch import load_file

    tensors = load_file(str(folder / "sae.safetensors"))
    del tensors["encoder.bias"]
    save_file(tensors, str(folder / "sae.safetensors"))
    with pytest.raises(UserError, match="lacks tensor 'encoder.bias'"):
        checkpoint_class(folder)


def test_a_bfloat16_file_reports_its_bfloat16_gap_and_a_float32_one_none(tmp_path):
    """Read as float32 either way; the bf16 one says how far a bf16 forward is from that."""
    half = checkpoint_class(write_sparsify(tmp_path / "bf16", k=D)).checkpoint
    full = checkpoint_class(write_sparsify(tmp_path / "fp32", k=D, dtype=torch.float32)).checkpoint
    assert (half.stored_dtype, full.stored_dtype) == (torch.bfloat16, torch.float32)
    assert torch.equal(half.W_enc, full.W_enc)  # these weights are exact in bf16
    assert full.half_precision_gap is None and "stored as" not in full.describe()
    assert 0 < half.half_precision_gap < 0.02
    assert f"stored as bfloat16, read as float32: a bfloat16 forward differs from it by up to " \
           f"{half.half_precision_gap:.2%} of the largest |x̂| on 8 probe inputs" in half.describe()
