"""Matched-L0 comparison (SPEC section 6) on points whose answers are known."""
import numpy as np
import pandas as pd
import pytest

from benchmark.report.matched import (Entry, beats_controls, headline_settings, interpolate, matched_entries,
                               noise_ranks, paired, separated_pairs)
from benchmark.results import RunInfo, make_rows

INFO = RunInfo("r", "c", "nosuch-preset", "cpu", "2")


def test_interpolation_is_linear_in_log_l0_between_the_bracketing_points():
    # Between L0 8 (value 0.5) and 32 (value 0.9), L0 16 is halfway in log: 0.7.
    value, used = interpolate([4, 8, 32, 64], [0.1, 0.5, 0.9, 0.95], 16)
    assert value == pytest.approx(0.7) and used == [1, 2]
    # Not halfway in linear L0: (16-8)/(32-8) would give 0.633.
    assert value != pytest.approx(0.5 + 0.4 * 8 / 24)


def test_a_point_exactly_at_the_target_is_used_as_it_is():
    assert interpolate([8, 16, 32], [0.2, 0.6, 0.9], 16) == (0.6, [1])


@pytest.mark.parametrize("target", [2.0, 100.0, 64.5])
def test_outside_the_swept_range_is_not_reached(target):
    assert interpolate([4, 8, 32, 64], [0.1, 0.5, 0.9, 0.95], target) is None


def test_zero_l0_points_bracket_nothing():
    assert interpolate([0, 16], [0.0, 0.5], 8) is None


def rows(variant, seed, points, task="reconstruction", metric="r2", converged=True):
    out = []
    for setting, (l0, value) in enumerate(points):
        out += make_rows(INFO, task=task, dataset="d", variant=variant, seed=seed, setting=f"s{setting}", l0=l0,
                         converged=converged, steps=100, config_hash=f"{variant}{seed}{setting}",
                         metrics={metric: value}, directions={metric: True})
    return out


def frame(*row_lists):
    return pd.DataFrame([r for rs in row_lists for r in rs])


def test_entries_average_the_per_seed_interpolations_and_mark_controls():
    results = frame(rows("topk", 0, [(8, 0.5), (32, 0.9)]), rows("topk", 1, [(4, 0.3), (16, 0.8)]),
                    rows("pca", 0, [(16, 0.6)]), rows("pca", 1, [(16, 0.62)]))
    entries = {e.variant: e for e in matched_entries(results, "reconstruction", "d", "r2", 16)}
    assert entries["topk"].mean == pytest.approx((0.7 + 0.8) / 2) and entries["topk"].seeds == 2
    assert entries["topk"].kind == "variant" and entries["pca"].kind == "control"
    assert entries["pca"].mean == pytest.approx(0.61)


def test_a_seed_whose_sweep_misses_the_target_is_left_out_and_counted():
    results = frame(rows("topk", 0, [(8, 0.5), (32, 0.9)]), rows("topk", 1, [(20, 0.8), (32, 0.9)]))
    (entry,) = matched_entries(results, "reconstruction", "d", "r2", 16)
    assert (entry.seeds, entry.of_seeds) == (1, 2) and entry.mean == pytest.approx(0.7)


def test_an_unconverged_bracketing_model_marks_the_entry():
    results = frame(rows("topk", 0, [(8, 0.5), (32, 0.9)], converged=False))
    (entry,) = matched_entries(results, "reconstruction", "d", "r2", 16)
    assert not entry.converged


def entry(name, values, kind="variant"):
    """An entry read on seeds 0..n-1 at the given per-seed values."""
    by_seed = {str(seed): v for seed, v in enumerate(values)}
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return Entry(name, mean, std, len(values), len(values), True, kind, by_seed)


DRAW = np.array([0.0, 0.05, -0.04, 0.02, -0.03])  # a seed's data draw, shared by every model


