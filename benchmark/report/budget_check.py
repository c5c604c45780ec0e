"""Does the headline verdict hold at twice the training? (the leaderboard's budget check)

A published run also re-trains each task's headline comparison (its headline dataset, every
variant and control, every sweep setting the reading at the headline L0 can need, at least one
seed) at 2x the training length and writes those rows to `results-2x.csv` beside `results.csv`,
same schema, same preset. The functions here compare the two, headline by headline, with the
matched-L0 readings and the noise rules of `benchmark.report.matched` and
`benchmark.report.paired`; they never touch the leaderboard's other tables (the 2x rows live in
another frame, so they cannot enter them).

Rules:

- **Seeds.** Both budgets are read on the seeds the two files share for the headline (the seeds
  with ok rows of the headline metric in both). Every seed draws its own data (crops, splits), so
  comparing a 2x run of seed 0 with the 1x mean over seeds 0-2 would mix the training length with
  the data draw; the 1x side is therefore re-read on the shared seeds, and equals the published
  summary when the 2x run has every seed. A check reads at most the preset's budget-check seeds:
  a task that compares seeds (stability) needs two at 2x, so its headline dataset has two there,
  and the other tasks on that dataset still read the first. Stability itself reads the first of
  its two: two seeds are one pair, and both rows hold that pair's value. Its 2x value then
  matches seed 0's dictionary with seed 1's alone, where its 1x value averages seed 0's matches
  with every other seed: the same quantity, estimated from fewer pairs.
- **Noise.** With two or more shared seeds, each side is judged by the paired test of
  `benchmark.report.paired` (per-seed differences on the shared seeds). With one shared seed (the
  default's check) no paired test exists, and both sides use the one-seed rule: a difference is
  beyond noise when it exceeds the 5% t quantile times the spread of that pair's per-seed
  differences in the full 1x comparison (`paired.one_seed_rule`); the check says so
  (`spread_from_1x`).
- **Twins.** An untrained twin does not train: the 2x run leaves it out and the 2x side reads
  its 1x value.
- **Verdict.** At each budget: the entries tied first (rank 1 of `noise_ranks`' rule, controls
  included, references not ranked), the variants that beat every control beyond noise
  (`beats_controls`' rule) and whether a control has the best mean (the summary's rule). A
  headline is *stable at 2x budget* when its tied-first set and its beats-controls set are the
  same at 1x and 2x, else *not stable*, with what changed. Kendall's τ (`scipy.stats.kendalltau`,
  τ-b) between the 1x and 2x means of the variants and controls reached at both budgets is
  reported beside the verdict; it does not decide it. A headline with no 2x rows, or none on a
  seed the 1x rows have, has no check.
- **Margins.** Beside a verdict that changed, the comparisons that decided it, at both budgets:
  for an entry that joined or left the beats-controls set, its lead over the best control; for one
  that joined or left the tied-first set, the widest lead over it of an entry beating it, at the
  budget where it is not first. Each lead is shown with its bar (the one-seed rule's threshold,
  or the paired test's p), so a verdict flipped by a lead at the bar's edge reads apart from a
  real reordering.
"""
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
from scipy.stats import kendalltau

from benchmark.report.matched import (Better, Entry, beats_controls, best_control, better_paired, matched_entries,
                                      noise_ranks, paired)
from benchmark.report.paired import LEVEL, one_seed_bar, one_seed_rule

STABLE = "stable at 2x budget"
NOT_STABLE = "not stable at 2x budget"
NO_CHECK = "no 2x budget check in this run"


@dataclass(frozen=True)
class Verdict:
    """One budget's reading of a headline comparison."""

    tied_first: tuple[str, ...]  # entries at rank 1 (controls included), sorted
    beats_controls: tuple[str, ...]  # variants better than the best control beyond noise, sorted
    control_best: bool  # the best mean belongs to a control
    rule: str  # how "beyond noise" was decided
    means: dict[str, float]  # variant or control -> mean on the compared seeds (reached entries only)
    kinds: dict[str, str]  # variant or control -> "variant" / "control"


