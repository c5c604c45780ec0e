"""The grid trains each sweep of a stackable variant (every setting and seed on a dataset) as one
stacked model: the rows equal those of models trained one at a time, and a stack that fails
falls back to its cells one by one, so the failure lands on the cell that caused it."""
import math

import pandas as pd

from tests.benchmark._submissions import run

PRESET = """\
description: stacked sweeps (tests)
seeds: [0, 1]
n_latents: 32
train: {{max_steps: 60, min_steps: 20, check_every: 10, batch_size: 64, lr: 0.01, schedule: linear_decay, decay_fraction: 0.5}}
datasets:
  correlated-rho0.6: {{kind: correlated, rho: 0.6, n_train: 256, n_test: 128, l0_targets: [3], headline_l0: 3}}
tasks:
  reconstruction: {{datasets: [correlated-rho0.6]}}
variants:
  relu: {{sweep: [{{l1_coeff: 0.05}}, {{l1_coeff: 0.4}}{extra}]}}
  topk: {{aux_k: 16, dead_steps: 20, sweep: [{{k: 2}}, {{k: 4}}]}}
"""
KEY = ["variant", "setting", "seed", "metric"]


def preset(tmp_path, extra="", budget_check=False):
    path = tmp_path / "stacked.yaml"
    path.write_text(PRESET.format(extra=extra) + ("budget_check: {length: 2, seeds: 1}\n" if budget_check else ""))
    return path


def rows(out, name="results.csv") -> pd.DataFrame:
    frame = pd.read_csv(out / name, keep_default_na=False, na_values={"value": [""]})
    return frame[frame["variant"].isin(["relu", "topk"])].set_index(KEY).sort_index()


def test_stacked_sweeps_give_the_rows_of_models_trained_alone(tmp_path):
    path = preset(tmp_path)
    args = ["--variant", "relu", "topk", "--no-controls", "--no-budget-check", "--jobs", "1"]
    assert run(tmp_path / "stacked", path, *args) == 0
    assert run(tmp_path / "alone", path, *args, "--no-stack") == 0
    stacked, alone = rows(tmp_path / "stacked"), rows(tmp_path / "alone")
    assert list(stacked.index) == list(alone.index)
    assert len(stacked.droplevel("metric").index.unique()) == 2 * 4  # 2 seeds x 4 models, every one ok
    assert set(stacked["status"]) == {"ok"}
    assert (stacked["steps"] == alone["steps"]).all() and (stacked["converged"] == alone["converged"]).all()
    assert (stacked["step_cap"] == 60).all()
    for (key, a), b in zip(stacked["value"].items(), alone["value"]):
        assert math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4), key


def test_a_failing_model_in_a_stack_becomes_its_own_error_row(tmp_path):
    path = preset(tmp_path, extra=", {l1_coeff: .nan}")
    code = run(tmp_path / "out", path, "--variant", "relu", "--no-controls", "--no-budget-check", "--jobs", "1")
    assert code == 1
    frame = rows(tmp_path / "out").reset_index()
    failed = frame[frame["status"] == "error"]
    assert set(failed["setting"]) == {"l1_coeff=nan"} and set(failed["seed"]) == {0, 1}
    assert failed["message"].str.contains("training loss became nan").all()
    healthy = frame[frame["setting"] != "l1_coeff=nan"]
    assert set(healthy["status"]) == {"ok"} and len(healthy.groupby(["setting", "seed"])) == 2 * 2


def test_the_grid_stacks_each_sweep_with_its_seeds(tmp_path, monkeypatch):
    import benchmark.training.loop as training

    sizes = []
    real_stack = training.stack
    monkeypatch.setattr(training, "stack", lambda models, hparams: sizes.append(len(models)) or real_stack(models, hparams))
    path = preset(tmp_path)
    args = ["--variant", "relu", "topk", "--no-controls", "--no-budget-check", "--in-process"]
    assert run(tmp_path / "stacked", path, *args) == 0
    assert sorted(sizes) == [4, 4]  # relu and topk: 2 settings x 2 seeds each, one stack apiece
    sizes.clear()
    assert run(tmp_path / "alone", path, *args, "--no-stack") == 0
    assert sizes == []


def test_the_budget_check_loads_the_longer_models_the_grid_forked(tmp_path, monkeypatch):
    """The grid trains each model the budget check re-trains at 2x as a fork of its 1x model
    (they share every step up to the 1x decay): the check trains nothing, and its rows are
    those of a check that trains its models from scratch."""
    import benchmark.grid.runner as runner

    calls = []
    real_train_models = runner.train_models
    monkeypatch.setattr(runner, "train_models", lambda models, *a, forks=(), **k:
                        calls.append((len(models), len(forks))) or real_train_models(models, *a, forks=forks, **k))
    path = preset(tmp_path, budget_check=True)
    args = ["--variant", "relu", "topk", "--no-controls", "--no-twins", "--in-process"]
    assert run(tmp_path / "forked", path, *args) == 0
    assert sorted(calls) == [(4, 2), (4, 2)]  # 2 settings x 2 seeds, and 2x forks of seed 0's; then nothing
    calls.clear()
    monkeypatch.setattr(runner.Runner, "longer_spec", lambda self, cell, spec: None)
    assert run(tmp_path / "apart", path, *args) == 0
    assert sorted(calls) == [(2, 0), (2, 0), (4, 0), (4, 0)]  # the check trains seed 0's models itself
    forked, apart = rows(tmp_path / "forked", "results-2x.csv"), rows(tmp_path / "apart", "results-2x.csv")
    assert list(forked.index) == list(apart.index) and len(forked.droplevel("metric").index.unique()) == 4
    assert set(forked.index.get_level_values("seed")) == {0}
    once = rows(tmp_path / "forked").loc[forked.index]
    assert (forked["steps"] == apart["steps"]).all() and (forked["steps"] > once["steps"]).all()
    for (key, a), b in zip(forked["value"].items(), apart["value"]):
        assert math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-4), key


def test_the_budget_check_trains_only_the_k_settings_its_headline_reads(tmp_path, monkeypatch):
    """topk's L0 is its k: at headline L0 3, a sweep k 1, 2, 4, 8 is read from k 2 and 4 alone, so
    the grid forks only those two into 2x models (relu's L0 is learned: all its settings go on)."""
    import benchmark.grid.runner as runner

    forked = []
    real_train_models = runner.train_models
    monkeypatch.setattr(runner, "train_models", lambda models, *a, forks=(), **k:
                        forked.append(len(forks)) or real_train_models(models, *a, forks=forks, **k))
    path = preset(tmp_path, budget_check=True)
    path.write_text(path.read_text().replace("sweep: [{k: 2}, {k: 4}]", "sweep: [{k: 1}, {k: 2}, {k: 4}, {k: 8}]"))
    args = ["--variant", "relu", "topk", "--no-controls", "--no-twins", "--in-process"]
    assert run(tmp_path / "out", path, *args) == 0
    assert sorted(forked) == [2, 2]  # relu's 2 settings, topk's 2 of 4; seed 0's
    at_2x = rows(tmp_path / "out", "results-2x.csv")
    settings = at_2x.index.droplevel(["seed", "metric"]).unique()
    assert sorted(settings) == [("relu", "l1_coeff=0.05"), ("relu", "l1_coeff=0.4"), ("topk", "k=2"), ("topk", "k=4")]
    assert len(rows(tmp_path / "out").index.droplevel(["seed", "metric"]).unique()) == 6  # 1x: every setting
