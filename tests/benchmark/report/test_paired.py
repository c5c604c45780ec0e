"""Paired comparisons across seeds (benchmark/report/paired.py) on cases whose answers are known."""
import math

import numpy as np
import pytest
from scipy import stats

from benchmark.report.paired import LEVEL, difference, one_seed_bar, one_seed_rule


def seeds(values):
    return {str(i): float(v) for i, v in enumerate(values)}


def test_identical_per_seed_values_are_never_separated():
    values = seeds([0.7, 0.9, 0.5, 0.8, 0.6])
    result = difference(values, dict(values), True)
    assert result.tested and result.mean == 0 and result.p == 1.0 and not result.separated


def test_a_model_better_on_every_seed_by_far_more_than_the_spread_is_separated():
    draw = np.array([0.0, 0.3, -0.2, 0.1, -0.1])  # the data draw moves both models a lot
    a = seeds(0.8 + draw + [0.001, -0.002, 0.0, 0.002, -0.001])
    b = seeds(0.7 + draw)
    result = difference(a, b, True)
    assert result.a_better and result.p < 1e-6 and result.low > 0.09 and result.high < 0.11
    assert difference(b, a, True).separated and not difference(b, a, True).a_better
    assert difference(b, a, False).a_better  # lower is better: b wins
    # The unpaired view (the difference of means against the seeds' spread) would not separate them.
    assert 0.1 < 2 * math.sqrt((np.var(list(a.values()), ddof=1) + np.var(list(b.values()), ddof=1)) / 2)


def test_the_interval_and_p_value_are_scipys_paired_t_test():
    a, b = seeds([0.81, 0.74, 0.79, 0.90]), seeds([0.78, 0.75, 0.70, 0.85])
    result = difference(a, b, True)
    reference = stats.ttest_rel(list(a.values()), list(b.values()))
    interval = reference.confidence_interval(0.95)
    assert result.p == pytest.approx(reference.pvalue)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high))
    assert result.text().startswith("+0.04 [")


def test_same_margin_on_every_seed_is_a_difference_and_no_margin_is_none():
    assert difference(seeds([0.5, 0.6]), seeds([0.4, 0.5]), True).a_better
    assert not difference(seeds([0.5, 0.6]), seeds([0.5, 0.6]), True).separated


def test_two_draws_of_the_same_variant_are_separated_no_more_often_than_the_level():
    """1,000 simulated comparisons of one variant with itself on 5 seeds: each seed's data draw is
    shared (a large effect), each model adds its own initialisation noise; the test must separate
    them in at most ~5% of the comparisons (binomial allowance: 6.5%)."""
    rng = np.random.default_rng(0)
    separated = 0
    for _ in range(1000):
        draw = rng.normal(0, 0.05, 5)
        a, b = 0.8 + draw + rng.normal(0, 0.01, 5), 0.8 + draw + rng.normal(0, 0.01, 5)
        separated += difference(seeds(a), seeds(b), True).separated
    assert 0.02 <= separated / 1000 <= 0.065, separated


def test_a_real_difference_below_the_noise_is_found_often_with_five_seeds():
    # Margin 0.02 at init noise 0.01 per model (difference std 0.014): power is far above the level.
    rng = np.random.default_rng(1)
    found = sum(difference(seeds(0.82 + rng.normal(0, 0.01, 5)), seeds(0.8 + rng.normal(0, 0.01, 5)), True).a_better
                for _ in range(200))
    assert found / 200 > 0.5


@pytest.mark.parametrize("a, b, reason", [
    (seeds([0.9, 0.8, 0.7]), seeds([0.5, 0.4]), "seeds differ: 0, 1, 2 against 0, 1"),
    ({"0": 0.9}, {"0": 0.5}, "one seed: no paired test"),
])
def test_comparisons_without_a_paired_test_say_why_and_decide_nothing(a, b, reason):
    result = difference(a, b, True)
    assert not result.tested and result.reason == reason and not result.a_better and not result.separated
    assert result.text() == f"n/a ({reason})" and math.isnan(result.p)


def test_the_one_seed_rule_borrows_the_reference_spread():
    reference = [-0.01, 0.03, 0.01]  # spread 0.02, 2 degrees of freedom: threshold 4.30 x 0.02
    threshold = stats.t.ppf(1 - LEVEL / 2, 2) * 0.02
    assert not one_seed_rule(reference, threshold - 1e-4)
    assert one_seed_rule(reference, threshold + 1e-4)
    assert not one_seed_rule([0.01], 10.0)  # one reference seed: no spread, no decision
    assert one_seed_bar(reference) == pytest.approx(threshold) == pytest.approx(4.3027 * 0.02, rel=1e-4)
    assert one_seed_bar([-0.02, 0.06, 0.02]) == pytest.approx(2 * threshold)  # twice the spread
    assert math.isnan(one_seed_bar([0.01]))


def test_a_comparison_depends_on_the_values_not_on_the_order_or_an_earlier_call():
    # `difference` remembers its answers (a leaderboard asks for each pair many times): the
    # memory must be keyed by every seed's value, not by the seeds or the dicts' order.
    a, b = seeds([0.81, 0.74, 0.79, 0.90]), seeds([0.78, 0.75, 0.70, 0.85])
    first = difference(a, b, True)
    assert difference(dict(reversed(list(a.items()))), b, True) == first
    moved = dict(a, **{"2": 0.60})
    assert difference(moved, b, True).mean == pytest.approx(first.mean - 0.19 / 4)
    assert difference(a, b, False).mean == pytest.approx(-first.mean)