@dataclass(frozen=True)
class BudgetCheck:
    """The 1x-against-2x check of one task's headline comparison."""

    task: str
    dataset: str
    metric: str
    l0: float
    higher_is_better: bool
    seeds_1x: tuple = ()  # every seed of the 1x comparison
    seeds: tuple = ()  # the seeds compared (shared by both files); empty: no check
    at_1x: Verdict | None = None
    at_2x: Verdict | None = None
    spread_from_1x: bool = False  # one shared seed: the one-seed rule with the 1x spread
    tau: float | None = None  # Kendall τ-b of the 1x and 2x means; None below two entries, nan if undefined
    tau_entries: int = 0
    changes: tuple[str, ...] = field(default=())  # what changed, when not stable
    margins: tuple[str, ...] = field(default=())  # the comparisons that decided each change, at both budgets
    reason: str = ""  # why there is no check

    @property
    def checked(self) -> bool:
        return self.at_1x is not None and self.at_2x is not None

    @property
    def stable(self) -> bool | None:
        if not self.checked:
            return None
        return (self.at_1x.tied_first == self.at_2x.tied_first
                and self.at_1x.beats_controls == self.at_2x.beats_controls)

    @property
    def verdict(self) -> str:
        """"stable at 2x budget", "not stable at 2x budget: <what changed>" or "no 2x budget check
        in this run"."""
        if not self.checked:
            return NO_CHECK
        return STABLE if self.stable else f"{NOT_STABLE}: {self.changes_text}"

    @property
    def largest_move(self) -> tuple[str, float] | None:
        """(variant, its 2x mean minus its 1x mean) for the variant whose mean moved most on the
        compared seeds; None unchecked or with no variant at both. A verdict can hold while the
        values still move (every variant gaining alike): this says how far they did."""
        if not self.checked:
            return None
        both = [v for v, kind in self.at_1x.kinds.items() if kind == "variant" and v in self.at_2x.means]
        if not both:
            return None
        name = max(both, key=lambda v: (abs(self.at_2x.means[v] - self.at_1x.means[v]), v))
        return name, self.at_2x.means[name] - self.at_1x.means[name]

    @property
    def changes_text(self) -> str:
        """What changed, then the margins that decided it in square brackets."""
        return "; ".join(self.changes) + (f" [{'; '.join(self.margins)}]" if self.margins else "")


def _seeds(frame: pd.DataFrame, task: str, dataset: str, metric: str) -> set[str]:
    rows = frame[(frame["task"] == task) & (frame["dataset"] == dataset) & (frame["metric"] == metric)
                 & (frame["status"] == "ok")]
    return set(rows["seed"].astype(str))


def _on_seeds(frame: pd.DataFrame, seeds: set[str]) -> pd.DataFrame:
    return frame[frame["seed"].astype(str).isin(seeds)]


def _seed_order(seed: str):
    try:
        return (0, int(seed), seed)
    except ValueError:
        return (1, 0, seed)


PAIRED_RULE = "paired t-test over the shared seeds"
ONE_SEED_RULE = "one seed: each pair's spread from the full 1x comparison"


Margin = Callable[[Entry, Entry, bool], tuple[str, str]]  # (A's lead over B, the bar it is judged by)


def _sign(higher: bool) -> float:
    """Orients a difference so that a positive one favours the first entry."""
    return 1.0 if higher else -1.0


def _lead(a: Entry, b: Entry, higher: bool) -> float:
    """A's mean minus B's, oriented so that a positive lead favours A."""
    return _sign(higher) * (a.mean - b.mean)


