"""dictionary_learning 0.1.0's own classes, saved as its `trainSAE` saves them (ae.pt state dict +
config.json of the trainer's config) and read by the suite: the same codes and reconstructions
as the model; `AutoEncoder.from_pretrained`'s normalised codes told apart; a JumpReluAutoEncoder
exported to SAELens; a folder without config.json refused through the CLI."""
import json

import pytest
import torch

from benchmark.interop.export import export_saelens

from tests.benchmark.interop._real import INSTALL, TOLERANCE, gap, gaps, inputs, randomise, suite_model
from tests.benchmark.interop.test_commands import run_eval

pytest.importorskip("dictionary_learning", reason=f"dictionary_learning is not installed; {INSTALL}")
from dictionary_learning import trainers  # noqa: E402
from dictionary_learning.dictionary import (AutoEncoder, AutoEncoderNew, GatedAutoEncoder,  # noqa: E402
                                            JumpReluAutoEncoder)
from dictionary_learning.trainers.matryoshka_batch_top_k import (MatryoshkaBatchTopKSAE,  # noqa: E402
                                                                 MatryoshkaBatchTopKTrainer)
from dictionary_learning.trainers.standard import StandardTrainerAprilUpdate  # noqa: E402
from dictionary_learning.trainers.top_k import AutoEncoderTopK  # noqa: E402
from dictionary_learning.training import trainSAE  # noqa: E402

D_IN, DICT_SIZE, K, STEPS = 16, 48, 6, 3
COMMON = dict(steps=STEPS, activation_dim=D_IN, dict_size=DICT_SIZE, layer=0, lm_name="toy", device="cpu",
              warmup_steps=1)
QUICK_SPARSITY = dict(sparsity_warmup_steps=1)
CALIBRATED = dict(k=K, threshold_start_step=0)  # BatchTopK's threshold learned from the first steps
TRAINERS = {  # class name: (class, the trainer that trains it, its keywords)
    "AutoEncoder": (AutoEncoder, trainers.StandardTrainer, QUICK_SPARSITY),
    "AutoEncoderNew": (AutoEncoderNew, StandardTrainerAprilUpdate, dict(QUICK_SPARSITY, dict_class=AutoEncoderNew)),
    "GatedAutoEncoder": (GatedAutoEncoder, trainers.GatedSAETrainer, QUICK_SPARSITY),
    "JumpReluAutoEncoder": (JumpReluAutoEncoder, trainers.JumpReluTrainer, QUICK_SPARSITY),
    "AutoEncoderTopK": (AutoEncoderTopK, trainers.TopKTrainer, CALIBRATED),
    "BatchTopKSAE": (trainers.BatchTopKSAE, trainers.BatchTopKTrainer, CALIBRATED),
    "MatryoshkaBatchTopKSAE": (MatryoshkaBatchTopKSAE, MatryoshkaBatchTopKTrainer,
                               dict(CALIBRATED, group_fractions=[0.25, 0.75])),
}


def save_like_trainsae(trainer, folder):
    """What trainSAE writes for one trainer: config.json {"trainer": trainer.config}, ae.pt the state dict."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"trainer": trainer.config}, indent=4))
    torch.save({k: v.cpu() for k, v in trainer.ae.state_dict().items()}, folder / "ae.pt")
    return folder


def random_model(dict_class: str, folder):
    """The class built by its own trainer, every weight random, saved as trainSAE saves it."""
    _, trainer_class, keywords = TRAINERS[dict_class]
    trainer = trainer_class(**COMMON, **keywords)
    randomise(trainer.ae)
    save_like_trainsae(trainer, folder)
    return trainer.ae.eval()


def trained_model(dict_class: str, tmp_path):
    """STEPS steps of the class's trainer through trainSAE itself (the files are trainSAE's), read
    back by the library's own from_pretrained, weights as saved."""
    model_class, trainer_class, keywords = TRAINERS[dict_class]
    data = iter([torch.randn(32, D_IN, generator=torch.Generator().manual_seed(s)) for s in range(STEPS)])
    trainSAE(data, [dict(trainer=trainer_class, **COMMON, **keywords)], steps=STEPS, save_dir=str(tmp_path),
             device="cpu")
    folder = tmp_path / "trainer_0"
    as_saved = {"normalize_decoder": False} if model_class is AutoEncoder else {}  # see the test below
    return folder, model_class.from_pretrained(folder / "ae.pt", **as_saved).eval()


