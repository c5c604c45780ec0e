"""SAELens' own SAEs, saved by SAELens and read by the suite: the same codes and reconstructions
as SAELens' forward; exports loaded back by SAELens; a bfloat16 save reported; a real SAELens
architecture the suite does not read refused through the CLI."""
import json

import pytest
import torch

from benchmark.errors import UserError
from benchmark.interop.checkpoint import probe_inputs
from benchmark.interop.export import export_saelens

from tests.benchmark.interop._real import INSTALL, TOLERANCE, gap, gaps, inputs, randomise, suite_model
from tests.benchmark.interop.test_commands import run_eval

sae_lens = pytest.importorskip("sae_lens", reason=f"SAELens is not installed; {INSTALL}")
from sae_lens import SAE  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:decoder_init_norm must be set to 1.0")  # SAELens' MP default

D_IN, D_SAE, K = 16, 48, 6
# architecture: (inference class, its config), (training class, its config), config fields
ARCHITECTURES = {
    "standard": ("StandardSAE", "StandardTrainingSAE", {}),
    "topk": ("TopKSAE", "TopKTrainingSAE", {"k": K, "rescale_acts_by_decoder_norm": False}),
    "topk-rescaled": ("TopKSAE", "TopKTrainingSAE", {"k": K, "rescale_acts_by_decoder_norm": True}),
    "abstopk": ("AbsTopKSAE", "AbsTopKTrainingSAE", {"k": K}),
    "jumprelu": ("JumpReLUSAE", "JumpReLUTrainingSAE", {}),
    "gated": ("GatedSAE", "GatedTrainingSAE", {}),
    "matching_pursuit": ("MatchingPursuitSAE", "MatchingPursuitTrainingSAE", {}),
    # trained only: SAELens saves them for inference as jumprelu with the learned threshold
    "batchtopk": (None, "BatchTopKTrainingSAE", {"k": K}),
    "matryoshka_batchtopk": (None, "MatryoshkaBatchTopKTrainingSAE", {"k": K, "matryoshka_widths": [12, 24, D_SAE]}),
}
# how the SAE was made and saved: its inference class and save_model; its training class and
# save_model (the training form: training config, unfolded norms, BatchTopK's topk_threshold);
# its training class and save_inference_model (what SAELens writes when training finishes)
FORMS = ("inference class", "training save", "inference save")
CASES = [(arch, form) for arch, (inference, _, _) in ARCHITECTURES.items() for form in FORMS
         if inference or form != "inference class"]
BATCH_LEVEL = ("batchtopk", "matryoshka_batchtopk")  # their training forward ranks the whole batch
EXPORTED = ("standard", "topk", "topk-rescaled", "jumprelu", "batchtopk", "matryoshka_batchtopk")


def build(architecture: str, training: bool, **cfg):
    """A SAELens SAE of `architecture` from SAELens' own classes, every weight random."""
    inference, trained, fields = ARCHITECTURES[architecture]
    name = trained if training else inference
    cls, config = getattr(sae_lens, name), getattr(sae_lens, f"{name}Config")
    sae = cls(config(d_in=D_IN, d_sae=D_SAE, **fields, **cfg))
    randomise(sae)
    return sae.eval()


def saved(tmp_path, architecture: str, form: str):
    """(folder SAELens wrote, the SAELens model whose forward the suite must reproduce)."""
    folder = tmp_path / "saved"
    if form == "inference class":
        sae = build(architecture, training=False)
        sae.save_model(folder)
        return folder, sae
    sae = build(architecture, training=True)
    sae.save_inference_model(tmp_path / "inference")  # SAELens' inference model: the reference
    reference = SAE.load_from_disk(tmp_path / "inference")
    if architecture not in BATCH_LEVEL:  # SAELens' own consistency: trained and saved forward agree
        x = inputs(D_IN)
        assert gap(sae.encode(x), reference.encode(x)) <= TOLERANCE
    if form == "training save":
        sae.save_model(folder)
        return folder, reference
    return tmp_path / "inference", reference


@torch.no_grad()
@pytest.mark.parametrize("architecture, form", CASES)
def test_the_suite_encodes_and_reconstructs_like_saelens(tmp_path, architecture, form):
    folder, sae = saved(tmp_path, architecture, form)
    x = inputs(D_IN)
    codes = sae.encode(x)
    assert (codes != 0).any(dim=1).all() and (codes == 0).any(dim=1).all()  # some latents on, some off
    code_gap, reconstruction_gap = gaps(suite_model(folder), x, codes, sae.decode(codes))
    assert code_gap <= TOLERANCE and reconstruction_gap <= TOLERANCE