def _reference_diffs(by_name: dict[str, Entry], a: Entry, b: Entry, higher: bool) -> list[float] | None:
    """The pair's oriented per-seed differences in the reference comparison; None when either is
    not in it."""
    ref_a, ref_b = by_name.get(a.variant), by_name.get(b.variant)
    if ref_a is None or ref_b is None:
        return None
    seeds = sorted(set(ref_a.by_seed) & set(ref_b.by_seed))
    return [_sign(higher) * (ref_a.by_seed[s] - ref_b.by_seed[s]) for s in seeds]


def one_seed_better(reference: list[Entry]) -> Better:
    """`paired.one_seed_rule` for entries read on one seed, each pair's spread taken from its
    per-seed differences in `reference` (the full 1x comparison)."""
    by_name = {e.variant: e for e in reference}

    def better(a: Entry, b: Entry, higher: bool) -> bool:
        diffs = _reference_diffs(by_name, a, b, higher)
        return diffs is not None and one_seed_rule(diffs, _lead(a, b, higher))

    return better


def one_seed_margin(reference: list[Entry]) -> Margin:
    """A's lead on the one seed and the bar `one_seed_better` sets for the pair."""
    by_name = {e.variant: e for e in reference}

    def margin(a: Entry, b: Entry, higher: bool) -> tuple[str, str]:
        diffs = _reference_diffs(by_name, a, b, higher)
        bar = one_seed_bar(diffs) if diffs is not None else math.nan
        return f"{_lead(a, b, higher):+.3g}", ("no bar (the pair has no spread at 1x)" if math.isnan(bar)
                                                else f"beyond noise above {bar:.3g}")

    return margin


def paired_margin(a: Entry, b: Entry, higher: bool) -> tuple[str, str]:
    """A's mean lead over the shared seeds with the paired test's p."""
    test = paired(a, b, higher)
    lead = f"{test.mean:+.3g} (p {test.p:.2g})" if test.tested else f"n/a ({test.reason})"
    return lead, f"beyond noise at p < {LEVEL:g}"


def tied_first(entries: list[Entry], higher: bool, better: Better = better_paired) -> tuple[str, ...]:
    """Rank-1 entries of `noise_ranks` (variants and controls) under the given rule."""
    return tuple(sorted(name for name, rank in noise_ranks(entries, higher, better).items() if rank == 1))


def beating_controls(entries: list[Entry], higher: bool, better: Better = better_paired) -> tuple[str, ...]:
    """Variants that `beats_controls` under the given rule; empty when no control reached the L0."""
    return tuple(sorted(e.variant for e in entries
                        if e.kind == "variant" and beats_controls(e, entries, higher, better)))


def control_is_best(entries: list[Entry], higher: bool) -> bool:
    """The best mean (variants and controls) belongs to controls only, as the summary says it."""
    ranked = [e for e in entries if e.kind != "reference" and e.reached]
    if not ranked:
        return False
    best = max(e.mean for e in ranked) if higher else min(e.mean for e in ranked)
    return all(e.kind == "control" for e in ranked if e.mean == best)


def read_verdict(entries: list[Entry], higher: bool, better: Better, rule: str) -> Verdict:
    ranked = [e for e in entries if e.kind != "reference" and e.reached]
    return Verdict(tied_first(entries, higher, better), beating_controls(entries, higher, better),
                   control_is_best(entries, higher), rule,
                   {e.variant: e.mean for e in ranked}, {e.variant: e.kind for e in ranked})


def rank_correlation(at_1x: Verdict, at_2x: Verdict) -> tuple[float | None, int]:
    """(Kendall τ-b of the means of the entries reached at both budgets, how many); τ is None
    with fewer than two entries and nan when a side's means are all equal."""
    common = sorted(set(at_1x.means) & set(at_2x.means))
    if len(common) < 2:
        return None, len(common)
    tau = kendalltau([at_1x.means[v] for v in common], [at_2x.means[v] for v in common])[0]
    return float(tau), len(common)


def names(variants: tuple[str, ...], kinds: dict[str, str]) -> str:
    if not variants:
        return "none"
    return ", ".join(f"{v} (control)" if kinds.get(v) == "control" else v for v in variants)


