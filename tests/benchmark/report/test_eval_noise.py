"""Evaluation seeds: the runner's rows, and the training/evaluation variance split
(benchmark/report/eval_noise.py) on cases whose answers are known."""
import numpy as np
import pandas as pd
import pytest

from benchmark.report.eval_noise import entry_components, variance_split
from benchmark.report.matched import matched_entries
from benchmark.results import RunInfo, make_rows
from tests.benchmark._runs import run_preset

INFO = RunInfo("r", "c", "nosuch-preset", "cpu", "2")


def rows(values: dict) -> pd.DataFrame:
    """values[(variant, seed, eval_seed)] at L0 16 (one sweep point exactly at the target)."""
    out = []
    for (variant, seed, eval_seed), value in values.items():
        out += make_rows(INFO, task="intervention", dataset="d", variant=variant, seed=seed, setting="s", l0=16,
                         converged=True, steps=10, config_hash=f"{variant}{seed}", metrics={"edit_r2": value},
                         directions={"edit_r2": True}, eval_seed=eval_seed)
    return pd.DataFrame(out)


def test_noise_only_from_evaluation_is_all_evaluation_share():
    rng = np.random.default_rng(0)
    values = {("a", s, e): 0.5 + rng.normal(0, 0.1) for s in range(5) for e in range(3)}
    split = variance_split(rows(values), "intervention", "d", "edit_r2", 16)
    grid = np.array([[values["a", s, e] for e in range(3)] for s in range(5)])
    assert split.evaluation == pytest.approx(grid.var(axis=1, ddof=1).mean())
    assert (split.training_seeds, split.evaluation_seeds, split.entries) == (5, 3, 1)


def test_noise_only_from_training_seeds_has_no_evaluation_share():
    values = {(v, s, e): 0.5 + 0.1 * s + (0.2 if v == "b" else 0) for v in "ab" for s in range(5) for e in range(3)}
    split = variance_split(rows(values), "intervention", "d", "edit_r2", 16)
    assert split.evaluation == pytest.approx(0, abs=1e-20) and split.evaluation_share == pytest.approx(0, abs=1e-12)
    assert split.training == pytest.approx(np.var([0.1 * s for s in range(5)], ddof=1))


def test_the_training_part_discounts_what_evaluation_noise_explains():
    # Seed means differ only through evaluation noise: the ANOVA estimator floors training at 0.
    grid = {(0, 0): 0.4, (0, 1): 0.6, (1, 0): 0.6, (1, 1): 0.4}
    assert entry_components(grid)[:2] == pytest.approx((0.0, 0.02))
    assert entry_components({(0, 0): 0.4, (1, 0): 0.5}) is None  # one evaluation seed: no split


def test_matched_readings_average_a_models_evaluations():
    values = {("a", s, e): 0.5 + 0.01 * e for s in range(2) for e in range(3)}
    (entry,) = matched_entries(rows(values), "intervention", "d", "edit_r2", 16)
    assert entry.mean == pytest.approx(0.51) and entry.seeds == 2


PRESET = ("seeds: [0, 1]\nn_latents: 24\ntrain: {epochs: 2, batch_size: 64, lr: 0.003}\n"
          "comparison: {l0_targets: [4], headline_l0: 4}\nevaluation: {seeds: 3}\n"
          "datasets: {w: {kind: whitened_patches, size: 4, n_train: 256, n_test: 96}, "
          "v: {kind: whitened_patches, size: 4, n_train: 256, n_test: 96}}\n"
          "tasks: {intervention: {datasets: [w, v]}, sparsity: {datasets: [w]}}\n"
          "variants: {topk: {aux_k: 8, sweep: [{k: 2}, {k: 6}]}}\n")


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    return run_preset(PRESET, tmp_path_factory.mktemp("evalseeds"), controls=False)[1]


def test_an_eval_seeded_tasks_headline_models_get_every_evaluation_seed(seeded_run):
    headline = seeded_run[(seeded_run.task == "intervention") & (seeded_run.dataset == "w")]
    assert sorted(set(headline.eval_seed)) == [0, 1, 2]
    per_model = headline[headline.metric == "edit_r2"].groupby(["setting", "seed"]).eval_seed.nunique()
    assert (per_model == 3).all()
    edit = headline[headline.metric == "edit_r2"].pivot_table(index=["setting", "seed"], columns="eval_seed",
                                                              values="value")
    assert not np.allclose(edit[0], edit[1])  # other images, another value
    # Elsewhere one evaluation: the other dataset of the task, and tasks that draw nothing.
    others = seeded_run[~((seeded_run.task == "intervention") & (seeded_run.dataset == "w"))]
    assert set(others.eval_seed) == {0}


def test_evaluation_seed_0_is_the_tasks_canonical_draw(seeded_run, tmp_path):
    _, single = run_preset(PRESET.replace("evaluation: {seeds: 3}\n", ""), tmp_path, controls=False,
                           tasks=["intervention"])
    key = ["dataset", "setting", "seed", "metric"]
    first = seeded_run[(seeded_run.task == "intervention") & (seeded_run.eval_seed == 0)].set_index(key).value
    assert single.set_index(key).value.sort_index().to_numpy() == pytest.approx(first.sort_index().to_numpy())
