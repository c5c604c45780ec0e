"""Our trained models written in SAELens' format and read back: the same codes, reconstructions
and scores; what SAELens cannot express is refused by name."""
import json

import pytest
import torch
from safetensors.torch import load_file

from benchmark.datasets import build_dataset
from benchmark.errors import UserError
from benchmark.interop import checkpoint_class
from benchmark.interop.export import export_saelens
from benchmark.registry import VARIANTS
from benchmark.training.loop import TrainConfig, train_model
from tasks.reconstruction import Reconstruction
from tasks.sparsity import Sparsity

from tests.benchmark.interop._toys import trained

EXPECTED_ARCHITECTURE = {"relu": "standard", "dense": "standard", "topk": "topk", "jumprelu": "jumprelu",
                         "batchtopk": "jumprelu", "matryoshka": "jumprelu"}
HPARAMS = {"relu": {"l1_coeff": 0.05}, "dense": {"l1_coeff": 0.05}, "topk": {"k": 6, "aux_k": 8},
           "jumprelu": {"l0_coeff": 0.1, "threshold_lr_mult": 30}, "batchtopk": {"k": 6, "aux_k": 8},
           "matryoshka": {"k": 6, "aux_k": 8, "prefix_fractions": [0.25, 1.0]}}


@pytest.fixture(scope="module")
def digits():
    return build_dataset("digits8", {}, seed=0)


def train(variant: str, dataset, epochs: int = 2):
    torch.manual_seed(0)
    model = VARIANTS.get(variant)(dataset.input_shape, 48, **HPARAMS[variant])
    return train_model(model, dataset, TrainConfig(epochs, 128, 0.003), seed=0).model


def read_back(folder, dataset):
    cls = checkpoint_class(folder)
    n_latents, _ = cls.configure(dataset, 0, {})
    return cls(dataset.input_shape, n_latents).eval()


@pytest.mark.parametrize("variant", sorted(EXPECTED_ARCHITECTURE))
def test_round_trip_reproduces_codes_reconstructions_and_scores_exactly(tmp_path, digits, variant):
    model = train(variant, digits)
    export_saelens(model, tmp_path / variant, {"variant": variant, "dataset": "digits8"})
    cfg = json.loads((tmp_path / variant / "cfg.json").read_text())
    assert cfg["architecture"] == EXPECTED_ARCHITECTURE[variant]
    assert (cfg["d_in"], cfg["d_sae"], cfg["apply_b_dec_to_input"]) == (64, 48, True)
    weights = load_file(str(tmp_path / variant / "sae_weights.safetensors"))
    assert weights["W_enc"].shape == (64, 48) and weights["W_dec"].shape == (48, 64)
    assert all(t.dtype == torch.float32 for t in weights.values())
    loaded = read_back(tmp_path / variant, digits)
    x = digits.test
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
        assert torch.equal(loaded.decode(loaded.encode(x)), model.decode(model.encode(x)))
    for task in (Reconstruction(), Sparsity()):
        theirs = task.evaluate(trained(loaded), digits, {})
        ours = task.evaluate(trained(model), digits, {})
        ours.pop("r2_at_half_k", None), ours.pop("r2_at_double_k", None)  # adaptive k: not in SAELens
        assert theirs == ours


def test_topk_writes_its_k(tmp_path, digits):
    export_saelens(train("topk", digits, epochs=1), tmp_path / "t")
    assert json.loads((tmp_path / "t" / "cfg.json").read_text())["k"] == 6


def test_a_model_with_a_different_encoder_is_refused_by_name(tmp_path, digits):
    mp = VARIANTS.get("mp")(digits.input_shape, 48, k=4)
    with pytest.raises(UserError, match="cannot be written in the SAELens format: its codes come from k steps "
                                        "of matching pursuit"):
        export_saelens(mp, tmp_path / "mp")
    assert not (tmp_path / "mp").exists()
    tensor = VARIANTS.get("tensor")(digits.input_shape, 16)
    with pytest.raises(UserError, match="its decoder is not one dense matrix"):
        export_saelens(tensor, tmp_path / "tensor")


def test_an_existing_folder_is_never_overwritten(tmp_path, digits):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already exists and is not an empty folder"):
        export_saelens(train("relu", digits, epochs=1), tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
