"""Comparing at matched L0 (SPEC section 6).

Each model of a sweep lands at its own achieved test L0. A metric *at target L0 t* is read off
each (variant, seed)'s sweep by linear interpolation in log L0 between the two models whose L0
bracket t (a model exactly at t is used as it is), then averaged over seeds. Outside the swept
range it is "not reached", never extrapolated.

Noise: entry A is better than B *beyond noise* when a paired test across the seeds both were
read on says so (benchmark/report/paired.py: per-seed differences, two-sided paired t-test at 5%). A
variant *beats the controls* when it is better than the best control (by mean) at the same L0
beyond noise; `separated_pairs` counts the pairs of variants that differ beyond noise; ranks
count the entries better beyond noise (ties within noise share a rank). Each of these takes the
rule as an argument (`better`), so the budget check can apply its one-seed rule through them.
"""
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from benchmark.report.paired import Difference, difference
from benchmark.registry import CONTROLS
from benchmark.grid.twins import is_twin, twin_name


def is_control_name(variant: str) -> bool:
    return variant in CONTROLS


def model_rows(results: pd.DataFrame, task: str, dataset: str, metric: str, by_eval_seed: bool = False) -> pd.DataFrame:
    """ok rows of one metric that come from a model (they have an L0), one per model: a model
    evaluated under several evaluation seeds gets the mean of its evaluations (every row, with
    its `eval_seed`, when `by_eval_seed`)."""
    rows = results[(results["task"] == task) & (results["dataset"] == dataset) & (results["metric"] == metric)
                   & (results["status"] == "ok")]
    rows = rows[pd.to_numeric(rows["l0"], errors="coerce").notna()].assign(l0=lambda r: r["l0"].astype(float))
    if by_eval_seed or "eval_seed" not in rows or rows["eval_seed"].nunique() < 2:
        return rows
    model = ["variant", "setting", "seed"]
    return rows.groupby(model, as_index=False, sort=False).agg(
        {c: "mean" if c == "value" else "first" for c in rows.columns if c not in model})


def reference_rows(results: pd.DataFrame, task: str, dataset: str, metric: str) -> pd.DataFrame:
    """ok rows of one metric from references (no model, no L0)."""
    rows = results[(results["task"] == task) & (results["dataset"] == dataset) & (results["metric"] == metric)
                   & (results["status"] == "ok")]
    return rows[pd.to_numeric(rows["l0"], errors="coerce").isna()]


def interpolate(l0s, values, target: float) -> tuple[float, list[int]] | None:
    """(value at `target`, indices of the points used) from points (l0, value), linear in log L0
    between the nearest points below and above the target; None when the target is not
    bracketed. Points at L0 0 (nothing active) have no logarithm and bracket nothing."""
    l0s, values = np.asarray(l0s, float), np.asarray(values, float)
    usable = np.flatnonzero(l0s > 0)
    exact = [i for i in usable if math.isclose(l0s[i], target, rel_tol=1e-9)]
    if exact:
        return float(values[exact].mean()), exact
    below = [i for i in usable if l0s[i] < target]
    above = [i for i in usable if l0s[i] > target]
    if not below or not above:
        return None
    lo = max(below, key=lambda i: l0s[i])
    hi = min(above, key=lambda i: l0s[i])
    weight = (math.log(target) - math.log(l0s[lo])) / (math.log(l0s[hi]) - math.log(l0s[lo]))
    return float(values[lo] + weight * (values[hi] - values[lo])), [lo, hi]


@dataclass
class Entry:
    """One variant (or control, or reference) at one target L0."""

    variant: str
    mean: float
    std: float
    seeds: int  # seeds that reached the target
    of_seeds: int  # seeds it has
    converged: bool  # every model the value was read from converged
    kind: str  # "variant", "twin" (a variant's untrained twin), "control" or "reference"
    by_seed: dict = field(default_factory=dict)  # seed -> value at the target (seeds that reached it)

    @property
    def reached(self) -> bool:
        return self.seeds > 0


def _seed_values(seeds, l0s, values, converged, target: float) -> tuple[dict, bool]:
    """{seed: value at `target`} over the seeds (in string order) whose sweep brackets it, and
    whether every model read converged; from one variant's rows as arrays."""
    by_seed, all_converged = {}, True
    for seed in sorted(set(seeds)):
        mine = np.flatnonzero(seeds == seed)
        found = interpolate(l0s[mine], values[mine], target)
        if found is not None:
            by_seed[seed] = found[0]
            all_converged &= bool(converged[mine[found[1]]].all())
    return by_seed, all_converged


def _summarise(variant: str, by_seed: dict, of_seeds: int, converged: bool, kind: str) -> Entry:
    values = list(by_seed.values())
    mean = float(np.mean(values)) if values else math.nan
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return Entry(variant, mean, std, len(values), of_seeds, converged, kind, dict(by_seed))


