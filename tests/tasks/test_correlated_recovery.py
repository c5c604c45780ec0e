import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from baselines.topk import keep_topk
from benchmark.datasets import build_dataset
from benchmark.registry import CONTROLS, TASKS, VARIANTS
from benchmark.training.loop import TrainedModel
from benchmark.variant import SAE
from tasks.correlated_recovery import abs_cosines, attribution, hungarian_match, recovered, recovery_curves

TASK = TASKS.get("correlated_recovery")()


def correlated(rho, **params):
    return build_dataset(f"correlated-rho{rho}", {"kind": "correlated", "rho": rho, "n_train": 200,
                                                   "n_test": 500, **params})


class LookupOracle(SAE):
    """Decoder rows = the given atoms; encode returns the given code of the stored sample equal
    to x (nearest, to be safe). With the true atoms and codes it is a perfect SAE."""

    def __init__(self, atoms, samples, codes):
        super().__init__((atoms.shape[1],), atoms.shape[0])
        self.W_dec = nn.Parameter(atoms.clone())
        self.register_buffer("samples", samples)
        self.register_buffer("codes", codes.clone())

    def encode(self, x):
        return self.codes[torch.cdist(x, self.samples).argmin(1)]

    def decode(self, codes):
        return codes @ self.W_dec

    def loss(self, x, x_hat, codes):
        return (x - x_hat).pow(2).sum(1).mean(), {}


class InnerProductTopK(SAE):
    """Decoder = the given atoms; codes = the top-k inner products, never refitted. On orthonormal
    atoms that is the projection onto k atoms (the residual shrinks with k); on correlated atoms
    the shared direction is counted once per atom and the residual can grow."""

    def __init__(self, atoms, k):
        super().__init__((atoms.shape[1],), atoms.shape[0])
        self.W_dec = nn.Parameter(atoms.clone())
        self.k = k

    def set_inference_k(self, k):
        self.k = int(k)

    def encode(self, x):
        return keep_topk(x @ self.W_dec.T, self.k)

    def decode(self, codes):
        return codes @ self.W_dec

    def loss(self, x, x_hat, codes):
        return (x - x_hat).pow(2).sum(1).mean(), {}


def oracle(data, permute=False, extra_latents=0, seed=0):
    """The true dictionary and codes, optionally permuted and sign-flipped (codes flipped to match),
    optionally padded with never-firing random atoms."""
    atoms, codes = data.truth["dictionary"], data.truth["test_codes"]
    gen = torch.Generator().manual_seed(seed)
    if permute:
        order = torch.randperm(len(atoms), generator=gen)
        signs = torch.where(torch.rand(len(atoms), generator=gen) < 0.5, -1.0, 1.0)
        atoms, codes = signs[:, None] * atoms[order], codes[:, order] * signs
    if extra_latents:
        atoms = torch.cat([atoms, nn.functional.normalize(torch.randn(extra_latents, atoms.shape[1], generator=gen), dim=1)])
        codes = torch.cat([codes, torch.zeros(len(codes), extra_latents)], dim=1)
    return LookupOracle(atoms, data.test, codes)


def evaluate(model, data):
    return TASK.evaluate(TrainedModel(model=model), data, {})


@pytest.mark.parametrize("rho", [0.0, 0.9])
@pytest.mark.parametrize("permute", [False, True])
def test_oracle_scores_perfectly_even_permuted_sign_flipped_and_padded(rho, permute):
    data = correlated(rho)
    scores = evaluate(oracle(data, permute=permute, extra_latents=16), data)
    assert scores["mmcs"] == pytest.approx(1.0, abs=1e-6)
    assert scores["recovery_90"] == 1.0
    assert scores["support_f1"] == scores["support_f1_raw"] == 1.0
    # coherence of the alive atoms (the padding never fires) is the true dictionary's: rho
    assert scores["coherence"] == pytest.approx(rho, abs=1e-5)
    assert "monotone_frac" not in scores  # the oracle has no set_inference_k


