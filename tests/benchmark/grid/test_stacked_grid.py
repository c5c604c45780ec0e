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


def preset(tmp_path, extra=""):
    path = tmp_path / "stacked.yaml"
    path.write_text(PRESET.format(extra=extra))
    return path


def rows(out) -> pd.DataFrame:
    frame = pd.read_csv(out / "results.csv", keep_default_na=False, na_values={"value": [""]})
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
