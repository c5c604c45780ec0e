"""The controls (SPEC section 2) on cases whose answers are known, parametrised over every
registered control where the property is generic."""
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from benchmark.control import is_trainable
from benchmark.data import Dataset
from benchmark.datasets import build_dataset
from benchmark.registry import CONTROLS
from benchmark.training.loop import TrainConfig, train_model
from baselines.topk import TopKSAE
from tasks._common import encode_test, pooled_r2


def vectors(n=600, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(3, 0.2, d)  # a clear PCA order
    return Dataset("vec", x[:400], x[400:], {"seed": seed})


def images(seed=0):
    return build_dataset("digits8", {}, seed=seed)


def build(name, dataset, setting, n_latents=32):
    cls = CONTROLS.get(name)
    n_latents, hparams = cls.configure(dataset, n_latents, setting)
    torch.manual_seed(0)
    model = cls(dataset.input_shape, n_latents, **hparams)
    model.fit(dataset.train)
    return model.eval()


@pytest.mark.parametrize("name", CONTROLS.names())
def test_every_control_is_fitted_not_trained_and_covers_the_targets(name):
    dataset = images()
    cls = CONTROLS.get(name)
    assert not is_trainable(cls)
    settings = cls.settings([4.0, 8.0], dataset)
    assert len(settings) >= 2
    model = build(name, dataset, settings[0])
    codes, x_hat = encode_test(model, dataset)
    assert codes.shape == (len(dataset.test), model.n_latents) and x_hat.shape == dataset.test.shape
    assert torch.isfinite(x_hat).all()
    assert model.atoms().shape[1:] == dataset.input_shape
    with pytest.raises(RuntimeError, match="control"):
        model.loss(dataset.test, x_hat, codes) if name != "block-basis" else (_ for _ in ()).throw(RuntimeError("control"))


def test_pca_r2_on_its_training_split_is_sklearns_explained_variance_ratio_sum():
    dataset = vectors()
    for k in (1, 3, 6):
        model = build("pca", dataset, {"k": k})
        x_hat = model.decode(model.encode(dataset.train))
        expected = PCA(n_components=k).fit(dataset.train.double().numpy()).explained_variance_ratio_.sum()
        assert pooled_r2(dataset.train, x_hat) == pytest.approx(expected, abs=1e-5)
        assert float((model.encode(dataset.test) != 0).sum(1).double().mean()) == k  # L0 = k
    # A wrong input (the test split) does not reproduce the training split's ratio exactly.
    x_hat = model.decode(model.encode(dataset.test))
    assert pooled_r2(dataset.test, x_hat) != pytest.approx(expected, abs=1e-5)


def test_pca_topk_at_l0_equal_to_the_dimension_reconstructs_exactly_and_less_below():
    dataset = vectors()
    full = build("pca-topk", dataset, {"k": 12})
    assert pooled_r2(dataset.test, encode_test(full, dataset)[1]) == pytest.approx(1.0, abs=1e-5)
    partial = build("pca-topk", dataset, {"k": 4})
    codes, x_hat = encode_test(partial, dataset)
    assert (codes != 0).sum(1).max() == 4 and pooled_r2(dataset.test, x_hat) < 0.99


def test_block_basis_at_block_one_is_the_identity_and_coarser_blocks_lose_detail():
    dataset = images()
    assert pooled_r2(dataset.test, encode_test(build("block-basis", dataset, {"block": 1}), dataset)[1]) == pytest.approx(1.0)
    assert pooled_r2(dataset.test, encode_test(build("block-basis", dataset, {"block": 4}), dataset)[1]) < 0.9


def known_dictionary_data(seed=123, n_atoms=64, dim=48, k=3, n=3000):
    """x = z·D with a known unit-norm dictionary, k-sparse non-negative codes (drawn from
    another seed than the controls' global one: seed 0 would redraw the true dictionary)."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(n_atoms, dim, generator=g), dim=1)
    codes = torch.zeros(n, n_atoms)
    idx = torch.rand(n, n_atoms, generator=g).argsort(1)[:, :k]
    codes.scatter_(1, idx, torch.rand(n, k, generator=g) + 0.5)
    x = codes @ atoms
    return Dataset("dict", x[:2400], x[2400:], {"seed": seed})


def test_random_dict_is_far_below_a_trained_sae_on_data_from_a_known_dictionary():
    dataset = known_dictionary_data()
    random_r2 = pooled_r2(dataset.test, encode_test(build("random-dict", dataset, {"k": 3}, n_latents=64), dataset)[1])
    torch.manual_seed(0)
    sae = TopKSAE(dataset.input_shape, 64, k=3, aux_k=8, dead_steps=20)
    train_model(sae, dataset, TrainConfig(epochs=30, batch_size=128, lr=0.01), seed=0)
    trained_r2 = pooled_r2(dataset.test, encode_test(sae, dataset)[1])
    assert trained_r2 > 0.9 and random_r2 < trained_r2 - 0.3, (random_r2, trained_r2)


def test_a_fixed_block_basis_submitted_as_a_variant_loses_to_the_controls_at_matched_l0(tmp_path):
    """Revision 1's published failure: an untrained block basis, submitted as a variant, won
    reconstruction. At matched L0 beside the controls it must be marked as not beating them."""
    submission = tmp_path / "blocks.py"
    submission.write_text(
        "import torch\nfrom torch.nn import functional as F\nfrom benchmark.variant import SAE\n\n"
        "class Blocks(SAE):\n"
        "    def __init__(self, input_shape, n_latents, block=2):\n"
        "        super().__init__(input_shape, n_latents)\n"
        "        self.block = block\n"
        "        self.scale = torch.nn.Parameter(torch.ones(()))  # a no-op parameter: the basis is fixed\n"
        "    @classmethod\n"
        "    def configure(cls, dataset, n_latents, hparams):\n"
        "        c, h, w = dataset.input_shape\n"
        "        return c * (h // hparams['block']) * (w // hparams['block']), dict(hparams)\n"
        "    def encode(self, x):\n"
        "        return F.avg_pool2d(x, self.block).flatten(1) * self.scale\n"
        "    def decode(self, z):\n"
        "        c, h, w = self.input_shape\n"
        "        return F.interpolate(z.view(-1, c, h // self.block, w // self.block), scale_factor=self.block)\n"
        "    def loss(self, x, x_hat, z):\n"
        "        mse = (x - x_hat).pow(2).flatten(1).sum(1).mean()\n"
        "        return mse, {'mse': mse.detach()}\n")
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "seeds: [0, 1]\nn_latents: 64\ntrain: {epochs: 1, batch_size: 128, lr: 0.001}\n"
        "comparison: {l0_targets: [8, 16], headline_l0: 16}\n"
        "controls: {pca: {}, pca-topk: {}}\n"
        "datasets: {patches: {kind: patches32, size: 8, n_train: 600, n_test: 200}}\n"
        "tasks: {reconstruction: {datasets: [patches]}}\n")
    config = tmp_path / "blocks.yaml"
    config.write_text("sweep: [{block: 1}, {block: 2}, {block: 4}, {block: 8}]\n")
    from benchmark.cli import main
    from benchmark.report.matched import beats_controls, matched_entries
    from benchmark.results import read_results

    out = tmp_path / "out"
    assert main(["run", "--variant", f"{submission}:Blocks", "--config", str(config), "--preset", str(preset),
                 "--out", str(out), "--no-progress", "--jobs", "1"]) == 0
    results = read_results(out / "results.csv")
    entries = matched_entries(results, "reconstruction", "patches", "r2", 16)
    blocks = next(e for e in entries if e.variant == "blocks.py:Blocks")
    assert blocks.reached and beats_controls(blocks, entries, True) is False
    board = (out / "leaderboard.md").read_text()
    row = next(line for line in board.splitlines() if line.startswith("| blocks.py:Blocks |"))
    assert "pca-topk (control)" in board and "✓" not in row
