"""Seed stability (tasks/stability.py and its pass after the grid) on cases whose answers are known."""
import pandas as pd
import pytest
import torch

from benchmark.config import parse_preset
from benchmark.grid.runner import Cell, RunOptions, Runner, budget_check_options
from benchmark.report.budget_check import compared_seeds
from benchmark.report.leaderboard import Leaderboard
from benchmark.report.reporting import run_and_report
from benchmark.training.loop import TrainedModel
from tasks.stability import MATCH_THRESHOLD, Stability, match_dictionaries, unit_atoms
from tests.benchmark._runs import run_preset
from tests.tasks._toys import AffineToy


def toy(dictionary: torch.Tensor) -> TrainedModel:
    k, d = dictionary.shape
    return TrainedModel(model=AffineToy(dictionary, torch.zeros(d), torch.zeros(d, k)))


def random_dictionary(k=64, d=48, seed=0):
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed))


def test_an_identical_dictionary_under_two_seeds_has_stability_one():
    atoms = unit_atoms(toy(random_dictionary()).model)
    assert match_dictionaries(atoms, atoms) == pytest.approx((1.0, 1.0))


def test_a_permuted_rescaled_sign_flipped_copy_is_the_same_dictionary():
    base = random_dictionary()
    copy = -3.0 * base[torch.randperm(64, generator=torch.Generator().manual_seed(1))]
    scores = Stability().evaluate_seeds({0: toy(base), 1: toy(copy)}, twin=None)
    assert scores[0] == pytest.approx({"pairwise_mcc": 1.0, "matched_frac": 1.0})
    assert scores[1] == scores[0]


def test_two_random_dictionaries_score_the_null():
    mcc, frac = match_dictionaries(unit_atoms(toy(random_dictionary(seed=0)).model),
                                   unit_atoms(toy(random_dictionary(seed=1)).model))
    # Hungarian matching of random unit vectors in 48 dimensions: |cos| ≈ 0.3-0.4, none above 0.7.
    assert 0.2 < mcc < 0.5 and frac == 0.0 and MATCH_THRESHOLD == 0.7


def test_half_the_atoms_shared_gives_half_the_matches():
    base, other = random_dictionary(seed=0), random_dictionary(seed=1)
    half = torch.cat([base[:32], other[32:]])
    mcc, frac = match_dictionaries(unit_atoms(toy(base).model), unit_atoms(toy(half).model))
    assert frac == pytest.approx(0.5) and 0.5 < mcc < 0.8


def test_each_seed_is_scored_against_every_other_and_the_twin_only_on_the_first():
    a, c = random_dictionary(seed=0), random_dictionary(seed=2)
    scores = Stability().evaluate_seeds({0: toy(a), 1: toy(a), 2: toy(c)}, twin=toy(a))
    # Seed 0 against 1 (identical: 1) and 2 (random: ~0.35); the twin is identical to seed 0.
    assert scores[0]["matched_frac"] == pytest.approx(0.5) and scores[2]["matched_frac"] == 0.0
    assert scores[0]["same_data_mcc"] == pytest.approx(1.0) and "same_data_mcc" not in scores[1]


PRESET = ("seeds: [0, 1]\nn_latents: 32\ntrain: {epochs: 2, batch_size: 64, lr: 0.003}\n"
          "comparison: {l0_targets: [4], headline_l0: 4}\n"
          "datasets: {digits8: {}, other: {kind: digits8, seeds: [0]}}\n"
          "controls: {random-dict: {}, pca: {}}\n"
          "tasks: {stability: {datasets: [digits8, other]}, sparsity: {datasets: [digits8]}}\n"
          "variants: {topk: {aux_k: 8, sweep: [{k: 2}, {k: 4}]}}\n")


@pytest.fixture(scope="module")
def stability_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stability")
    return (out, *run_preset(PRESET, out))


