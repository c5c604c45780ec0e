"""overcomplete's SAE classes trained by our loop through `--variant overcomplete:CLASS`."""
import statistics

import pytest
import torch

from benchmark.perf.peers import load_overcomplete

if load_overcomplete() is None:  # imports it with matplotlib's removed get_cmap restored
    pytest.skip("overcomplete is not installed (pip install -e '.[peers]')", allow_module_level=True)

from benchmark.config import load_preset  # noqa: E402
from benchmark.contract import check_on_dataset  # noqa: E402
from benchmark.data import Dataset  # noqa: E402
from benchmark.datasets import build_dataset  # noqa: E402
from benchmark.errors import UserError  # noqa: E402
from benchmark.interop.overcomplete import CRITERIA, foreign_listing  # noqa: E402
from benchmark.registry import VARIANTS  # noqa: E402
from benchmark.submission import resolve_variant, source_hash, variant_name  # noqa: E402
from benchmark.training.loop import train_model  # noqa: E402
from tasks._common import encode_test, pooled_r2  # noqa: E402

HPARAMS = {"TopKSAE": {"top_k": 4}, "BatchTopKSAE": {"top_k": 32}, "RATopKSAE": {"top_k": 4}, "MpSAE": {"k": 3},
           "OMPSAE": {"k": 2}, "JumpSAE": {}, "RAJumpSAE": {}, "QSAE": {}, "SAE": {}}


def test_every_sae_class_is_listed_with_its_criterion():
    listed = dict(foreign_listing())
    assert set(listed) == {f"overcomplete:{name}" for name in CRITERIA}
    assert listed["overcomplete:TopKSAE"].startswith("criterion top_k_auxiliary_loss")


@pytest.mark.parametrize("name", sorted(HPARAMS))
def test_every_class_passes_the_contract_on_images_and_vectors(name):
    cls = resolve_variant(f"overcomplete:{name}")
    images = Dataset("img", torch.rand(32, 3, 4, 4), torch.rand(8, 3, 4, 4), {})
    vectors = Dataset("vec", torch.randn(32, 10), torch.randn(8, 10), {})
    for dataset in (images, vectors):
        assert check_on_dataset(cls, dataset, 24, HPARAMS[name], "cpu") == []


def test_names_and_identity():
    assert variant_name("overcomplete:TopKSAE") == "overcomplete:TopKSAE"
    assert len(source_hash("overcomplete:TopKSAE")) == 16


@pytest.mark.parametrize("spec, message", [
    ("overcomplete:DictionaryLayer", "is not an SAE class"),
    ("overcomplete:NoSuchSAE", "has no class 'NoSuchSAE'"),
    ("overcomplete.sae:TopKSAE", "use --variant overcomplete:TopKSAE"),
])
def test_what_cannot_be_adapted_is_refused_by_name(spec, message):
    with pytest.raises(UserError, match=message):
        resolve_variant(spec)


def test_an_image_encoder_is_refused_with_the_reason():
    cls = resolve_variant("overcomplete:TopKSAE")
    dataset = Dataset("vec", torch.randn(16, 10), torch.randn(4, 10), {})
    problems = check_on_dataset(cls, dataset, 16, {"top_k": 2, "encoder_module": "resnet_1b"}, "cpu")
    assert problems and "needs images or token sequences" in problems[0]


def test_batchtopk_inference_threshold_survives_the_state_dict():
    """overcomplete keeps it in a plain attribute: the adapter's buffer carries it through the cache."""
    cls = resolve_variant("overcomplete:BatchTopKSAE")
    x = torch.randn(64, 10)
    model = cls((10,), 16, top_k=64)
    model.train()
    model.encode(x)
    model.eval()
    copy = cls((10,), 16, top_k=64)
    copy.load_state_dict(model.state_dict())
    copy.eval()
    assert torch.equal(copy.encode(x), model.encode(x))


def test_topk_trained_on_smoke_digits8_is_within_noise_of_ours_at_the_same_k():
    """The smoke preset's digits8 cell (32 latents, k = 8, 1 epoch, lr 1e-3) over three seeds: R²
    within twice the pooled seed std (plus 0.01), and both exactly k-sparse up to ReLU zeros."""
    preset = load_preset("smoke")
    train = preset.train_config("topk", "digits8")
    theirs_cls = resolve_variant("overcomplete:TopKSAE")
    scores = {"ours": [], "theirs": []}
    l0 = {"ours": [], "theirs": []}
    for seed in (0, 1, 2):
        dataset = build_dataset("digits8", preset.dataset_build_config("digits8"), seed=seed)
        for who, make in (("ours", lambda: VARIANTS.get("topk")(dataset.input_shape, 32, k=8, aux_k=16)),
                          ("theirs", lambda: theirs_cls(dataset.input_shape, 32, top_k=8))):
            torch.manual_seed(seed)
            model = train_model(make(), dataset, train, seed).model
            codes, x_hat = encode_test(model, dataset)
            scores[who].append(pooled_r2(dataset.test, x_hat))
            l0[who].append(float((codes != 0).sum(1).float().mean()))
    pooled_std = ((statistics.variance(scores["ours"]) + statistics.variance(scores["theirs"])) / 2) ** 0.5
    gap = abs(statistics.mean(scores["ours"]) - statistics.mean(scores["theirs"]))
    assert gap <= 2 * pooled_std + 0.01, (scores, pooled_std)
    assert all(7.9 <= v <= 8 for v in l0["ours"] + l0["theirs"]), l0
