"""dictionary_learning checkpoints (ae.pt state dict + config.json) read as variants, on known answers."""
import json

import pytest
import torch

from benchmark.errors import UserError
from benchmark.interop import checkpoint_class, detect_format
from tasks.reconstruction import Reconstruction

from tests.benchmark.interop._toys import D, inverting, toy_dataset, trained

OFFSET = 0.25


def write_dl(folder, dict_class: str, state: dict, **trainer_extra):
    """What trainSAE writes: config.json {"trainer": trainer.config, "buffer": ...}, ae.pt state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    trainer = {"trainer_class": "Trainer", "dict_class": dict_class, "activation_dim": D, "dict_size": 2 * D,
               "lr": 1e-3, "steps": 100, "seed": 0, "layer": 3, "lm_name": "toy", **trainer_extra}
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"d_submodule": D}}))
    torch.save(state, folder / "ae.pt")
    return folder


def linear_state(bias_name: str = "b_dec") -> dict:
    """nn.Linear layout: encoder.weight [dict_size, activation_dim], decoder.weight [activation_dim, dict_size]."""
    W_enc, W_dec = inverting()
    return {"encoder.weight": W_enc.t().contiguous(), "encoder.bias": torch.zeros(2 * D),
            "decoder.weight": W_dec.t().contiguous(), bias_name: torch.full((D,), OFFSET)}


def build(folder, dataset):
    cls = checkpoint_class(folder)
    n_latents, _ = cls.configure(dataset, 1, {})
    return cls(dataset.input_shape, n_latents).eval()


def test_autoencoder_that_inverts_scores_r2_one(tmp_path):
    dataset = toy_dataset()
    model = build(write_dl(tmp_path / "trainer_0", "AutoEncoder", linear_state("bias")), dataset)
    assert detect_format(tmp_path / "trainer_0") == "dictionary_learning"
    assert Reconstruction().evaluate(trained(model), dataset, {})["r2"] == pytest.approx(1.0, abs=1e-12)
    x = dataset.test  # `bias` is subtracted before the encoder
    assert torch.equal(model.encode(x)[:, :D], (x - OFFSET).relu())


def test_autoencoder_new_has_no_input_centring(tmp_path):
    state = linear_state("decoder.bias")
    model = build(write_dl(tmp_path / "new", "AutoEncoderNew", state), toy_dataset())
    x = toy_dataset().test
    assert torch.equal(model.encode(x)[:, :D], x.relu())
    assert torch.allclose(model.decode(model.encode(x)), x + OFFSET, atol=1e-6)


def test_topk_keeps_exactly_k_codes(tmp_path):
    state = dict(linear_state(), k=torch.tensor(3, dtype=torch.int), threshold=torch.tensor(-1.0))
    model = build(write_dl(tmp_path / "topk", "AutoEncoderTopK", state, k=3), toy_dataset())
    assert (model.encode(toy_dataset().test) != 0).sum(1).eq(3).all()


def test_batch_topk_uses_its_scalar_threshold(tmp_path):
    dataset = toy_dataset()
    state = dict(linear_state(), k=torch.tensor(3, dtype=torch.int), threshold=torch.tensor(0.4))
    model = build(write_dl(tmp_path / "btk", "BatchTopKSAE", state, k=3), dataset)
    acts = torch.cat([(dataset.test - OFFSET).relu(), (OFFSET - dataset.test).relu()], 1)
    assert torch.equal(model.encode(dataset.test), torch.where(acts > 0.4, acts, torch.zeros_like(acts)))


def test_jumprelu_threshold_is_honoured_without_centring(tmp_path):
    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    threshold = torch.linspace(-0.2, 1.0, 2 * D)
    state = {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.full((D,), OFFSET),
             "threshold": threshold}
    model = build(write_dl(tmp_path / "jump", "JumpReluAutoEncoder", state), dataset)
    pre = dataset.test @ W_enc  # apply_b_dec_to_input is False in dictionary_learning
    expected = (pre * (pre > threshold)).relu()
    assert torch.equal(model.encode(dataset.test), expected)
    assert not torch.equal(expected, pre.relu())  # the threshold changed something


def test_gated_autoencoder(tmp_path):
    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    state = {"encoder.weight": W_enc.t().contiguous(), "decoder.weight": W_dec.t().contiguous(),
             "decoder_bias": torch.zeros(D), "gate_bias": torch.full((2 * D,), -0.3),
             "mag_bias": torch.zeros(2 * D), "r_mag": torch.zeros(2 * D)}
    model = build(write_dl(tmp_path / "gated", "GatedAutoEncoder", state), dataset)
    h = dataset.test @ W_enc
    assert torch.equal(model.encode(dataset.test), (h > 0.3) * h.relu())


def test_unknown_class_missing_key_and_corrupted_file(tmp_path):
    with pytest.raises(UserError, match="unknown dictionary_learning dict_class 'CrossCoder'"):
        checkpoint_class(write_dl(tmp_path / "a", "CrossCoder", linear_state()))
    state = linear_state("bias")
    del state["encoder.bias"]
    with pytest.raises(UserError, match="lacks tensor 'encoder.bias'"):
        checkpoint_class(write_dl(tmp_path / "b", "AutoEncoder", state))
    folder = write_dl(tmp_path / "c", "AutoEncoder", linear_state("bias"))
    (folder / "ae.pt").write_bytes((folder / "ae.pt").read_bytes()[:100])
    with pytest.raises(UserError, match="not a readable torch state dict"):
        checkpoint_class(folder)


def test_jumprelu_exports_to_saelens_without_input_centring(tmp_path):
    """apply_b_dec_to_input false: SAELens' jumprelu then computes what JumpReluAutoEncoder does."""
    from benchmark.interop.export import export_saelens

    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    state = {"W_enc": W_enc, "b_enc": torch.full((2 * D,), 0.1), "W_dec": W_dec, "b_dec": torch.full((D,), OFFSET),
             "threshold": torch.linspace(-0.2, 1.0, 2 * D)}
    model = build(write_dl(tmp_path / "jump", "JumpReluAutoEncoder", state), dataset)
    folder = export_saelens(model, tmp_path / "export")
    assert json.loads((folder / "cfg.json").read_text())["apply_b_dec_to_input"] is False
    back, x = build(folder, dataset), dataset.test
    assert torch.equal(back.encode(x), model.encode(x))
    assert torch.equal(back.decode(back.encode(x)), model.decode(model.encode(x)))
