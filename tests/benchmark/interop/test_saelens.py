"""SAELens checkpoints (cfg.json + sae_weights.safetensors) read as variants, on known answers."""
import pytest
import torch

from benchmark.errors import UserError
from benchmark.interop import checkpoint_class, detect_format
from tasks.reconstruction import Reconstruction
from tasks.sparsity import Sparsity

from tests.benchmark.interop._toys import D, inverting, saelens_cfg, toy_dataset, trained, write_saelens


def build(folder, dataset):
    cls = checkpoint_class(folder)
    n_latents, hparams = cls.configure(dataset, 999, {})
    return cls(dataset.input_shape, n_latents, **hparams).eval()


def standard(folder, offset: float = 0.5, apply_b_dec: bool = True):
    W_enc, W_dec = inverting()
    write_saelens(folder, saelens_cfg("standard", D, 2 * D, apply_b_dec_to_input=apply_b_dec),
                  {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.full((D,), offset)})
    return folder


def test_a_decoder_that_inverts_the_encoder_scores_r2_one(tmp_path):
    dataset = toy_dataset()
    model = build(standard(tmp_path / "sae"), dataset)
    assert detect_format(tmp_path / "sae") == "SAELens"
    metrics = Reconstruction().evaluate(trained(model), dataset, {})
    assert metrics["r2"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["params"] == 2 * (D * 2 * D) + 2 * D + D  # W_enc, W_dec, b_enc, b_dec


def test_b_dec_is_not_subtracted_when_apply_b_dec_to_input_is_false(tmp_path):
    """The same weights without the input centring reconstruct x + 0.5, not x."""
    dataset = toy_dataset()
    model = build(standard(tmp_path / "sae", apply_b_dec=False), dataset)
    x = dataset.test
    assert torch.allclose(model.decode(model.encode(x)), x + 0.5, atol=1e-6)
    assert Reconstruction().evaluate(trained(model), dataset, {})["r2"] < 0.9


def test_jumprelu_threshold_is_honoured(tmp_path):
    """Codes are ReLU(pre) where pre > threshold (per latent), zero elsewhere."""
    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    threshold = torch.linspace(0.0, 1.2, 2 * D)
    write_saelens(tmp_path / "jump", saelens_cfg("jumprelu", D, 2 * D),
                  {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.zeros(D),
                   "threshold": threshold})
    model = build(tmp_path / "jump", dataset)
    x = dataset.test
    pre = x @ W_enc
    codes = model.encode(x)
    assert torch.equal(codes, torch.where(pre > threshold, pre, torch.zeros_like(pre)))
    assert (codes[pre <= threshold] == 0).all() and (codes[(pre > threshold)] > 0).all()
    no_threshold = torch.where(pre > 0, pre, torch.zeros_like(pre))  # what ignoring it would give
    assert not torch.equal(codes, no_threshold)


def test_topk_keeps_exactly_k_codes(tmp_path):
    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    for k in (1, 3):
        write_saelens(tmp_path / f"topk{k}", saelens_cfg("topk", D, 2 * D, k=k),
                      {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.zeros(D)})
        model = build(tmp_path / f"topk{k}", dataset)
        sparsity = Sparsity().evaluate(trained(model), dataset, {})
        assert (model.encode(dataset.test) != 0).sum(1).tolist() == [k] * dataset.test.shape[0]
        assert sparsity["l0"] == k


def test_pre_6_topk_config_reads_k_from_activation_fn_kwargs(tmp_path):
    W_enc, W_dec = inverting()
    cfg = {"architecture": "standard", "d_in": D, "d_sae": 2 * D, "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": 2}, "dtype": "float32"}
    write_saelens(tmp_path / "old", cfg, {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec,
                                          "b_dec": torch.zeros(D)})
    model = build(tmp_path / "old", toy_dataset())
    assert (model.encode(toy_dataset().test) != 0).sum(1).eq(2).all()


def test_batchtopk_is_encoded_with_its_learned_threshold(tmp_path):
    """SAELens' BatchTopK inference rule: JumpReLU with every threshold = topk_threshold."""
    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    write_saelens(tmp_path / "btk", saelens_cfg("batchtopk", D, 2 * D, k=2.0),
                  {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.zeros(D),
                   "topk_threshold": torch.tensor(0.7, dtype=torch.float64)})
    model = build(tmp_path / "btk", dataset)
    pre = dataset.test @ W_enc
    assert torch.equal(model.encode(dataset.test), torch.where(pre > 0.7, pre, torch.zeros_like(pre)))