def test_oracle_on_the_tree_scores_perfectly():
    data = build_dataset("tree", {"n_train": 200, "n_test": 300})
    scores = evaluate(oracle(data, permute=True), data)
    assert scores["mmcs"] == pytest.approx(1.0, abs=1e-6)
    assert scores["recovery_90"] == scores["support_f1"] == 1.0


def test_random_dictionary_scores_far_lower():
    data = correlated(0.3)
    gen = torch.Generator().manual_seed(1)
    atoms = nn.functional.normalize(torch.randn(64, 48, generator=gen), dim=1)
    model = InnerProductTopK(atoms, k=4)
    scores = evaluate(model, data)
    assert scores["recovery_90"] == 0.0
    assert scores["mmcs"] < 0.6
    assert scores["support_f1"] < 0.3


def test_support_f1_of_an_always_firing_oracle_is_two_ninths():
    # Every matched latent fires on every sample: recall 1, precision k / n_atoms = 4/32 = 1/8,
    # so F1 = 2·(1/8) / (1 + 1/8) = 2/9.
    data = correlated(0.0)
    model = oracle(data)
    model.codes += 1e-3
    assert evaluate(model, data)["support_f1"] == pytest.approx(2 / 9, abs=1e-12)


def test_dead_latents_cost_support_f1_but_not_the_dictionary_scores():
    data = correlated(0.0)
    model = oracle(data)
    model.codes[:, :8] = 0  # 8 of 32 true features never detected: recall about 3/4, precision 1
    scores = evaluate(model, data)
    assert scores["mmcs"] == pytest.approx(1.0, abs=1e-6) and scores["recovery_90"] == 1.0
    active = data.truth["test_codes"] > 0
    recall = 1 - float(active[:, :8].sum() / active.sum())  # the missed share of this draw's events
    assert recall == pytest.approx(0.75, abs=0.05)
    assert scores["support_f1"] == pytest.approx(2 * recall / (1 + recall), abs=1e-6)


def collapsed_group_means(data):
    """Each atom replaced by its group's normalised mean direction (4 identical copies per group)."""
    atoms, groups = data.truth["dictionary"], data.truth["groups"]
    means = torch.stack([atoms[groups == g].mean(0) for g in groups.unique()])
    return nn.functional.normalize(means, dim=1)[groups]


def test_hungarian_matching_and_nearest_condition_refuse_credit_to_a_collapsed_dictionary():
    data = correlated(0.9)
    true_atoms, collapsed = data.truth["dictionary"], collapsed_group_means(data)
    cosines = abs_cosines(true_atoms, collapsed)
    # The group mean has cosine sqrt(0.9 + 0.1/4) = 0.962 to each atom of its group, so a
    # per-atom maximum, or Hungarian matching with the threshold alone, would call it recovered.
    assert cosines.max(1) == pytest.approx(np.full(32, np.sqrt(0.925)), abs=1e-5)
    rows, cols = hungarian_match(cosines)
    assert (cosines[rows, cols] >= 0.9).all()
    assert recovered(cosines, rows, cols).sum() == 0
    # Below rho = 0.62 the nearest condition follows from the threshold: the true atoms pass.
    assert recovered(*[abs_cosines(true_atoms, true_atoms)] + list(hungarian_match(abs_cosines(true_atoms, true_atoms)))).all()


def test_mmcs_uses_the_one_to_one_matching_not_the_per_atom_maximum():
    # 2 true atoms, 1 learned atom halfway between them: max-based mmcs would be cos(45°) for
    # both; the one-to-one matching gives one of them cos(45°) and the other 0.
    data = correlated(0.0, n_atoms=4, group_size=1, dim=8, k=1)
    atoms = data.truth["dictionary"]
    halfway = nn.functional.normalize(atoms[0] + atoms[1], dim=0)[None]
    model = LookupOracle(halfway, data.test, data.truth["test_codes"][:, :1])
    scores = evaluate(model, data)
    assert scores["mmcs"] == pytest.approx(np.sqrt(0.5) / 4, abs=1e-6)
    assert "coherence" not in scores  # one alive atom: no pair


def test_coherence_of_a_duplicated_atom_is_one():
    data = correlated(0.0)
    model = oracle(data)
    with torch.no_grad():
        model.W_dec[1] = -model.W_dec[0]
    assert evaluate(model, data)["coherence"] == pytest.approx(1.0, abs=1e-6)