def _changes(at_1x: Verdict, at_2x: Verdict) -> tuple[str, ...]:
    kinds = {**at_2x.kinds, **at_1x.kinds}
    out = []
    if at_1x.tied_first != at_2x.tied_first:
        out.append(f"tied first {names(at_1x.tied_first, kinds)} → {names(at_2x.tied_first, kinds)}")
    if at_1x.beats_controls != at_2x.beats_controls:
        out.append(f"beats controls {names(at_1x.beats_controls, kinds)} → {names(at_2x.beats_controls, kinds)}")
    if at_1x.control_best != at_2x.control_best:
        out.append("a control is best at 1x, not at 2x" if at_1x.control_best else "a control is best at 2x, not at 1x")
    missing = tuple(sorted(set(at_1x.means) - set(at_2x.means)))
    if missing:
        out.append(f"not reached at 2x: {names(missing, kinds)}")
    return tuple(out)


def _deciding_pairs(entries_1x: list[Entry], entries_2x: list[Entry], at_1x: Verdict, at_2x: Verdict,
                    higher: bool, better: Better) -> list[tuple[str, str]]:
    """(A, B) pairs whose comparison moved an entry in or out of a verdict's set: an entry and
    the best control (at each budget) for the beats-controls set; for the tied-first set, the
    entry beating it by the widest lead, where it is not first."""
    pairs = []
    for name in sorted(set(at_1x.beats_controls) ^ set(at_2x.beats_controls)):
        for entries in (entries_1x, entries_2x):
            control = best_control(entries, higher)
            if control is not None:
                pairs.append((name, control.variant))
    for name in sorted(set(at_1x.tied_first) ^ set(at_2x.tied_first)):
        entries = entries_2x if name in at_1x.tied_first else entries_1x  # where it is not first
        ranked = [e for e in entries if e.kind != "reference" and e.reached]
        behind = next((e for e in ranked if e.variant == name), None)
        rivals = [e for e in ranked if behind is not None and better(e, behind, higher)]
        if rivals:
            pairs.append((max(rivals, key=lambda e: _lead(e, behind, higher)).variant, name))
    return list(dict.fromkeys(pairs))  # once each, in order


def margin_text(a: str, b: str, entries_1x: list[Entry], entries_2x: list[Entry], higher: bool,
                margin: Margin, kinds: dict[str, str]) -> str:
    """"jumprelu over pca-topk (control): +0.0153 at 1x, +0.0192 at 2x, beyond noise above 0.0181"."""
    readings, bars = [], []
    for budget, entries in (("1x", entries_1x), ("2x", entries_2x)):
        by_name = {e.variant: e for e in entries if e.reached}
        if a not in by_name or b not in by_name:
            readings.append(f"not reached at {budget}")
            continue
        lead, bar = margin(by_name[a], by_name[b], higher)
        readings.append(f"{lead} at {budget}")
        bars.append(bar)
    return (f"{names((a,), kinds)} over {names((b,), kinds)}: " + ", ".join(readings)
            + "".join(f", {bar}" for bar in dict.fromkeys(bars)))


def compared_seeds(shared: set[str], max_seeds: int | None, across_seeds: bool) -> set[str]:
    """The shared seeds a check reads: the first `max_seeds` (the preset's budget-check seeds; a
    dataset may have more at 2x for a task that compares seeds), and for such a task (stability)
    the first of two, since two seeds make one pair and both rows hold its value."""
    ordered = sorted(shared, key=_seed_order)
    if across_seeds and len(ordered) == 2:
        ordered = ordered[:1]
    return set(ordered if max_seeds is None else ordered[:max_seeds])