def test_rescale_acts_by_decoder_norm_is_folded(tmp_path):
    """Encoder halved, decoder rows of norm 2, rescaling on: pre·‖W_dec‖ undoes the halving and
    decoding divides the codes by the norm again, so the model is the inverting one; without
    the rescaling the codes would be halved."""
    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    tensors = {"W_enc": W_enc / 2, "b_enc": torch.zeros(2 * D), "W_dec": 2 * W_dec, "b_dec": torch.zeros(D)}
    write_saelens(tmp_path / "rescaled", saelens_cfg("topk", D, 2 * D, k=D, rescale_acts_by_decoder_norm=True), tensors)
    write_saelens(tmp_path / "plain", saelens_cfg("topk", D, 2 * D, k=D), tensors)
    x = dataset.test
    rescaled, plain = build(tmp_path / "rescaled", dataset), build(tmp_path / "plain", dataset)
    assert torch.allclose(rescaled.encode(x), (x @ W_enc).relu(), atol=1e-6)
    assert torch.allclose(rescaled.decode(rescaled.encode(x)), x, atol=1e-5)
    assert torch.allclose(plain.encode(x), (x @ W_enc).relu() / 2, atol=1e-6)


def test_abstopk_keeps_the_k_largest_magnitudes_with_their_signs(tmp_path):
    """SAELens' AbsTopK: top k of |hidden_pre|, the signed values kept, no ReLU."""
    dataset = toy_dataset()
    W_enc = torch.eye(D)  # hidden_pre = x - b_dec = x: the codes are x's entries
    write_saelens(tmp_path / "abs", saelens_cfg("abstopk", D, D, k=2),
                  {"W_enc": W_enc, "b_enc": torch.zeros(D), "W_dec": torch.eye(D), "b_dec": torch.zeros(D)})
    x = torch.tensor([[0.1, -3.0, 0.5, 2.0, -0.2, 0.0]])
    codes = build(tmp_path / "abs", dataset).encode(x)
    assert torch.equal(codes, torch.tensor([[0.0, -3.0, 0.0, 2.0, 0.0, 0.0]]))
    write_saelens(tmp_path / "plain", saelens_cfg("topk", D, D, k=2),
                  {"W_enc": W_enc, "b_enc": torch.zeros(D), "W_dec": torch.eye(D), "b_dec": torch.zeros(D)})
    assert torch.equal(build(tmp_path / "plain", dataset).encode(x), torch.tensor([[0.0, 0.0, 0.5, 2.0, 0.0, 0.0]]))


def test_expected_average_only_in_applies_nothing_unless_the_scaler_is_in_the_folder(tmp_path):
    """As SAELens: its inference SAE applies nothing for expected_average_only_in; a training
    checkpoint's activation_scaler.json factor f is folded (W_enc·f, W_dec / f, b_dec / f)."""
    import json

    dataset = toy_dataset()
    W_enc, W_dec = inverting()
    tensors = {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.full((D,), 0.5)}
    write_saelens(tmp_path / "folded", saelens_cfg("standard", D, 2 * D, normalize_activations="expected_average_only_in"),
                  tensors)
    x = dataset.test
    folded = build(tmp_path / "folded", dataset)
    assert torch.equal(folded.decode(folded.encode(x)), build(standard(tmp_path / "none"), dataset).decode(
        build(tmp_path / "none", dataset).encode(x)))
    write_saelens(tmp_path / "scaled", saelens_cfg("standard", D, 2 * D, normalize_activations="expected_average_only_in"),
                  tensors)
    (tmp_path / "scaled" / "activation_scaler.json").write_text(json.dumps({"scaling_factor": 4.0}))
    scaled = build(tmp_path / "scaled", dataset)
    # SAELens' training view: the SAE saw x·f; folding makes it take x and give back x.
    assert torch.allclose(scaled.encode(x), (4.0 * (x - 0.125) @ W_enc).relu(), atol=1e-5)
    assert torch.allclose(scaled.decode(scaled.encode(x)), x, atol=1e-5)


