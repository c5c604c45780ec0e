"""The 2x-training budget check (benchmark/report/budget_check.py) on comparisons whose answers are known."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.report.budget_check import (NO_CHECK, STABLE, beating_controls, check_headline, check_headlines,
                                           move_text, tied_first)
from benchmark.report.matched import Entry, beats_controls, matched_entries, noise_ranks
from benchmark.results import RunInfo, make_rows

INFO_1X = RunInfo("r1", "c", "nosuch-preset", "cpu", "2")
INFO_2X = RunInfo("r2", "c", "nosuch-preset", "cpu", "2")
HEADLINE = ("reconstruction", "d", "r2", 16.0, True)


def comparison(values: dict[str, float], seeds=(0, 1, 2), spread=0.01, info=INFO_1X, per_seed=None) -> pd.DataFrame:
    """Every variant swept over L0 8 and 32 so that L0 16 reads `values[variant]` + spread·(seed - 1)
    (a seed std of `spread` over seeds 0-2); `per_seed[(variant, seed)]` overrides one reading."""
    rows = []
    for variant, value in values.items():
        for seed in seeds:
            at16 = (per_seed or {}).get((variant, seed), value + spread * (seed - 1))
            for setting, (l0, v) in enumerate([(8, at16 - 0.1), (32, at16 + 0.1)]):
                rows += make_rows(info, task="reconstruction", dataset="d", variant=variant, seed=seed,
                                  setting=f"s{setting}", l0=l0, converged=True, steps=100,
                                  config_hash=f"{info.run_id}{variant}{seed}{setting}", metrics={"r2": v},
                                  directions={"r2": True})
    return pd.DataFrame(rows)


ONE_X = {"topk": 0.80, "relu": 0.70, "pca": 0.60}  # topk first, both beat the control on every seed


def test_identical_results_at_both_budgets_are_stable_with_tau_one():
    check = check_headline(comparison(ONE_X), comparison(ONE_X, info=INFO_2X), *HEADLINE)
    assert check.checked and check.stable and check.verdict == STABLE
    assert check.at_1x.tied_first == check.at_2x.tied_first == ("topk",)
    assert check.at_1x.beats_controls == check.at_2x.beats_controls == ("relu", "topk")
    assert check.tau == pytest.approx(1.0) and check.tau_entries == 3
    assert check.seeds == check.seeds_1x == ("0", "1", "2") and not check.spread_from_1x
    assert check.changes == ()


def test_two_well_separated_variants_that_swap_at_2x_are_not_stable():
    check = check_headline(comparison(ONE_X), comparison({"topk": 0.70, "relu": 0.80, "pca": 0.60}, info=INFO_2X),
                           *HEADLINE)
    assert check.stable is False
    assert (check.at_1x.tied_first, check.at_2x.tied_first) == (("topk",), ("relu",))
    # One of the three pairs (topk, relu) is discordant: τ = (2 - 1) / 3.
    assert check.tau == pytest.approx(1 / 3) and check.tau < 1
    assert check.verdict.startswith("not stable at 2x budget: tied first topk → relu")
    assert check.at_2x.beats_controls == ("relu", "topk")  # unchanged: only the first place moved
    assert not any(c.startswith("beats controls") for c in check.changes)


def test_a_control_that_wins_at_1x_and_loses_beyond_noise_at_2x_is_not_stable():
    at_1x = comparison({"topk": 0.70, "pca": 0.80})
    at_2x = comparison({"topk": 0.90, "pca": 0.80}, info=INFO_2X)
    check = check_headline(at_1x, at_2x, *HEADLINE)
    assert check.at_1x.control_best and not check.at_2x.control_best
    assert (check.at_1x.tied_first, check.at_2x.tied_first) == (("pca",), ("topk",))
    assert (check.at_1x.beats_controls, check.at_2x.beats_controls) == ((), ("topk",))
    assert check.stable is False
    assert "tied first pca (control) → topk" in check.changes
    assert "beats controls none → topk" in check.changes
    assert "a control is best at 1x, not at 2x" in check.changes
    assert check.tau == pytest.approx(-1.0)
    # The paired test decided both changes; every seed differs by the same 0.1, so p is 0.
    assert check.margins == ("topk over pca (control): -0.1 (p 0) at 1x, +0.1 (p 0) at 2x, beyond noise at p < 0.05",
                             "pca (control) over topk: +0.1 (p 0) at 1x, -0.1 (p 0) at 2x, beyond noise at p < 0.05")


def test_a_flip_at_the_bars_edge_shows_its_margin_beside_the_verdict():
    """relu leads the control by 0.08 on seed 0 at 1x, under the one-seed bar (0.131), and by
    0.005 over the bar at 2x: the verdict changes, and its margin shows how near the bar both were."""
    relu = {("relu", 0): 0.68, ("relu", 1): 0.64, ("relu", 2): 0.62}  # relu - pca: 0.08, 0.04, 0.02
    at_1x = comparison({"relu": 0.0, "pca": 0.60}, spread=0.0, per_seed=relu)
    bar = stats.t.ppf(0.975, 2) * np.std([0.08, 0.04, 0.02], ddof=1)
    assert bar == pytest.approx(0.1314, abs=1e-4)
    at_2x = comparison({"relu": 0.605 + bar, "pca": 0.60}, seeds=(0,), spread=0.0, info=INFO_2X)
    check = check_headline(at_1x, at_2x, *HEADLINE)
    assert check.at_1x.beats_controls == () and check.at_2x.beats_controls == ("relu",)
    assert check.margins == ("relu over pca (control): +0.08 at 1x, +0.136 at 2x, beyond noise above 0.131",)


@pytest.mark.parametrize("two_x", [None, "empty", "other task"])
def test_without_2x_rows_for_the_headline_there_is_no_check(two_x):
    if two_x == "empty":
        frame = comparison(ONE_X).iloc[0:0]
    elif two_x == "other task":
        frame = comparison(ONE_X, info=INFO_2X).assign(task="sparsity")
    else:
        frame = None
    check = check_headline(comparison(ONE_X), frame, *HEADLINE)
    assert not check.checked and check.stable is None and check.verdict == NO_CHECK
    assert check.verdict == "no 2x budget check in this run"


def test_a_2x_run_with_one_seed_borrows_each_pairs_spread_from_1x():
    # 1x: topk - relu per seed is -0.01, 0.03, 0.01 (spread 0.02): a one-seed difference must
    # exceed t(0.975, 2) x 0.02 = 0.086 to count. pca moves with the data draw like topk (no spread).
    at_1x = comparison({"topk": 0.800, "relu": 0.790, "pca": 0.60},
                       per_seed={("relu", 0): 0.80, ("relu", 1): 0.77, ("relu", 2): 0.80})
    at_2x = comparison({"topk": 0.780, "relu": 0.795, "pca": 0.59}, seeds=(0,), info=INFO_2X)
    check = check_headline(at_1x, at_2x, *HEADLINE)
    assert check.spread_from_1x and check.at_2x.rule == check.at_1x.rule
    # relu ahead by 0.015 on the one seed: within the pair's spread, so both are tied first, as at 1x.
    assert check.at_2x.tied_first == ("relu", "topk") == check.at_1x.tied_first
    assert check.at_2x.beats_controls == ("relu", "topk")
    assert check.seeds == ("0",) and check.seeds_1x == ("0", "1", "2")
    assert check.stable
    # Ahead by 0.17, beyond the spread: relu alone is first at 2x.
    far = check_headline(at_1x, comparison({"topk": 0.78, "relu": 0.95, "pca": 0.59}, seeds=(0,), info=INFO_2X),
                         *HEADLINE)
    assert far.at_2x.tied_first == ("relu",) and far.stable is False
    # What decided it, with the bar: on seed 0 relu leads topk by 0.80 - 0.79 at 1x and 0.94 - 0.77
    # at 2x; the bar is t(0.975, 2) x the std of relu - topk over the 1x seeds (0.01, -0.03, -0.01).
    assert far.margins == ("relu over topk: +0.01 at 1x, +0.17 at 2x, beyond noise above 0.0861",)
    assert far.verdict.endswith(f"[{far.margins[0]}]")
    assert check.margins == ()  # a stable verdict has nothing to explain


def test_both_budgets_are_read_on_the_seeds_they_share():
    """Seed 2's 1x data draw is an outlier for topk; a 2x run of seeds 0 and 1 is compared with
    1x on seeds 0 and 1 only, so the outlier cannot pass for an effect of the training length."""
    at_1x = comparison(ONE_X, per_seed={("topk", 2): 0.40})
    at_2x = comparison(ONE_X, seeds=(0, 1), info=INFO_2X)
    check = check_headline(at_1x, at_2x, *HEADLINE)
    assert check.seeds == ("0", "1")
    assert check.at_1x.means["topk"] == pytest.approx(0.795)  # (0.79 + 0.80) / 2, seed 2 left out
    assert check.stable and check.tau == pytest.approx(1.0)


def test_a_variant_not_reached_at_2x_is_named():
    at_2x = comparison(ONE_X, info=INFO_2X)
    at_2x = at_2x[~((at_2x["variant"] == "relu") & (at_2x["l0"] == 32))]  # relu's sweep stops below 16
    check = check_headline(comparison(ONE_X), at_2x, *HEADLINE)
    assert check.stable is False and "not reached at 2x: relu" in check.changes
    assert check.tau_entries == 2


def test_the_budget_checks_paired_rule_is_matcheds():
    def entry(name, values, kind="variant"):
        return Entry(name, sum(values) / len(values), 0.0, len(values), 3, True, kind,
                     {str(s): v for s, v in enumerate(values)})

    entries = [entry("a", [0.80, 0.81, 0.79]), entry("b", [0.79, 0.82, 0.78]), entry("c", [0.70, 0.70, 0.69]),
               entry("pca", [0.75, 0.76, 0.74], "control"), entry("ref", [0.99] * 3, "reference"),
               Entry("mp", math.nan, 0.0, 0, 3, True, "variant")]
    ranks = noise_ranks(entries, True)
    assert tied_first(entries, True) == tuple(sorted(v for v, r in ranks.items() if r == 1)) == ("a", "b")
    assert beating_controls(entries, True) == tuple(
        sorted(e.variant for e in entries if e.kind == "variant" and beats_controls(e, entries, True)))


def test_check_headlines_checks_each_headline():
    checks = check_headlines(comparison(ONE_X), comparison(ONE_X, info=INFO_2X),
                             [HEADLINE, ("sparsity", "d", "dead_frac", 16.0, False)])
    assert [c.verdict for c in checks] == [STABLE, NO_CHECK]


def test_an_untrained_twin_keeps_its_1x_reading_at_2x():
    # The 2x run leaves twins out (they do not train); a twin tied first at 1x stays so at 2x.
    at_1x = comparison({"topk": 0.80, "topk-untrained": 0.80, "pca": 0.60})
    check = check_headline(at_1x, comparison({"topk": 0.80, "pca": 0.60}, info=INFO_2X), *HEADLINE)
    assert check.at_2x.tied_first == ("topk", "topk-untrained") == check.at_1x.tied_first
    assert check.stable and check.at_2x.kinds["topk-untrained"] == "twin"


def test_a_run_narrowed_to_some_datasets_checks_only_their_headlines():
    """`--dataset prompts` trains prompts alone: its 2x check re-trains composition's headline, not
    the other tasks' (whose 1x models the run never trained); a dataset that heads no task: none."""
    from benchmark.config import load_preset
    from benchmark.grid.runner import RunOptions, budget_check_options

    preset = load_preset("default")
    whole = budget_check_options(RunOptions(preset=preset))
    assert set(whole.tasks) == set(preset.tasks) and whole.length == 2
    narrowed = budget_check_options(RunOptions(preset=preset, datasets=["prompts"]))
    assert narrowed.tasks == ["composition"] and narrowed.preset.task_datasets("composition") == ["prompts"]
    assert budget_check_options(RunOptions(preset=preset, datasets=["correlated-rho0.0"])) is None