def test_entries_keep_their_per_seed_values_for_paired_tests():
    results = frame(rows("topk", 0, [(8, 0.5), (32, 0.9)]), rows("topk", 1, [(4, 0.3), (16, 0.8)]))
    (topk,) = matched_entries(results, "reconstruction", "d", "r2", 16)
    assert topk.by_seed == pytest.approx({"0": 0.7, "1": 0.8})


def test_a_shared_data_draw_does_not_hide_a_consistent_margin():
    # The seeds' spread (0.035) is seven times the margin, but the margin holds on every seed.
    control = entry("pca", 0.80 + DRAW, "control")
    better = entry("a", 0.805 + DRAW + [0.001, -0.001, 0.0, 0.001, -0.001])
    assert beats_controls(better, [better, control], True)
    assert not beats_controls(control, [better, control], False)  # lower is better: pca wins
    assert paired(better, control, True).low > 0
    assert beats_controls(better, [better], True) is None  # no control at this L0


def test_identical_per_seed_values_are_never_separated():
    a, b = entry("a", 0.8 + DRAW), entry("b", 0.8 + DRAW)
    assert separated_pairs([a, b], True) == (0, 1) and noise_ranks([a, b], True) == {"a": 1, "b": 1}


def test_separation_and_ranks_treat_ties_within_noise_as_ties():
    noise = np.array([0.01, -0.01, 0.005, 0.0, -0.005])
    entries = [entry("a", 0.90 + DRAW + noise), entry("b", 0.90 + DRAW - noise), entry("c", 0.50 + DRAW),
               entry("pca", 0.95 + DRAW, "control")]
    assert separated_pairs(entries, True) == (2, 3)  # a-c and b-c, not a-b
    assert noise_ranks(entries, True) == {"pca": 1, "a": 2, "b": 2, "c": 4}
    assert separated_pairs(entries[:2], True) == (0, 1)
    assert noise_ranks(entries, False)["c"] == 1  # lower is better: the order flips


def test_models_on_different_seeds_are_not_compared():
    a, b = entry("a", [0.9, 0.9, 0.9]), entry("b", [0.5, 0.5])
    assert not paired(a, b, True).tested and "seeds differ" in paired(a, b, True).text()
    assert noise_ranks([a, b], True) == {"a": 1, "b": 1}


def test_headline_settings_pick_the_setting_nearest_the_target_in_log_l0():
    results = frame(rows("topk", 0, [(4, 0.3), (12, 0.6), (40, 0.9)]), rows("topk", 1, [(4, 0.3), (12, 0.6), (40, 0.9)]))
    assert headline_settings(results, "reconstruction", "d", target=16) == {"topk": "s1"}
    assert headline_settings(results, "reconstruction", "d", target=30) == {"topk": "s2"}


def test_entries_do_not_depend_on_the_order_of_the_rows():
    # Seeds and variants interleaved, and one unconverged model (seed 1, L0 64) that brackets
    # nothing at 16: each seed's bracket and flags must be read from that seed's own rows, so
    # the entry is converged whatever the order.
    results = frame(rows("topk", 1, [(64, 0.95)], converged=False), rows("topk", 0, [(8, 0.5), (32, 0.9)]),
                    rows("pca", 0, [(16, 0.6)]), rows("topk", 1, [(4, 0.3), (16, 0.8)]), rows("pca", 1, [(16, 0.62)]))
    results["setting"] = [f"s{i}" for i in range(len(results))]  # one model a row
    orders = [results] + [results.sample(frac=1.0, random_state=state) for state in range(6)]
    for table in orders:
        entries = {e.variant: e for e in matched_entries(table, "reconstruction", "d", "r2", 16)}
        assert entries["topk"].by_seed == pytest.approx({"0": 0.7, "1": 0.8}) and entries["topk"].of_seeds == 2
        assert entries["topk"].converged
        assert entries["pca"].by_seed == pytest.approx({"0": 0.6, "1": 0.62}) and entries["pca"].converged