def test_monotone_frac_is_one_on_orthonormal_atoms_and_below_one_on_correlated_ones():
    orthogonal, corr = correlated(0.0), correlated(0.9)
    model = InnerProductTopK(orthogonal.truth["dictionary"], k=4)
    assert evaluate(model, orthogonal)["monotone_frac"] == 1.0
    assert model.k == 4  # restored
    model = InnerProductTopK(corr.truth["dictionary"], k=4)
    assert evaluate(model, corr)["monotone_frac"] < 0.5
    assert model.k == 4


def test_mp_sae_reconstruction_never_gets_worse_as_k_grows():
    if "mp" not in VARIANTS:
        pytest.skip("the mp variant (baselines/mp.py) is not written yet")
    data = correlated(0.9)
    torch.manual_seed(0)
    model = VARIANTS.get("mp")((48,), 64, k=4)
    model.init_from_data(data.train)
    model.eval()
    assert evaluate(model, data)["monotone_frac"] == 1.0
    assert model.k == 4


def test_headline_dataset_is_the_highest_rho_correlated_instance():
    names = ["correlated-rho0.0", "correlated-rho0.9", "tree", "correlated-rho0.6"]
    assert TASK.headline_dataset(names) == "correlated-rho0.9"
    assert TASK.headline_dataset(["tree"]) == "tree"


def test_datasets_without_a_true_dictionary_are_skipped():
    data = correlated(0.0)
    assert TASK.dataset_skip_reason(data) is None
    assert TASK.skip_reason(VARIANTS.get("mp"), data) is None
    assert "requires image" in TASK.skip_reason(VARIANTS.get("tensor"), data)  # vectors, not images
    data.truth = {}
    assert "no true dictionary" in TASK.dataset_skip_reason(data)


def duplicated_oracle(data, decoy=False):
    """Two copies of every true atom; each sample's code of an atom goes to the first copy on
    even samples and to the second on odd ones (as MP-SAE splits the support between
    duplicates). With `decoy`, the second copies are random directions instead."""
    atoms, codes = data.truth["dictionary"], data.truth["test_codes"]
    second = atoms
    if decoy:
        gen = torch.Generator().manual_seed(3)
        second = nn.functional.normalize(torch.randn(atoms.shape, generator=gen), dim=1)
    odd = (torch.arange(len(codes)) % 2 == 1)[:, None]
    split = torch.cat([torch.where(odd, 0.0, codes), torch.where(odd, codes, 0.0)], dim=1)
    return LookupOracle(torch.cat([atoms, second]), data.test, split)


def test_duplicates_of_a_true_atom_are_merged_in_support_f1_only():
    data = correlated(0.0)
    scores = evaluate(duplicated_oracle(data), data)
    assert scores["support_f1"] == 1.0
    # the matched copy fires on about half the samples: recall ~1/2, precision 1, F1 ~2/3
    assert scores["support_f1_raw"] == pytest.approx(2 / 3, abs=0.05)
    assert scores["recovery_90"] == 1.0 and scores["coherence"] == pytest.approx(1.0, abs=1e-6)
    # a second atom that is not a copy is not merged: the odd samples stay misses
    decoy = evaluate(duplicated_oracle(data, decoy=True), data)
    assert decoy["support_f1"] == decoy["support_f1_raw"] == pytest.approx(2 / 3, abs=0.05)


def test_attribution_needs_a_recovery_and_refuses_ties():
    # learned: a copy of true 0, a copy of true 1, the midpoint of 0 and 1, a stranger
    cosines = np.array([[1.0, 0.0, 0.95, 0.1],
                        [0.0, 1.0, 0.95, 0.2]])
    rows, cols = hungarian_match(cosines)
    assert list(zip(rows, cols)) == [(0, 0), (1, 1)]
    assert attribution(cosines, rows, cols).tolist() == [0, 1, -1, -1]
    cosines[1, 2] = 0.5  # the midpoint now recovers true 0 alone
    assert attribution(cosines, rows, cols).tolist() == [0, 1, 0, -1]