def test_the_largest_move_names_the_variant_whose_mean_moved_most():
    # Every variant gains at 2x and the order holds: stable, yet relu's mean rose by 0.05.
    at_2x = comparison({"topk": 0.82, "relu": 0.75, "pca": 0.60}, info=INFO_2X)
    check = check_headline(comparison(ONE_X), at_2x, *HEADLINE)
    assert check.stable
    name, move = check.largest_move
    assert name == "relu" and move == pytest.approx(0.05)
    assert move_text(check) == "+0.05 (relu)"
    # The control moves too (-0.05 would be the largest), but only variants are read.
    lower_control = comparison({"topk": 0.81, "relu": 0.70, "pca": 0.55}, info=INFO_2X)
    assert check_headline(comparison(ONE_X), lower_control, *HEADLINE).largest_move[0] == "topk"
    same = check_headline(comparison(ONE_X), comparison(ONE_X, info=INFO_2X), *HEADLINE)
    assert same.largest_move[1] == pytest.approx(0.0)
    assert check_headline(comparison(ONE_X), None, *HEADLINE).largest_move is None


def test_a_k_sparse_sweep_is_cut_to_the_settings_that_bracket_the_headline():
    from benchmark.grid.runner import bracketing_sweep

    sweep = [{"k": 6}, {"k": 12}, {"k": 24}, {"k": 48}]
    assert bracketing_sweep(sweep, 16.0) == [{"k": 12}, {"k": 24}]
    assert bracketing_sweep(sweep, 12.0) == [{"k": 6}, {"k": 12}, {"k": 24}]  # its L0 may end either side
    assert bracketing_sweep(sweep, 4.0) == [{"k": 6}]  # below every k: the 1x run did not reach it either
    assert bracketing_sweep(sweep, 60.0) == [{"k": 48}]