def orthonormal_pursuit(folder, **cfg):
    atoms = torch.linalg.qr(torch.randn(D, D, generator=torch.Generator().manual_seed(0))).Q.T.contiguous()
    write_saelens(folder, saelens_cfg("matching_pursuit", D, D, **cfg), {"W_dec": atoms, "b_dec": torch.full((D,), 0.25)})
    return atoms


def test_matching_pursuit_recovers_codes_on_orthonormal_atoms_and_honours_its_stops(tmp_path):
    """SAELens' tied MP SAE (no W_enc): on orthonormal atoms pursuit picks the true atoms in order of
    their coefficients and stops when the support repeats; max_iterations 1 keeps the largest only."""
    dataset = toy_dataset()
    atoms = orthonormal_pursuit(tmp_path / "mp")
    x = 0.25 + 0.9 * atoms[3] + 0.5 * atoms[1]  # b_dec = 0.25 is subtracted first
    model = build(tmp_path / "mp", dataset)
    expected = torch.zeros(1, D)
    expected[0, 3], expected[0, 1] = 0.9, 0.5
    assert torch.allclose(model.encode(x[None]), expected, atol=1e-5)
    assert torch.allclose(model.decode(model.encode(x[None])), x[None], atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == D * D + D  # tied: W_dec and b_dec only
    orthonormal_pursuit(tmp_path / "one", max_iterations=1)
    once = build(tmp_path / "one", dataset).encode(x[None])
    assert (once != 0).sum() == 1 and once[0, 3] == pytest.approx(0.9, abs=1e-5)
    orthonormal_pursuit(tmp_path / "loose", residual_threshold=0.6, stop_on_duplicate_support=False)
    loose = build(tmp_path / "loose", dataset).encode(x[None])  # ‖residual‖ 0.5 < 0.6 after one atom
    assert (loose != 0).sum() == 1
    orthonormal_pursuit(tmp_path / "raw", apply_b_dec_to_input=False)
    raw = build(tmp_path / "raw", dataset)  # b_dec neither subtracted nor added back, as SAELens decodes
    assert torch.allclose(raw.decode(raw.encode(x[None] - 0.25)), x[None] - 0.25, atol=1e-5)


def test_configure_refuses_a_dataset_of_another_dimension(tmp_path):
    cls = checkpoint_class(standard(tmp_path / "sae"))
    with pytest.raises(UserError, match="d_in is 6 but dataset toy has 5 values"):
        cls.configure(toy_dataset(d=5), 16, {})


@pytest.mark.parametrize("change, message", [
    (lambda cfg, t: cfg.update(architecture="transcoder"), "unknown SAELens architecture 'transcoder'"),
    (lambda cfg, t: t.pop("b_enc"), "lacks tensor 'b_enc'"),
    (lambda cfg, t: t.update(W_dec=torch.zeros(D, 2 * D)), r"tensor 'W_dec' has shape \[6, 12\]"),
    (lambda cfg, t: cfg.update(normalize_activations="layer_norm"), "normalize_activations 'layer_norm'"),
    (lambda cfg, t: cfg.update(architecture="topk"), "needs 'k'"),
])
def test_bad_checkpoints_are_one_clear_line(tmp_path, change, message):
    W_enc, W_dec = inverting()
    cfg = saelens_cfg("standard", D, 2 * D)
    tensors = {"W_enc": W_enc, "b_enc": torch.zeros(2 * D), "W_dec": W_dec, "b_dec": torch.zeros(D)}
    change(cfg, tensors)
    write_saelens(tmp_path / "bad", cfg, tensors)
    with pytest.raises(UserError, match=message) as err:
        checkpoint_class(tmp_path / "bad")
    assert "\n" not in str(err.value)


def test_a_corrupted_safetensors_file_is_one_clear_line(tmp_path):
    folder = standard(tmp_path / "sae")
    data = (folder / "sae_weights.safetensors").read_bytes()
    (folder / "sae_weights.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable safetensors file"):
        checkpoint_class(folder)


def test_a_folder_of_no_known_format_names_what_it_found(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "cfg.json").write_text("{}")
    with pytest.raises(UserError, match=r"holds no known checkpoint format \(found: cfg.json\)"):
        detect_format(tmp_path / "x")