def check_headline(results_1x: pd.DataFrame, results_2x: pd.DataFrame | None, task: str, dataset: str,
                   metric: str, l0: float, higher: bool, max_seeds: int | None = None,
                   across_seeds: bool = False) -> BudgetCheck:
    """The budget check of one headline (task, dataset, metric at L0 `l0`). Both frames as the
    leaderboard reads them (one preset, newest suite, latest runs); `results_2x` None when the
    run has no 2x file. `max_seeds` and `across_seeds`: compared_seeds."""
    base = dict(task=task, dataset=dataset, metric=metric, l0=float(l0), higher_is_better=bool(higher))
    seeds_1x = _seeds(results_1x, task, dataset, metric)
    base["seeds_1x"] = tuple(sorted(seeds_1x, key=_seed_order))
    if results_2x is None:
        return BudgetCheck(**base, reason="no 2x results file")
    seeds_2x = _seeds(results_2x, task, dataset, metric)
    if not seeds_2x:
        return BudgetCheck(**base, reason="no 2x rows for this headline")
    shared = compared_seeds(seeds_1x & seeds_2x, max_seeds, across_seeds)
    if not shared:
        return BudgetCheck(**base, reason="the 2x rows share no seed with the 1x rows")
    full_1x = matched_entries(results_1x, task, dataset, metric, l0)
    entries_1x = matched_entries(_on_seeds(results_1x, shared), task, dataset, metric, l0)
    entries_2x = matched_entries(_on_seeds(results_2x, shared), task, dataset, metric, l0)
    # A twin does not train, so the 2x run leaves it out and its 2x reading is its 1x one.
    at_2x_already = {e.variant for e in entries_2x}
    entries_2x += [e for e in entries_1x if e.kind == "twin" and e.variant not in at_2x_already]
    from_1x = len(shared) < 2
    better, margin, rule = ((one_seed_better(full_1x), one_seed_margin(full_1x), ONE_SEED_RULE) if from_1x
                            else (better_paired, paired_margin, PAIRED_RULE))
    at_1x, at_2x = read_verdict(entries_1x, higher, better, rule), read_verdict(entries_2x, higher, better, rule)
    tau, n = rank_correlation(at_1x, at_2x)
    kinds = {**at_2x.kinds, **at_1x.kinds}
    margins = tuple(margin_text(a, b, entries_1x, entries_2x, higher, margin, kinds)
                    for a, b in _deciding_pairs(entries_1x, entries_2x, at_1x, at_2x, higher, better))
    return BudgetCheck(**base, seeds=tuple(sorted(shared, key=_seed_order)), at_1x=at_1x, at_2x=at_2x,
                       spread_from_1x=from_1x, tau=tau, tau_entries=n, changes=_changes(at_1x, at_2x),
                       margins=margins)


def check_headlines(results_1x: pd.DataFrame, results_2x: pd.DataFrame | None,
                    headlines: list[tuple[str, str, str, float, bool]]) -> list[BudgetCheck]:
    """`check_headline` for each (task, dataset, metric, L0, higher_is_better)."""
    return [check_headline(results_1x, results_2x, *h) for h in headlines]


def tau_text(check: BudgetCheck) -> str:
    if check.tau is None:
        return f"n/a ({check.tau_entries})"
    return ("n/a" if math.isnan(check.tau) else f"{check.tau:.2f}") + f" ({check.tau_entries})"


def move_text(check: BudgetCheck) -> str:
    """"+0.055 (dense)": the largest move of a variant's mean from 1x to 2x."""
    move = check.largest_move
    return "—" if move is None else f"{move[1]:+.3g} ({move[0]})"


def seeds_text(check: BudgetCheck) -> str:
    """"3", or "1 of 3 (seed 0; spread from 1x)" when fewer seeds were compared than 1x has."""
    text = f"{len(check.seeds)}"
    notes = []
    if len(check.seeds) < len(check.seeds_1x):
        text += f" of {len(check.seeds_1x)}"
        notes.append(("seed " if len(check.seeds) == 1 else "seeds ") + ", ".join(check.seeds))
    if check.spread_from_1x:
        notes.append("spread from 1x")
    return text + (f" ({'; '.join(notes)})" if notes else "")