def test_saelens_saves_batchtopk_differently_for_training_and_inference(tmp_path):
    """The suite reads both forms; this pins down what they are, so a change in SAELens shows."""
    sae = build("batchtopk", training=True)
    sae.save_model(tmp_path / "training")
    sae.save_inference_model(tmp_path / "inference")
    training = json.loads((tmp_path / "training" / "cfg.json").read_text())
    inference = json.loads((tmp_path / "inference" / "cfg.json").read_text())
    assert (training["architecture"], training["rescale_acts_by_decoder_norm"]) == ("batchtopk", True)
    assert inference["architecture"] == "jumprelu" and "rescale_acts_by_decoder_norm" not in inference


@torch.no_grad()
@pytest.mark.parametrize("architecture, form", CASES)
def test_exports_load_in_saelens_with_the_same_forward(tmp_path, architecture, form):
    folder, sae = saved(tmp_path, architecture, form)
    ours = suite_model(folder)
    if architecture not in EXPORTED:
        with pytest.raises(UserError, match="cannot be written in the SAELens format"):
            export_saelens(ours, tmp_path / "export")
        return
    back = SAE.load_from_disk(export_saelens(ours, tmp_path / "export"))
    x = inputs(D_IN)
    codes = sae.encode(x)
    assert gap(back.encode(x), codes) <= TOLERANCE
    assert gap(back.decode(back.encode(x)), sae.decode(codes)) <= TOLERANCE


@torch.no_grad()
def saelens_half_precision_gap(folder, x: torch.Tensor) -> float:
    """What the suite reports, computed with SAELens: its bfloat16 forward against its float32 one."""
    half, full = SAE.load_from_disk(folder), SAE.load_from_disk(folder, dtype="float32")
    x_hat = full.decode(full.encode(x))
    return gap(half.decode(half.encode(x.bfloat16())), x_hat) / float(x_hat.abs().max())


@torch.no_grad()
@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_a_bfloat16_save_is_read_as_float32_and_its_bfloat16_gap_reported(tmp_path, architecture):
    build(architecture, training=False, dtype="bfloat16").save_model(tmp_path / "bf16")
    ours = suite_model(tmp_path / "bf16")
    ckpt = ours.checkpoint
    assert ckpt.stored_dtype == torch.bfloat16 and ours.W_enc.dtype == torch.float32
    full = SAE.load_from_disk(tmp_path / "bf16", dtype="float32")  # the bf16 weights, exactly upcast
    x = inputs(D_IN)
    codes = full.encode(x)
    assert max(gaps(ours, x, codes, full.decode(codes))) <= TOLERANCE
    theirs = saelens_half_precision_gap(tmp_path / "bf16", probe_inputs(ckpt))
    assert 0 < ckpt.half_precision_gap < 0.05 and theirs / 2 <= ckpt.half_precision_gap <= 2 * theirs
    assert f"stored as bfloat16, read as float32: a bfloat16 forward differs from it by up to " \
           f"{ckpt.half_precision_gap:.2%}" in type(ours).__doc__


def test_eval_prints_the_bfloat16_gap(tmp_path, tiny_preset, capsys):
    sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=64, d_sae=32, dtype="bfloat16"))
    randomise(sae)
    sae.save_model(tmp_path / "bf16-sae")
    assert run_eval(tmp_path / "bf16-sae", tmp_path / "out", tiny_preset, "--task", "sparsity") == 0
    assert "stored as bfloat16, read as float32: a bfloat16 forward differs" in capsys.readouterr().out


def test_a_real_saelens_architecture_the_suite_does_not_read_is_one_line_exit_2(tmp_path, tiny_preset, capsys):
    config = sae_lens.TranscoderConfig(d_in=64, d_sae=32, d_out=64, apply_b_dec_to_input=False)
    transcoder = sae_lens.Transcoder(config)
    transcoder.save_model(tmp_path / "transcoder")
    assert run_eval(tmp_path / "transcoder", tmp_path / "out", tiny_preset) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown SAELens architecture 'transcoder'" in err[0], err
    assert not (tmp_path / "out").exists()
