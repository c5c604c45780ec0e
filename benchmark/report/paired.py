"""Paired comparisons across seeds: is model A better than model B beyond noise?

Every variant and control trained on one seed sees that seed's data draw (its crops, its split,
its held-out photographs), and most of the spread between seeds is that shared draw moving every
model together. Two models are therefore compared through their per-seed differences, never
through their separate means and stds:

- **Test.** A two-sided paired t-test (`scipy.stats.ttest_rel`, n − 1 degrees of freedom over the
  n seeds both have) at level `LEVEL` = 5%; A is *better beyond noise* when p < 5% and A's mean
  difference is in its favour. The t-test holds its level at any n ≥ 2 when the per-seed
  differences are roughly normal; an exact sign-flip test cannot reach 5% (two-sided) below six
  seeds, a bootstrap over 3-5 seeds is anti-conservative. The level is per comparison: nothing
  corrects for the many pairs a leaderboard compares, so read a rank as "this many models were
  each found better", not as a family-wise claim.
- **Interval.** The 95% t interval of the mean difference (A − B, oriented so that a positive
  value favours A whatever the metric's direction).
- **Too few seeds.** Two models with different seed sets are not compared (the seeds a model
  lacks are missing for a reason, e.g. its sweep does not reach the L0 there), nor are models with
  one common seed: the comparison says why instead of deciding.
- **Degenerate spread.** Per-seed differences that are all equal (to float rounding) have no
  spread to test against:
  all zero is no difference (p = 1); all the same non-zero margin is a difference on every seed
  (p = 0).
"""
import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.05
MIN_SEEDS = 2


@dataclass(frozen=True)
class Difference:
    """A paired comparison of A against B, oriented so that a positive difference favours A."""

    seeds: tuple[str, ...]  # the seeds compared
    mean: float  # mean per-seed difference (nan when not tested)
    low: float  # 95% interval of the mean difference
    high: float
    p: float  # two-sided p-value (nan when not tested)
    reason: str = ""  # why it was not tested; "" when it was

    @property
    def tested(self) -> bool:
        return not self.reason

    @property
    def a_better(self) -> bool:
        return self.tested and self.p < LEVEL and self.mean > 0

    @property
    def separated(self) -> bool:
        return self.tested and self.p < LEVEL and self.mean != 0

    def text(self) -> str:
        """"+0.052 [0.031, 0.073]" (the mean and its interval), or "n/a (why)"."""
        if not self.tested:
            return f"n/a ({self.reason})"
        return f"{self.mean:+.3g} [{self.low:.3g}, {self.high:.3g}]"


def _seed_key(seed) -> tuple:
    """Seeds in numeric order whether they are ints or their strings ("2" before "10")."""
    return len(str(seed)), str(seed)


def _seed_list(seeds) -> str:
    return ", ".join(map(str, sorted(seeds, key=_seed_key)))


def untested(seeds, reason: str) -> Difference:
    return Difference(tuple(seeds), math.nan, math.nan, math.nan, math.nan, reason)


def difference(a: dict, b: dict, higher_is_better: bool) -> Difference:
    """The paired comparison of A's per-seed values against B's ({seed: value} each)."""
    return _difference(_frozen(a), _frozen(b), higher_is_better)


def _frozen(by_seed: dict) -> tuple:
    return tuple(sorted(by_seed.items(), key=lambda item: _seed_key(item[0])))


@functools.lru_cache(maxsize=1 << 16)
def _difference(a: tuple, b: tuple, higher_is_better: bool) -> Difference:
    """`difference` on (seed, value) tuples, remembered: a leaderboard compares the same pairs
    in its ranks, its summary and its budget check, and scipy's test costs ~1 ms a call."""
    a, b = dict(a), dict(b)
    if set(a) != set(b):
        return untested(sorted(set(a) & set(b)), f"seeds differ: {_seed_list(a)} against {_seed_list(b)}")
    seeds = sorted(a, key=_seed_key)
    if len(seeds) < MIN_SEEDS:
        return untested(seeds, "one seed: no paired test")
    sign = 1.0 if higher_is_better else -1.0
    diffs = sign * (np.array([a[s] for s in seeds], float) - np.array([b[s] for s in seeds], float))
    mean = float(diffs.mean())
    if np.ptp(diffs) <= 1e-12 * max(1.0, abs(mean)):  # equal up to float rounding
        p = 1.0 if abs(mean) <= 1e-12 else 0.0
        return Difference(tuple(map(str, seeds)), mean, mean, mean, p)
    test = stats.ttest_rel(diffs, np.zeros_like(diffs))
    interval = test.confidence_interval(1 - LEVEL)
    return Difference(tuple(map(str, seeds)), mean, float(interval.low), float(interval.high), float(test.pvalue))


def one_seed_rule(reference_diffs: np.ndarray, new_diff: float) -> bool:
    """A single new paired difference (one seed) is beyond noise when it exceeds the two-sided 5%
    t quantile times the spread of the same pair's per-seed differences in a reference run
    (n − 1 degrees of freedom): a one-observation t-test that borrows its spread. Needs two or
    more reference seeds; the new difference is oriented so that positive favours A."""
    bar = one_seed_bar(reference_diffs)
    return not math.isnan(bar) and new_diff > bar


def one_seed_bar(reference_diffs) -> float:
    """What a one-seed difference must exceed under `one_seed_rule`: the two-sided 5% t quantile
    (n − 1 degrees of freedom) times the reference differences' sample std; nan below two seeds."""
    reference_diffs = np.asarray(reference_diffs, float)
    if reference_diffs.size < MIN_SEEDS:
        return math.nan
    return float(stats.t.ppf(1 - LEVEL / 2, reference_diffs.size - 1) * reference_diffs.std(ddof=1))