def superposition(**params):
    return build_dataset("superposition", {"n_atoms": 128, "dim": 32, "k": 4, "n_train": 400, "n_test": 300, **params})


def test_on_superposition_the_oracle_recovers_everything_and_pca_nothing():
    data = superposition()
    scores = evaluate(oracle(data, permute=True, extra_latents=8), data)
    assert scores["mmcs"] == pytest.approx(1.0, abs=1e-6)
    assert scores["recovery_90"] == scores["support_f1"] == scores["support_f1_raw"] == 1.0
    # The full PCA basis (32 orthonormal components for 128 superposed atoms) recovers none.
    pca = CONTROLS.get("pca")((32,), 32, k=32)
    pca.fit(data.train)
    pca_scores = evaluate(pca, data)
    assert pca_scores["recovery_90"] == 0.0 and pca_scores["mmcs"] < 0.5


def rows_for(dataset, variant, setting, l0, value, seeds=(0, 1)):
    return [dict(task="correlated_recovery", dataset=dataset, variant=variant, seed=s, setting=setting,
                 l0=l0, metric=m, value=value, status="ok", converged=True) for s in seeds for m in ("recovery_90", "mmcs")]


def sweep_results():
    """mp at k=4 (L0 4) scores 1 and at k=16 (L0 16) scores 0.5; relu always 0.2; pca dashed."""
    rows = []
    for family in ("correlated", "superposition"):
        for rho in (0.0, 0.9):
            name = f"{family}-rho{rho}"
            rows += rows_for(name, "mp", "k=4", 4.0, 1.0) + rows_for(name, "mp", "k=16", 16.0, 0.5)
            rows += rows_for(name, "relu", "l1_coeff=0.1", 12.0, 0.2) + rows_for(name, "pca", "k=16", 16.0, 0.0)
    rows += rows_for("tree", "mp", "k=4", 4.0, 1.0)
    return pd.DataFrame(rows)


def test_recovery_curves_read_each_variant_at_the_headline_l0_like_the_tables():
    """Headline L0 16: mp's sweep brackets it (1.0 at L0 4, 0.5 at L0 16) and reads 0.5; relu's one
    setting at L0 12 does not reach it and is left out, not extrapolated; the tree has no rho."""
    curves = recovery_curves(sweep_results(), TASK.name)
    correlated = curves[(curves.family == "correlated") & (curves.metric == "recovery_90")]
    assert set(correlated.variant) == {"mp", "pca"} and set(correlated.rho) == {0.0, 0.9}
    assert (correlated[correlated.variant == "mp"]["mean"] == 0.5).all()
    assert (correlated[correlated.variant == "pca"]["mean"] == 0.0).all()
    assert "tree" not in set(curves.family)
    # between two settings: L0 16 is halfway in log L0 from 4 (1.0) to 64 (0.0) -> 0.5, interpolated
    results = sweep_results()
    results = results[~((results.variant == "mp") & (results.setting == "k=16"))]
    results = pd.concat([results, pd.DataFrame(rows_for("correlated-rho0.0", "mp", "k=64", 64.0, 0.0))])
    mp = recovery_curves(results, TASK.name).query("variant == 'mp' and family == 'correlated' and rho == 0.0")
    assert mp[mp.metric == "recovery_90"]["mean"].item() == pytest.approx(0.5)


def test_plot_draws_recovery_against_rho_per_family(tmp_path):
    results = sweep_results()
    figures = TASK.plots(results, tmp_path)
    assert [title.split(" on ")[1].split(",")[0] for title, _ in figures] == ["correlated", "superposition"]
    for title, path in figures:
        assert "ρ" in title and path.exists() and path.suffix == ".png" and path.stat().st_size > 1000
    assert TASK.plots(results.iloc[:0], tmp_path) == []


def test_headline_dataset_prefers_the_correlated_family():
    assert TASK.headline_dataset(["superposition-rho0.95", "correlated-rho0.6", "tree"]) == "correlated-rho0.6"
    assert TASK.headline_dataset(["superposition-rho0.3", "superposition-rho0.6"]) == "superposition-rho0.6"