def matched_entries(results: pd.DataFrame, task: str, dataset: str, metric: str, target: float) -> list[Entry]:
    """Every variant's and control's value at `target`, and every reference's value (the same at
    every L0), in that order."""
    entries = []
    rows = model_rows(results, task, dataset, metric)
    # As numpy arrays: a pandas group per variant and seed copies every column of the rows, which
    # made this most of a leaderboard's time.
    variants, seeds = rows["variant"].to_numpy().astype(str), rows["seed"].to_numpy().astype(str)
    l0s, values, converged = (rows["l0"].to_numpy(), rows["value"].to_numpy(),
                              rows["converged"].to_numpy().astype(str) == "True")
    for variant in sorted(set(variants)):
        mine = np.flatnonzero(variants == variant)
        by_seed, all_converged = _seed_values(seeds[mine], l0s[mine], values[mine], converged[mine], target)
        kind = "control" if is_control_name(variant) else "twin" if is_twin(variant) else "variant"
        entries.append(_summarise(variant, by_seed, len(set(seeds[mine])), all_converged, kind))
    refs = reference_rows(results, task, dataset, metric)
    for variant, ref_rows in refs.groupby("variant", sort=True):
        values = ref_rows.groupby(ref_rows["seed"].astype(str))["value"].mean().to_dict()
        entries.append(_summarise(variant, values, len(values), True, "reference"))
    entries.sort(key=lambda e: ({"variant": 0, "twin": 1, "control": 2, "reference": 3}[e.kind], e.variant))
    return entries


Better = Callable[[Entry, Entry, bool], bool]  # (a, b, higher_is_better) -> a better beyond noise


def paired(a: Entry, b: Entry, higher_is_better: bool) -> Difference:
    """A against B through their per-seed differences (positive favours A)."""
    return difference(a.by_seed, b.by_seed, higher_is_better)


def better_paired(a: Entry, b: Entry, higher_is_better: bool) -> bool:
    return paired(a, b, higher_is_better).a_better


def best_control(entries: list[Entry], higher_is_better: bool) -> Entry | None:
    controls = [e for e in entries if e.kind == "control" and e.reached]
    if not controls:
        return None
    return max(controls, key=lambda e: e.mean if higher_is_better else -e.mean)


def beats_controls(entry: Entry, entries: list[Entry], higher_is_better: bool,
                   better: Better = better_paired) -> bool | None:
    """Better than the best control (by mean) at this L0 beyond noise; None when no control
    reached it."""
    control = best_control(entries, higher_is_better)
    if control is None or not entry.reached:
        return None
    return better(entry, control, higher_is_better)


NULL_CONTROL = "random-dict"  # a dictionary nothing was learned into: what training must beat


def beats_null(entry: Entry, entries: list[Entry], higher_is_better: bool,
               better: Better = better_paired) -> bool | None:
    """Better than the null control (NULL_CONTROL) beyond noise; None when it did not reach the L0."""
    null = next((e for e in entries if e.variant == NULL_CONTROL and e.reached), None)
    if null is None or not entry.reached:
        return None
    return better(entry, null, higher_is_better)


def twin_of(entry: Entry, entries: list[Entry]) -> Entry | None:
    """A variant's untrained twin among the entries, if it reached the L0."""
    return next((e for e in entries if e.variant == twin_name(entry.variant) and e.reached), None)


def beats_twin(entry: Entry, entries: list[Entry], higher_is_better: bool,
               better: Better = better_paired) -> bool | None:
    """Better than its own untrained twin beyond noise; None when the twin did not reach the L0
    (or there is none)."""
    twin = twin_of(entry, entries)
    if twin is None or not entry.reached:
        return None
    return better(entry, twin, higher_is_better)


def separated_pairs(entries: list[Entry], higher_is_better: bool, better: Better = better_paired) -> tuple[int, int]:
    """(pairs of variants that differ beyond noise, pairs of variants), controls and references aside."""
    variants = [e for e in entries if e.kind == "variant" and e.reached]
    pairs = [(a, b) for i, a in enumerate(variants) for b in variants[i + 1:]]
    return sum(better(a, b, higher_is_better) or better(b, a, higher_is_better) for a, b in pairs), len(pairs)


def noise_ranks(entries: list[Entry], higher_is_better: bool, better: Better = better_paired) -> dict[str, int]:
    """Rank = 1 + the number of models (variants and controls) better beyond noise."""
    ranked = [e for e in entries if e.kind != "reference" and e.reached]
    return {e.variant: 1 + sum(better(o, e, higher_is_better) for o in ranked) for e in ranked}


def headline_settings(results: pd.DataFrame, task: str, dataset: str, target: float | None = None) -> dict[str, str]:
    """{variant: the setting whose mean L0 over seeds is nearest (in log) the target}, for figures
    that show one model per variant. The target defaults to the dataset's headline L0 in the
    results' preset (the default comparison's when the preset is not known)."""
    if target is None:
        target = headline_l0_of(results, dataset)
    rows = results[(results["task"] == task) & (results["dataset"] == dataset) & (results["status"] == "ok")]
    rows = rows[pd.to_numeric(rows["l0"], errors="coerce") > 0]
    chosen = {}
    for variant, variant_rows in rows.groupby("variant"):
        l0 = variant_rows.groupby("setting")["l0"].apply(lambda s: s.astype(float).mean())
        chosen[variant] = min(l0.index, key=lambda s: abs(math.log(l0[s]) - math.log(target)))
    return chosen


def headline_l0_of(results: pd.DataFrame, dataset: str) -> float:
    from benchmark.config import DEFAULT_COMPARISON, load_preset
    from benchmark.errors import UserError

    presets = set(results["preset"]) if "preset" in results else set()
    try:
        preset = load_preset(sorted(presets)[0]) if len(presets) == 1 else None
    except UserError:
        preset = None
    if preset is None or dataset not in preset.datasets:
        return float(DEFAULT_COMPARISON["headline_l0"])
    return preset.headline_l0(dataset)
