"""`ground_truth`: SynthSAEBench's metrics by SAELens' own functions, on known answers, on wrong
inputs, and equal to SAELens' `eval_sae_on_synthetic_data` for the same SAE on the same samples."""
import pytest
import torch

pytest.importorskip("sae_lens.synthetic", reason="ground_truth needs sae-lens==6.54.12 (a core dependency: pip install -e .)")

from tasks.ground_truth import ground_truth_metrics  # noqa: E402
from tests.tasks._toys import AffineToy  # noqa: E402

N_TRUE, N_SAMPLES = 12, 3000


def sparse_codes(seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(N_SAMPLES, N_TRUE, generator=g) < 0.2
    return on * (0.5 + torch.rand(N_SAMPLES, N_TRUE, generator=g))


def exact_model(encoder=None) -> AffineToy:
    """Atoms = the true features (the standard basis), codes = the true codes."""
    eye = torch.eye(N_TRUE)
    return AffineToy(eye, torch.zeros(N_TRUE), eye if encoder is None else encoder)


def test_an_sae_that_is_the_truth_scores_one_everywhere():
    codes = sparse_codes()
    scores = ground_truth_metrics(exact_model(), codes, codes.to_sparse(), torch.eye(N_TRUE))
    for name in ("gt_f1", "gt_precision", "gt_recall", "mcc", "uniqueness", "explained_variance"):
        assert scores[name] == pytest.approx(1.0, abs=1e-6), name
    assert scores["dead_latents"] == 0 and scores["shrinkage_gap"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_shrinking_and_inflating_reconstructions_are_equally_far_from_no_shrinkage(scale):
    """An L1 model's x̂ shrinks; an untrained one's may overshoot: both are worse than 1, not one better."""
    codes = sparse_codes()
    scaled = AffineToy(torch.eye(N_TRUE) * scale, torch.zeros(N_TRUE), torch.eye(N_TRUE))
    assert ground_truth_metrics(scaled, codes, codes, torch.eye(N_TRUE))["shrinkage_gap"] == pytest.approx(0.5, abs=1e-5)


def test_latents_firing_for_the_wrong_features_lose_f1_but_not_mcc():
    codes = sparse_codes()
    shifted = torch.eye(N_TRUE).roll(1, dims=1)  # latent j fires for feature j-1 but its atom is feature j
    model = AffineToy(torch.eye(N_TRUE).roll(1, dims=0), torch.zeros(N_TRUE), shifted)
    scores = ground_truth_metrics(model, codes, codes, torch.eye(N_TRUE))
    assert scores["explained_variance"] == pytest.approx(1.0, abs=1e-6)  # it still reconstructs
    truth = ground_truth_metrics(exact_model(), codes, codes, torch.eye(N_TRUE))
    mismatched = AffineToy(torch.eye(N_TRUE), torch.zeros(N_TRUE), shifted)  # atoms right, firing wrong
    wrong = ground_truth_metrics(mismatched, codes, codes, torch.eye(N_TRUE))
    assert wrong["mcc"] == pytest.approx(1.0) and wrong["gt_f1"] < 0.35 < truth["gt_f1"]


def test_random_atoms_score_a_low_mcc_and_a_dead_latent_is_counted():
    codes = sparse_codes()
    g = torch.Generator().manual_seed(1)
    random_atoms = torch.randn(N_TRUE, N_TRUE, generator=g)
    encoder = torch.eye(N_TRUE)
    encoder[:, 0] = -1.0  # latent 0 never fires on non-negative inputs
    scores = ground_truth_metrics(AffineToy(random_atoms, torch.zeros(N_TRUE), encoder), codes, codes, torch.eye(N_TRUE))
    assert scores["mcc"] < 0.8 and scores["dead_latents"] == 1


def test_equal_to_saelens_eval_sae_on_synthetic_data(tmp_path):
    from sae_lens import StandardSAE, StandardSAEConfig
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    from benchmark.datasets.synth import synthetic_model
    from tests.benchmark.interop._real import randomise, suite_model
    from tests.benchmark.datasets.test_synth import world

    synthetic = synthetic_model(world())
    sae = StandardSAE(StandardSAEConfig(d_in=24, d_sae=40))
    randomise(sae)
    sae.save_model(tmp_path)
    torch.manual_seed(11)
    reference = eval_sae_on_synthetic_data(sae, synthetic.feature_dict, synthetic.activation_generator, num_samples=5000)
    torch.manual_seed(11)  # the same samples
    features = synthetic.activation_generator.sample(5000)
    x = synthetic.feature_dict(features)
    ours = ground_truth_metrics(suite_model(tmp_path), x, features.to_sparse(), synthetic.feature_dict.feature_vectors)
    theirs = {"gt_f1": reference.classification.f1_score, "gt_precision": reference.classification.precision,
              "gt_recall": reference.classification.recall, "mcc": reference.mcc, "uniqueness": reference.uniqueness,
              "explained_variance": reference.explained_variance, "shrinkage_gap": abs(1 - reference.shrinkage),
              "dead_latents": reference.dead_latents}
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert 0.0 < ours["gt_f1"] < 1.0 and ours["dead_latents"] < 40  # a non-trivial case


def test_the_headline_is_synth_where_it_runs_else_the_highest_rho_known_dictionary():
    """`default` has no `synth`: its headline is correlated_recovery's, not the first listed."""
    from benchmark.task import get_task

    task = get_task("ground_truth")
    assert task.headline_dataset(["correlated-rho0.0", "synth", "correlated-rho0.9"]) == "synth"
    assert task.headline_dataset(["correlated-rho0.0", "correlated-rho0.9", "correlated-rho0.3"]) == "correlated-rho0.9"
    assert task.headline_dataset(["tree", "superposition"]) == "tree"
