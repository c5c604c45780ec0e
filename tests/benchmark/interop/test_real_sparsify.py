"""EleutherAI sparsify's own SparseCoders, saved by `save_to_disk` (and by its Trainer after a few
steps on a tiny random GPT-2) and read by the suite: the same codes and reconstructions as
sparsify's forward; a bfloat16 save read as float32 with its bfloat16 gap reported."""
import pytest
import torch

from benchmark.interop.checkpoint import probe_inputs
from benchmark.interop.export import export_saelens

from tests.benchmark.interop._real import INSTALL, TOLERANCE, gap, gaps, inputs, randomise, suite_model

sparsify = pytest.importorskip("sparsify", reason=f"eai-sparsify is not installed; {INSTALL}")
from sparsify import SparseCoder, SparseCoderConfig  # noqa: E402

D_IN, N_LATENTS, K = 16, 48, 6


@pytest.fixture(autouse=True)
def eager_decoder(monkeypatch):
    """sparsify 1.3.3 decodes with a Triton kernel whenever triton imports, which fails on a machine
    without a GPU ("0 active drivers"); its own fallback is the eager embedding_bag."""
    if not torch.cuda.is_available():
        from sparsify.utils import eager_decode

        monkeypatch.setattr("sparsify.sparse_coder.decoder_impl", eager_decode)


@torch.no_grad()
def sparsify_forward(coder: SparseCoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense codes, reconstruction) as sparsify computes them, in the coder's dtype."""
    top_acts, top_indices, _ = coder.encode(x.to(coder.dtype))
    codes = torch.zeros(x.shape[0], coder.num_latents, dtype=coder.dtype).scatter_(1, top_indices, top_acts)
    return codes, coder.decode(top_acts, top_indices)


def saved_coder(folder, activation: str = "topk", dtype=torch.float32) -> SparseCoder:
    """A random SparseCoder saved with its own save_to_disk, read back with its own load_from_disk."""
    coder = SparseCoder(D_IN, SparseCoderConfig(activation=activation, k=K, num_latents=N_LATENTS), dtype=dtype)
    randomise(coder)
    coder.save_to_disk(folder)
    return SparseCoder.load_from_disk(folder)


@pytest.mark.parametrize("activation", ["topk", "groupmax"])
def test_the_suite_encodes_and_reconstructs_like_sparsify(tmp_path, activation):
    coder = saved_coder(tmp_path / "layers.3", activation)
    x = inputs(D_IN)
    code_gap, reconstruction_gap = gaps(suite_model(tmp_path / "layers.3"), x, *sparsify_forward(coder, x))
    assert code_gap <= TOLERANCE and reconstruction_gap <= TOLERANCE


def test_a_bfloat16_save_is_read_as_float32_and_its_bfloat16_gap_reported(tmp_path):
    coder = saved_coder(tmp_path / "bf16", dtype=torch.bfloat16)
    ours = suite_model(tmp_path / "bf16")
    ckpt = ours.checkpoint
    assert ckpt.stored_dtype == torch.bfloat16
    x = inputs(D_IN)
    assert max(gaps(ours, x, *sparsify_forward(coder.float(), x))) <= TOLERANCE  # the same weights, in float32
    probes = probe_inputs(ckpt)
    _, full = sparsify_forward(coder, probes)
    _, half = sparsify_forward(coder.bfloat16(), probes)
    theirs = gap(half, full) / float(full.abs().max())
    assert 0 < ckpt.half_precision_gap < 0.05 and theirs / 2 <= ckpt.half_precision_gap <= 2 * theirs
    assert "stored as bfloat16, read as float32" in type(ours).__doc__


def test_an_export_loads_in_saelens_with_sparsifys_forward(tmp_path):
    sae_lens = pytest.importorskip("sae_lens", reason=f"SAELens is not installed; {INSTALL}")
    coder = saved_coder(tmp_path / "layers.0")
    back = sae_lens.SAE.load_from_disk(export_saelens(suite_model(tmp_path / "layers.0"), tmp_path / "export"))
    x = inputs(D_IN)
    codes, x_hat = sparsify_forward(coder, x)
    with torch.no_grad():
        assert gap(back.encode(x), codes) <= TOLERANCE and gap(back(x), x_hat) <= TOLERANCE


def test_a_coder_saved_by_sparsifys_trainer_reads_like_sparsify(tmp_path):
    """A few Trainer steps on a 1-layer random GPT-2: the files are the trainer's own."""
    from datasets import Dataset
    from sparsify import Trainer, TrainConfig
    from transformers import GPT2Config, GPT2Model

    torch.manual_seed(0)
    model = GPT2Model(GPT2Config(n_layer=1, n_embd=D_IN, n_head=2, vocab_size=64, n_positions=8,
                                 bos_token_id=0, eos_token_id=0))
    tokens = Dataset.from_dict({"input_ids": torch.randint(0, 64, (32, 8)).tolist()}).with_format("torch")
    config = TrainConfig(SparseCoderConfig(k=K, num_latents=N_LATENTS), batch_size=8, layers=[0],
                         log_to_wandb=False, save_dir=str(tmp_path), run_name="run")
    Trainer(config, tokens, model).fit()
    folder = tmp_path / "run" / "h.0"
    coder = SparseCoder.load_from_disk(folder)
    assert coder.b_dec.abs().sum() > 0  # trained: its b_dec starts at the data mean
    x = inputs(D_IN)
    code_gap, reconstruction_gap = gaps(suite_model(folder), x, *sparsify_forward(coder, x))
    assert code_gap <= TOLERANCE and reconstruction_gap <= TOLERANCE