def test_the_run_scores_every_seed_at_its_own_l0_with_the_twin_on_the_headline_dataset(stability_run):
    _, _, results = stability_run
    rows = results[(results.task == "stability") & (results.dataset == "digits8") & (results.status == "ok")]
    topk = rows[rows.variant == "topk"]
    assert set(topk.seed) == {0, 1} and set(topk.setting) == {"k=2", "k=4"}
    assert set(topk[topk.seed == 0].metric) == {"pairwise_mcc", "matched_frac", "same_data_mcc", "same_data_frac"}
    assert set(topk[topk.seed == 1].metric) == {"pairwise_mcc", "matched_frac"}
    sparsity_l0 = results[(results.task == "sparsity") & (results.variant == "topk")].groupby(["setting", "seed"]).l0.first()
    assert topk.groupby(["setting", "seed"]).l0.first().to_dict() == pytest.approx(sparsity_l0.to_dict())
    null = rows[(rows.variant == "random-dict") & (rows.metric == "matched_frac")]
    assert not null.empty and (null.value == 0).all()
    # A control fixed by the data would win by construction: skipped, with the reason.
    pca = results[(results.task == "stability") & (results.variant == "pca")]
    assert (pca.status == "skipped").all() and "has no initialisation to vary" in pca.message.iloc[0]


def test_the_twin_shares_the_data_but_not_the_initialisation(stability_run):
    out, options, _ = stability_run
    runner = Runner(options)
    runner.load_datasets()
    cell = Cell("topk", "k=2", "digits8", 0)
    spec = runner.model_spec(cell)
    model, twin = runner.train(cell, spec), runner.train(cell, spec, init_seed=1_000_003)
    assert model.from_cache and twin.from_cache  # the run trained and cached both
    assert spec.key([], 1_000_003) != spec.key([])
    assert not torch.equal(model.model.atoms(), twin.model.atoms())


def test_a_dataset_with_one_seed_is_skipped_with_the_reason(stability_run):
    _, _, results = stability_run
    rows = results[(results.task == "stability") & (results.dataset == "other")]
    assert not rows.empty and (rows.status == "skipped").all()
    assert rows.message.iloc[0] == "stability compares seeds: this run has one (0); give two or more"


def test_a_rerun_finds_the_stability_rows_finished(stability_run):
    out, options, results = stability_run
    Runner(options).run()
    assert len(pd.read_csv(out / "results.csv")) == len(results)


BUDGET_PRESET = PRESET.replace("seeds: [0, 1]", "seeds: [0, 1, 2]") + "budget_check: {length: 2, seeds: 1}\n"


def test_the_budget_check_re_trains_two_seeds_for_stability_and_no_same_data_twin(tmp_path):
    """Stability compares seeds, so its headline dataset gets two seeds at 2x (one pair), and its
    same-data twin, which gives no headline, is not trained again; the check reads the pair on the
    first seed's row, and sparsity, on the same dataset, still reads its one budget seed."""
    options = RunOptions(preset=parse_preset(BUDGET_PRESET, "test", "test"), variants=["topk"], out_dir=tmp_path,
                         progress=False, isolate=False)
    budget = budget_check_options(options)
    assert budget.preset.seeds_for("digits8") == [0, 1] and not budget.same_data_twins
    assert run_and_report(Runner(options), tmp_path / "board.md", Runner(budget), options.preset) == 0
    at_2x = pd.read_csv(tmp_path / "results-2x.csv")
    stability = at_2x[(at_2x.task == "stability") & (at_2x.variant == "topk")]
    assert (stability.status == "ok").all() and set(stability.seed) == {0, 1}
    assert set(stability.metric) == {"pairwise_mcc", "matched_frac"}  # no same-data twin at 2x
    pair = stability[stability.metric == "pairwise_mcc"].groupby(["setting", "seed"]).value.first().unstack()
    assert list(pair[0]) == pytest.approx(list(pair[1]), rel=1e-9)  # two seeds, one pair: both rows hold it
    checks = Leaderboard(pd.read_csv(tmp_path / "results.csv"), "test", tmp_path / "board.md", tmp_path / "plots",
                         at_2x, options.preset).budget_checks()
    assert checks["stability"].checked and checks["stability"].seeds == ("0",)
    assert checks["sparsity"].checked and checks["sparsity"].seeds == ("0",)  # not both of digits8's 2x seeds


def test_a_check_reads_at_most_the_budget_seeds_and_one_row_of_a_pair():
    assert compared_seeds({"0", "1", "2"}, None, False) == {"0", "1", "2"}
    assert compared_seeds({"2", "0", "1"}, 1, False) == {"0"}
    assert compared_seeds({"0", "1"}, None, True) == {"0"}  # two seeds are one pair
    assert compared_seeds({"0", "1", "2"}, 3, True) == {"0", "1", "2"}  # three seeds, three pairs