@torch.no_grad()
def forward(model, x):
    codes = model.encode(x)
    return codes, model.decode(codes)


@torch.no_grad()
@pytest.mark.parametrize("dict_class", sorted(TRAINERS))
def test_the_suite_encodes_and_reconstructs_like_the_model(tmp_path, dict_class):
    model = random_model(dict_class, tmp_path / "trainer_0")
    x = inputs(D_IN)
    codes, x_hat = forward(model, x)
    assert (codes != 0).any(dim=1).all() and (codes == 0).any(dim=1).all()  # some latents on, some off
    code_gap, reconstruction_gap = gaps(suite_model(tmp_path / "trainer_0"), x, codes, x_hat)
    assert code_gap <= TOLERANCE and reconstruction_gap <= TOLERANCE


@pytest.mark.parametrize("dict_class", sorted(TRAINERS))
def test_trainsae_files_read_like_the_librarys_own_loader(tmp_path, dict_class):
    folder, model = trained_model(dict_class, tmp_path)
    assert json.loads((folder / "config.json").read_text())["trainer"]["activation_dim"] == D_IN
    x = inputs(D_IN)
    code_gap, reconstruction_gap = gaps(suite_model(folder), x, *forward(model, x))
    assert code_gap <= TOLERANCE and reconstruction_gap <= TOLERANCE


@torch.no_grad()
def test_autoencoder_codes_are_the_saved_weights_not_from_pretrained_normalised_ones(tmp_path):
    """from_pretrained (normalize_decoder=True by default) divides each decoder column by its norm
    and scales that latent's encoder by it: the same reconstructions, codes times the norms. The
    suite reports the saved weights' codes, what the trained model gives."""
    model = random_model("AutoEncoder", tmp_path / "ae")
    normalised = AutoEncoder.from_pretrained(tmp_path / "ae" / "ae.pt")
    ours, x = suite_model(tmp_path / "ae"), inputs(D_IN)
    norms = model.decoder.weight.norm(dim=0)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=0.1)  # the normalisation changes something
    assert gap(ours.encode(x), model.encode(x)) <= TOLERANCE
    assert gap(ours.encode(x) * norms, normalised.encode(x)) <= TOLERANCE
    assert gap(ours.decode(ours.encode(x)), normalised(x)) <= TOLERANCE


@torch.no_grad()
@pytest.mark.parametrize("dict_class", ["JumpReluAutoEncoder", "AutoEncoderNew", "AutoEncoderTopK", "BatchTopKSAE"])
def test_an_export_loads_in_saelens_with_the_models_forward(tmp_path, dict_class):
    """JumpReluAutoEncoder and AutoEncoderNew do not subtract b_dec before encoding: exported with
    SAELens' apply_b_dec_to_input false."""
    sae_lens = pytest.importorskip("sae_lens", reason=f"SAELens is not installed; {INSTALL}")
    model = random_model(dict_class, tmp_path / "dl")
    folder = export_saelens(suite_model(tmp_path / "dl"), tmp_path / "export")
    centred = dict_class not in ("JumpReluAutoEncoder", "AutoEncoderNew")
    assert json.loads((folder / "cfg.json").read_text())["apply_b_dec_to_input"] is centred
    back, x = sae_lens.SAE.load_from_disk(folder), inputs(D_IN)
    codes, x_hat = forward(model, x)
    assert gap(back.encode(x), codes) <= TOLERANCE and gap(back(x), x_hat) <= TOLERANCE


def test_a_folder_without_config_json_is_one_line_exit_2(tmp_path, tiny_preset, capsys):
    model = AutoEncoder(64, 32)
    (tmp_path / "trainer_0").mkdir()
    torch.save(model.state_dict(), tmp_path / "trainer_0" / "ae.pt")
    assert run_eval(tmp_path / "trainer_0", tmp_path / "out", tiny_preset) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds ae.pt but no config.json" in err[0], err
    assert not (tmp_path / "out").exists()
