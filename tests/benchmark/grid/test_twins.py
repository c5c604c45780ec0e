"""Untrained twins (benchmark/grid/twins.py): zero steps, never cached, beaten by training where
training matters and tied where it is a no-op."""
import pandas as pd
import pytest
import torch

from benchmark.cli import main
from benchmark.report.matched import beats_twin, matched_entries
from benchmark.grid.runner import Cell, Runner
from benchmark.training.loop import keep_largest
from benchmark.grid.twins import base_name, is_k_sparse, is_twin, keep_top_levels, twin_name
from tests.benchmark._runs import run_preset

KNOWN = ("seeds: [0, 1, 2]\nn_latents: 64\ntrain: {max_steps: 400, batch_size: 128, lr: 0.01}\n"
         "comparison: {l0_targets: [4], headline_l0: 4}\n"
         "datasets: {c: {kind: correlated, rho: 0.0, n_train: 2000, n_test: 512}}\n"
         "tasks: {reconstruction: {datasets: [c]}, correlated_recovery: {datasets: [c]}}\n"
         "variants: {topk: {aux_k: 16, dead_steps: 50, sweep: [{k: 3}, {k: 6}]}}\n")


def test_twin_names_round_trip():
    assert twin_name("topk") == "topk-untrained" and is_twin("topk-untrained") and not is_twin("topk")
    assert base_name("topk-untrained") == "topk" and base_name("pca") == "pca"


@pytest.fixture(scope="module")
def known_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("twins")
    return (out, *run_preset(KNOWN, out, controls=False))


def test_a_twin_has_zero_steps_and_is_never_cached(known_run):
    out, options, results = known_run
    twins = results[results.variant == "topk-untrained"]
    assert not twins.empty and (twins.steps == 0).all() and (twins.status == "ok").all()
    assert (results[results.variant == "topk"].steps > 0).all()
    assert len(list((out / "cache").glob("*.pt"))) == 6  # the trained models (2 settings x 3 seeds) only
    runner = Runner(options)
    runner.load_datasets()
    cell = Cell("topk-untrained", "k=3", "c", 0)
    assert not runner.train(cell, runner.model_spec(cell)).from_cache


@pytest.mark.parametrize("task, metric", [("reconstruction", "r2"), ("correlated_recovery", "mmcs")])
def test_on_a_known_dictionary_trained_topk_beats_its_twin(known_run, task, metric):
    _, _, results = known_run
    entries = matched_entries(results, task, "c", metric, 4)
    topk = next(e for e in entries if e.variant == "topk")
    twin = next(e for e in entries if e.variant == "topk-untrained")
    assert twin.kind == "twin" and topk.mean > twin.mean + 0.1
    assert beats_twin(topk, entries, True)


def test_a_model_whose_training_is_a_no_op_ties_its_twin_on_every_metric(tmp_path):
    preset = ("seeds: [0, 1]\nn_latents: 32\ntrain: {epochs: 3, batch_size: 64, lr: 0.0}\n"
              "comparison: {l0_targets: [6], headline_l0: 6}\n"
              "datasets: {digits8: {}}\n"
              "tasks: {reconstruction: {datasets: [digits8]}, sparsity: {datasets: [digits8]}}\n"
              "variants: {topk: {sweep: [{k: 4}, {k: 8}]}}\n")
    _, results = run_preset(preset, tmp_path, variants=["topk"], controls=False)
    ok = results[results.status == "ok"]
    key = ["task", "setting", "seed", "metric"]
    trained = ok[ok.variant == "topk"].set_index(key).value.sort_index()
    twin = ok[ok.variant == "topk-untrained"].set_index(key).value.sort_index()
    assert len(trained) > 10 and trained.index.equals(twin.index)
    # Equal to float rounding: the trained sweep runs as one stacked model, and renormalising
    # unit atoms after each (empty) step moves them by ~1e-7.
    assert trained.to_numpy() == pytest.approx(twin.to_numpy(), rel=1e-5, abs=1e-9)
    entries = matched_entries(results, "reconstruction", "digits8", "r2", 6)
    topk = next(e for e in entries if e.variant == "topk")
    assert not beats_twin(topk, entries, True)


def test_a_penalty_twin_is_read_at_the_targets_sparsity(tmp_path):
    # relu's twin at init has L0 ≈ K/2 = 16, no target's; its settings keep each sample's t
    # largest codes for t each target and twice the largest (here 4 and 8), whatever the sweep.
    preset = ("seeds: [0]\nn_latents: 32\ntrain: {epochs: 1, batch_size: 64, lr: 0.01}\n"
              "comparison: {l0_targets: [4], headline_l0: 4}\n"
              "datasets: {digits8: {}}\ntasks: {sparsity: {datasets: [digits8]}}\n"
              "variants: {relu: {sweep: [{l1_coeff: 0.1}, {l1_coeff: 1.0}]}}\n")
    _, results = run_preset(preset, tmp_path, variants=["relu"], controls=False)
    l0 = results[(results.variant == "relu-untrained") & (results.metric == "l0")].set_index("setting").value
    assert sorted(l0.index) == ["keep_top=4", "keep_top=8"]
    assert l0["keep_top=4"] == pytest.approx(4, abs=0.05) and l0["keep_top=8"] == pytest.approx(8, abs=0.2)
    untruncated = results[(results.variant == "relu") & (results.metric == "l0")]
    assert len(untruncated) == 2  # the trained sweep is unchanged


def test_keep_largest_keeps_each_rows_largest_magnitudes():
    encode = lambda x: x  # noqa: E731
    codes = torch.tensor([[0.5, -3.0, 1.0, 0.0], [0.0, 0.0, 0.2, 0.0]])
    kept = keep_largest(encode, 2)(codes)
    torch.testing.assert_close(kept, torch.tensor([[0.0, -3.0, 1.0, 0.0], [0.0, 0.0, 0.2, 0.0]]))
    assert keep_largest(encode, 9)(codes).equal(codes)  # k beyond the width keeps everything


def test_a_twin_is_k_sparse_only_when_its_constructor_takes_k():
    from benchmark.registry import VARIANTS
    assert [v for v in ("topk", "batchtopk", "matryoshka", "mp", "relu", "jumprelu", "tensor")
            if is_k_sparse(VARIANTS.get(v))] == ["topk", "batchtopk", "matryoshka", "mp"]
    assert keep_top_levels([8, 16, 32]) == [8, 16, 32, 64] and keep_top_levels([4.0]) == [4, 8]


def test_no_twins_leaves_them_out(tmp_path):
    preset = ("seeds: [0]\nn_latents: 16\ntrain: {epochs: 1, batch_size: 64, lr: 0.01}\n"
              "datasets: {digits8: {}}\ntasks: {sparsity: {datasets: [digits8]}}\n"
              "variants: {topk: {sweep: [{k: 4}]}}\n")
    _, results = run_preset(preset, tmp_path, controls=False, twins=False)
    assert set(results.variant) == {"topk"}


def test_asking_for_a_twin_by_name_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--variant", "topk-untrained", "--no-twins", "--preset", "smoke", "--out", str(out),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "topk-untrained is an untrained twin" in err
    assert not out.exists()