def test_the_budget_check_keeps_every_penalty_setting_and_a_variants_own_entry():
    """On the default preset: mp's prompts entry keeps its own learning rate with its cut sweep;
    relu (an L1 penalty: its L0 is learned, and moves with training) keeps all four settings."""
    from benchmark.config import load_preset
    from benchmark.grid.runner import RunOptions, budget_check_options

    preset = load_preset("default")
    narrowed = budget_check_options(RunOptions(preset=preset)).preset
    assert narrowed.sweep("mp", "prompts") == [{"k": 6}, {"k": 12}]
    assert narrowed.train_settings("mp", "prompts") == preset.train_settings("mp", "prompts")
    assert narrowed.sweep("topk", "minilm") == [{"k": 12}, {"k": 24}]
    assert narrowed.sweep("relu", "minilm") == preset.sweep("relu", "minilm")
    assert narrowed.seeds_for("correlated-rho0.9") == [0, 1, 2, 3, 4]  # its own budget_check_seeds: 5
    assert narrowed.seeds_for("prompts") == [0] and narrowed.seeds_for("minilm") == [0, 1]  # stability's pair
    assert narrowed.settings("batchtopk", "correlated-rho0.9") == {  # headline L0 4 lies between k 3 and k 6
        label: s for label, s in preset.settings("batchtopk", "correlated-rho0.9").items() if label in ("k=3", "k=6")}
