"""leaderboard.md (SPEC section 8), generated from results.csv and never edited by hand.

Every comparison is at matched L0 (benchmark/report/matched.py) with the controls beside the variants:
the summary at each dataset's headline L0 (ranks shared within noise, no mean of ranks across
tasks), then per task and dataset the metric-against-L0 frontier of the headline metric and a
table at every target L0. Unconverged models (†), targets a sweep does not reach (n/r), variants
that beat every control beyond noise (✓) and comparisons that separate no variants beyond noise
are marked wherever they appear.

When the run also wrote `results-2x.csv` beside `results.csv` (each task's headline comparison
re-trained at 2x the training length), the summary says per headline whether its verdict holds
at twice the training, and a "Budget check (2x training)" section tabulates both budgets
(benchmark/report/budget_check.py). Those rows are kept in their own frame (`budget_results`) and enter
no other table, figure or the convergence section.
"""
import os
from pathlib import Path

import pandas as pd

from benchmark.report import budget_check
from benchmark.config import DEFAULT_COMPARISON, load_preset
from benchmark.errors import UserError
from benchmark.report.eval_noise import variance_split
from benchmark.report.matched import (NULL_CONTROL, Entry, beats_controls, beats_null, beats_twin, best_control,
                               matched_entries, noise_ranks, paired, separated_pairs, twin_of)
from benchmark.report.paired import LEVEL
from benchmark.registry import TASKS
from benchmark.results import latest_runs, read_results
from benchmark.task import get_task
from benchmark.grid.twins import base_name, k_sparse_variants, twin_name

UNCONVERGED = "†"
BEATS = "✓"
BEATS_TWIN = "▲"
NOT_REACHED = "n/r"


def choose_preset(results: pd.DataFrame, preset: str | None) -> str:
    """The requested preset, else the one of the most recent row."""
    if preset is not None:
        if preset not in set(results["preset"]):
            raise UserError(f"no results for preset {preset!r}; found: {', '.join(sorted(set(results['preset'])))}")
        return preset
    return results.sort_values("timestamp_utc")["preset"].iloc[-1]


def newest_suite(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of the newest suite version only: metric definitions change between versions, and
    migrated version-1 rows must never be mixed into newer comparisons."""
    versions = sorted(set(results["suite_version"].astype(str)), key=lambda v: tuple(int(p) for p in v.split(".")))
    return results[results["suite_version"].astype(str) == versions[-1]] if versions else results


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_number(value: float) -> str:
    return f"{value:.4g}"


def entry_text(entry: Entry, bold: bool = False) -> str:
    if not entry.reached:
        return NOT_REACHED
    text = fmt_number(entry.mean) + (f" ± {entry.std:.2g}" if entry.seeds > 1 else "")
    text = f"**{text}**" if bold else text
    if entry.seeds < entry.of_seeds:
        text += f" ({entry.seeds}/{entry.of_seeds} seeds)"
    return text + ("" if entry.converged else f" {UNCONVERGED}")


def display_name(entry: Entry) -> str:
    return {"variant": entry.variant, "control": f"{entry.variant} (control)",
            "twin": f"{base_name(entry.variant)} (untrained)", "reference": f"{entry.variant} (reference)"}[entry.kind]


def best_of(entries: list[Entry], higher: bool) -> set[str]:
    reached = [e for e in entries if e.reached and e.kind != "reference"]
    if not reached:
        return set()
    best = max(e.mean for e in reached) if higher else min(e.mean for e in reached)
    return {e.variant for e in reached if e.mean == best}


def budget_path(results_path: Path) -> Path:
    """The 2x-training results beside a results file: results.csv -> results-2x.csv."""
    results_path = Path(results_path)
    return results_path.with_name(f"{results_path.stem}-2x{results_path.suffix}")


def separation_text(entries: list[Entry], higher: bool) -> str:
    """"paired test over 3 seeds separates 5 of 28 variant pairs", or says it separates none."""
    separated, pairs = separated_pairs(entries, higher)
    seeds = sorted({len(e.by_seed) for e in entries if e.kind == "variant" and e.reached})
    over = "/".join(map(str, seeds)) if seeds else "0"
    over += " seed" if over == "1" else " seeds"
    if separated:
        return f"paired test over {over} separates {separated} of {pairs} variant pairs"
    return f"paired test over {over}: **does not separate any two variants beyond noise**"


def control_difference_text(entry: Entry | None, entries: list[Entry], higher: bool) -> str:
    """A variant's paired difference to the best control with its interval ("—" for the rest)."""
    control = best_control(entries, higher)
    if entry is None or entry.kind != "variant" or control is None or not entry.reached:
        return "—"
    return paired(entry, control, higher).text() + f" vs {control.variant}"


def twin_difference_text(entry: Entry | None, entries: list[Entry], higher: bool) -> str:
    """A variant's paired difference to its own untrained twin ("—" for the rest)."""
    if entry is None or entry.kind != "variant" or not entry.reached:
        return "—"
    if not any(e.variant == twin_name(entry.variant) for e in entries):
        return "—"  # no twin at all: a checkpoint, or a run without twins
    twin = twin_of(entry, entries)
    return "n/r (twin)" if twin is None else paired(entry, twin, higher).text()


def twin_text(entries: list[Entry], higher: bool) -> str:
    """"; beats its untrained twin: relu, topk; **does not: mp**", and a flag when an untrained
    twin is tied first; "" without twins."""
    variants = [e for e in entries if e.kind == "variant" and e.reached and twin_of(e, entries) is not None]
    if not variants:
        return ""
    beat = [e.variant for e in variants if beats_twin(e, entries, higher)]
    tie = [e.variant for e in variants if e.variant not in beat]
    text = f"; beats its untrained twin: {', '.join(beat) or 'none'}"
    if tie:
        text += f"; **does not: {', '.join(tie)}**"
    ranks = noise_ranks(entries, higher)
    if any(e.kind == "twin" and ranks.get(e.variant) == 1 for e in entries):
        text += "; **an untrained twin is tied first**"
    return text


def null_text(entries: list[Entry], higher: bool) -> str:
    """"; every variant beats random-dict", or "; beats random-dict: relu; **does not: dense**",
    where the null control reached the L0; "" otherwise."""
    verdicts = {e.variant: beats_null(e, entries, higher) for e in entries if e.kind == "variant"}
    verdicts = {v: beat for v, beat in verdicts.items() if beat is not None}
    if not verdicts:
        return ""
    losers = [v for v, beat in verdicts.items() if not beat]
    if not losers:
        return f"; every variant beats {NULL_CONTROL}"
    winners = [v for v, beat in verdicts.items() if beat]
    return f"; beats {NULL_CONTROL}: {', '.join(winners) or 'none'}; **does not: {', '.join(losers)}**"


class Leaderboard:
    def __init__(self, results: pd.DataFrame, preset: str, output: Path, plot_dir: Path,
                 budget_results: pd.DataFrame | None = None, preset_config=None):
        self.all_results = results[results["preset"] == preset]
        self.results = latest_runs(newest_suite(self.all_results))
        # The 2x-training rows (None: the run wrote no 2x file): same preset, the suite version
        # shown, each cell's latest run. Only the budget check reads them.
        self.budget_results = None
        if budget_results is not None:
            shown = set(self.results["suite_version"].astype(str))
            kept = budget_results[(budget_results["preset"] == preset)
                                  & budget_results["suite_version"].astype(str).isin(shown)]
            self.budget_results = latest_runs(kept)
        # Each (task, dataset, metric)'s rows, split once: filtering the whole table for every
        # table cell of the leaderboard took most of its time.
        self._metric_rows = dict(list(self.results.groupby(["task", "dataset", "metric"], sort=False)))
        self._budget_checks = None
        self._headlines = None
        self.preset_name = preset
        self.output = output
        self.plot_dir = plot_dir
        try:
            self.preset = preset_config or load_preset(preset)
        except UserError:
            self.preset = None  # results of a preset file that is not in the package

    # ----- what the results hold -----
    def task_datasets(self, task: str) -> list[str]:
        present = list(dict.fromkeys(self.results.loc[self.results["task"] == task, "dataset"]))
        if self.preset is not None and task in self.preset.tasks:
            order = self.preset.task_datasets(task)
            return [d for d in order if d in present] + [d for d in present if d not in order]
        return sorted(present)

    def tasks(self) -> list:
        return [get_task(t) for t in TASKS.names() if t in set(self.results["task"])]

    def targets(self, dataset: str) -> list[float]:
        if self.preset is not None and dataset in self.preset.datasets:
            return self.preset.l0_targets(dataset)
        return [float(t) for t in DEFAULT_COMPARISON["l0_targets"]]

    def headline_l0(self, dataset: str) -> float:
        if self.preset is not None and dataset in self.preset.datasets:
            return self.preset.headline_l0(dataset)
        return float(DEFAULT_COMPARISON["headline_l0"])

    def entries(self, task: str, dataset: str, metric: str, target: float) -> list[Entry]:
        """matched_entries on the results of this metric alone (the same entries, found faster)."""
        rows = self._metric_rows.get((task, dataset, metric), self.results.iloc[:0])
        return matched_entries(rows, task, dataset, metric, target)

    def not_ok(self, task: str, dataset: str) -> pd.DataFrame:
        r = self.results
        return r[(r["task"] == task) & (r["dataset"] == dataset) & (r["status"] != "ok")]

    def headlines(self) -> list:
        """(task, headline dataset, headline L0, higher_is_better, entries) of every task with
        entries: the summary's columns."""
        if self._headlines is not None:
            return self._headlines
        out = []
        for task in self.tasks():
            datasets = self.task_datasets(task.name)
            if not datasets:
                continue
            dataset = task.headline_dataset(datasets)
            target = self.headline_l0(dataset)
            higher = task.metrics[task.headline]
            entries = self.entries(task.name, dataset, task.headline, target)
            if entries:
                out.append((task, dataset, target, higher, entries))
        self._headlines = out
        return out

    def budget_checks(self) -> dict[str, budget_check.BudgetCheck]:
        """{task name: its headline's 1x-against-2x check}."""
        if self._budget_checks is None:
            self._budget_checks = {
                task.name: budget_check.check_headline(self.results, self.budget_results, task.name, dataset,
                                                       task.headline, target, higher, self.budget_seeds(dataset),
                                                       task.across_seeds)
                for task, dataset, target, higher, _ in self.headlines()}
        return self._budget_checks

    def budget_seeds(self, dataset: str) -> int | None:
        """How many of `dataset`'s seeds the preset re-trains at 2x (None: no preset, or no check
        in it)."""
        if self.preset is None or self.preset.budget_check is None:
            return None
        return self.preset.budget_check_seeds(dataset)

    def budget_note(self, task: str) -> str:
        check = self.budget_checks().get(task)
        if check is None or not check.checked:
            return budget_check.NO_CHECK
        details = []
        if len(check.seeds) < len(check.seeds_1x):
            details.append(("seed " if len(check.seeds) == 1 else "seeds ") + ", ".join(check.seeds))
        if check.spread_from_1x:
            details.append("one seed at 2x: each pair's spread taken from 1x")
        suffix = f" ({'; '.join(details)})" if details else ""
        if check.stable:
            return budget_check.STABLE + suffix
        return f"**{budget_check.NOT_STABLE}:** {check.changes_text}{suffix}"

    # ----- sections -----
    def summary(self) -> str:
        columns, notes = [], []
        for task, dataset, target, higher, entries in self.headlines():
            columns.append((task, dataset, target, higher, entries))
            control = [e for e in entries if e.kind == "control" and e.reached]
            winner = best_of(entries, higher)
            won_by_control = bool(winner) and all(v in {c.variant for c in control} for v in winner)
            caveat = " (indicative: its per-seed values share models)" if task.across_seeds else ""
            notes.append(f"- `{task.name}` ({dataset}, L0 {target:g}): {separation_text(entries, higher)}{caveat}"
                         + ("; **a control is best**" if won_by_control else "")
                         + twin_text(entries, higher) + null_text(entries, higher)
                         + "; " + self.budget_note(task.name))
        variant_of = {display_name(e): e.variant for *_, entries in columns for e in entries}
        names = list(variant_of)
        header = ["model"] + [f"{t.name}: {t.headline} {'↑' if h else '↓'} ({d}, L0 {l0:g})" for t, d, l0, h, _ in columns]
        rows = []
        for name in names:
            cells = []
            for task, dataset, target, higher, entries in columns:
                entry = next((e for e in entries if display_name(e) == name), None)
                if entry is None:
                    cells.append(self.status_text(task.name, dataset, variant_of[name]))
                    continue
                ranks = noise_ranks(entries, higher)
                text = entry_text(entry, entry.variant in best_of(entries, higher))
                if entry.variant in ranks:
                    text += f" #{ranks[entry.variant]}"
                if entry.kind == "variant" and beats_controls(entry, entries, higher):
                    text += f" {BEATS}"
                if entry.kind == "variant" and beats_twin(entry, entries, higher):
                    text += f" {BEATS_TWIN}"
                cells.append(text)
            rows.append([name, *cells])
        legend = (f"Each column: the task's headline metric on its headline dataset, read at that dataset's headline "
                  f"L0 by interpolating every variant's sparsity sweep in log L0 (per seed, then mean ± std over "
                  f"seeds). #n: rank, counting only the models better beyond noise: a two-sided paired t-test "
                  f"of the per-seed differences (every model of a seed sees the same data draw) at "
                  f"{LEVEL:.0%}, per comparison (ties within noise share a rank; models read on different "
                  f"seeds are not compared); there is no overall rank, since the columns are not comparable. "
                  f"{BEATS}: better than the best control beyond noise. {BEATS_TWIN}: better than its own untrained twin "
                  f"(same constructor and seed, initialised from the data, zero steps; a penalty-based variant's "
                  f"twin keeps each sample's largest codes, to reach the targets' L0) beyond noise; each note below "
                  f"also says whether every variant beats {NULL_CONTROL}, the null. {NOT_REACHED}: the sweep does not "
                  f"reach this L0. {UNCONVERGED}: read from a model whose training did not converge. Best in bold.")
        return "## Summary at the headline L0\n\n" + legend + "\n\n" + markdown_table(header, rows) + "\n\n" + "\n".join(notes)

    def budget_section(self) -> str:
        title = "## Budget check (2x training)\n\n"
        if self.budget_results is None:
            return title + (f"No `results-2x.csv` beside the results: {budget_check.NO_CHECK} (each task's headline "
                            "comparison re-trained at 2x the training length).")
        legend = ("Each task's headline comparison re-trained at 2x the training length (`results-2x.csv`), "
                  "against the same comparison at 1x; these rows enter no other table or figure. A variant whose L0 is "
                  f"its k ({', '.join(k_sparse_variants())}) is re-trained only at the ks that bracket the headline L0 "
                  "(the largest below it, one equal, the smallest above): its reading there needs no other. "
                  "Both budgets are "
                  "read on the seeds the two runs share (the 1x column equals the summary when 2x has every seed), "
                  "each with the paired test over those seeds; on one shared seed, a difference is beyond noise "
                  "when it exceeds the 5% t quantile times that pair's per-seed spread in the full 1x comparison. "
                  "A task that compares seeds (stability) is re-trained on two seeds, one pair, and read on the first "
                  "seed's row: at 2x its match with the second seed, at 1x the mean of its matches with every other. "
                  f"Tied first: rank 1 (nothing better beyond noise), controls included. Beats controls: {BEATS} at "
                  "that budget. "
                  "Kendall τ (τ-b) of the 1x and 2x means, over the variants and controls reached at both (how "
                  "many in brackets). Largest move: the variant whose mean moved most from 1x to 2x, and by how much "
                  "(a verdict can hold while every value still rises). "
                  "Stable: the tied-first and beats-controls sets are the same at both budgets. "
                  "Beside a verdict that changed, in square brackets: the comparisons that decided it, the lead "
                  "at each budget and the bar it had to pass (a lead at the bar's edge is noise at its edge, "
                  "not a reordering).")
        header = ["task", "dataset", "L0", "1x tied first", "2x tied first", "1x beats controls",
                  "2x beats controls", "Kendall τ (entries)", "largest move", "seeds at 2x", "verdict"]
        rows = []
        for task, dataset, target, _, _ in self.headlines():
            check = self.budget_checks()[task.name]
            if not check.checked:  # a dash in every column between the headline and the verdict
                rows.append([f"`{task.name}`", dataset, f"{target:g}", *["—"] * (len(header) - 4),
                             budget_check.NO_CHECK])
                continue
            kinds = {**check.at_2x.kinds, **check.at_1x.kinds}
            verdict = budget_check.STABLE if check.stable else f"**{budget_check.NOT_STABLE}:** {check.changes_text}"
            rows.append([f"`{task.name}`", dataset, f"{target:g}",
                         budget_check.names(check.at_1x.tied_first, kinds),
                         budget_check.names(check.at_2x.tied_first, kinds),
                         budget_check.names(check.at_1x.beats_controls, kinds),
                         budget_check.names(check.at_2x.beats_controls, kinds),
                         budget_check.tau_text(check), budget_check.move_text(check),
                         budget_check.seeds_text(check), verdict])
        return title + legend + "\n\n" + markdown_table(header, rows)

    def eval_noise_section(self) -> str:
        legend = ("Where each headline's spread comes from: its values at the headline L0 per training seed and "
                  "evaluation seed, split as a one-way random-effects ANOVA per variant and control (training: the "
                  "variance of the models' means over training seeds beyond what the evaluation noise explains; "
                  "evaluation: the mean variance over evaluation seeds), averaged over the entries "
                  "(benchmark/report/eval_noise.py). Only tasks whose evaluation draws randomness take evaluation seeds "
                  "(the preset's `evaluation: {seeds: n}`, on their headline dataset); the others are deterministic "
                  "given a training seed's test split.")
        rows = []
        for task, dataset, target, _, _ in self.headlines():
            if not task.eval_seeded:
                rows.append([f"`{task.name}`", dataset, f"{target:g}", "—", "—", "—", "0 (deterministic evaluation)"])
                continue
            split = variance_split(self.results, task.name, dataset, task.headline, target)
            if split is None:
                rows.append([f"`{task.name}`", dataset, f"{target:g}", "—", "—", "—",
                             "n/a (one evaluation seed, or one training seed, in this run)"])
                continue
            rows.append([f"`{task.name}`", dataset, f"{target:g}",
                         f"{split.training_seeds} × {split.evaluation_seeds} ({split.entries} entries)",
                         f"{split.training:.3g}", f"{split.evaluation:.3g}", f"{split.evaluation_share:.0%}"])
        header = ["task", "dataset", "L0", "training × evaluation seeds", "training variance",
                  "evaluation variance", "evaluation share"]
        return "## Evaluation noise\n\n" + legend + "\n\n" + markdown_table(header, rows)

    def status_text(self, task: str, dataset: str, variant: str) -> str:
        rows = self.not_ok(task, dataset)
        rows = rows[rows["variant"] == variant]
        return rows["status"].iloc[0] if not rows.empty else ""

    def target_table(self, task, dataset: str, target: float) -> str:
        metrics = [m for m in task.metrics if (task.name, dataset, m) in self._metric_rows]
        per_metric = {m: self.entries(task.name, dataset, m, target) for m in metrics}
        names = []
        for entries in per_metric.values():
            names += [display_name(e) for e in entries if display_name(e) not in names]
        rows = []
        for name in names:
            cells = []
            for m in metrics:
                entries = per_metric[m]
                entry = next((e for e in entries if display_name(e) == name), None)
                if entry is None:
                    cells.append("")
                    continue
                text = entry_text(entry, entry.variant in best_of(entries, task.metrics[m]))
                if m == task.headline and entry.kind == "variant" and beats_controls(entry, entries, task.metrics[m]):
                    text += f" {BEATS}"
                cells.append(text)
            rows.append([name, *cells])
        headline = per_metric.get(task.headline, [])
        twins = any(e.kind == "twin" for e in headline)
        verdict = ""
        if headline:
            higher = task.metrics[task.headline]
            verdict = f"\n\n`{task.headline}` at L0 {target:g}: {separation_text(headline, higher)}."
            by_name = {display_name(e): e for e in headline}
            for row, name in zip(rows, names):
                entry = by_name.get(name)
                row.append(control_difference_text(entry, headline, higher))
                if twins:
                    row.append(twin_difference_text(entry, headline, higher))
        header = ["model", *(f"{m} {'↑' if task.metrics[m] else '↓'}" for m in metrics)]
        if headline:
            header.append(f"{task.headline}: paired Δ to the best control, + favours the variant [95% CI]")
            if twins:
                header.append(f"{task.headline}: paired Δ to its untrained twin [95% CI]")
        return f"#### L0 = {target:g}\n\n" + markdown_table(header, rows) + verdict

    def task_section(self, task) -> str:
        parts = [f"## {task.name}\n\n{task.description} Headline: `{task.headline}`."]
        from benchmark.report.plots import frontier_plot

        for dataset in self.task_datasets(task.name):
            parts.append(f"### {task.name} on {dataset}")
            if not self.scored(task.name, dataset):  # every row skipped (or failed): say why, once
                reasons = sorted(set(self.not_ok(task.name, dataset)["message"].astype(str)))
                parts.append(f"Not scored on {dataset}: {'; '.join(reasons)}")
                continue
            plot = frontier_plot(self.results, task.name, dataset, task.headline, task.metrics[task.headline],
                                 self.targets(dataset), Path(self.plot_dir) / f"frontier_{task.name}_{dataset}.png")
            if plot is not None:
                rel = os.path.relpath(plot, self.output.parent)
                parts.append(f"![{task.headline} against L0 on {dataset}]({rel})")
            parts += [self.target_table(task, dataset, t) for t in self.targets(dataset)]
            parts.append(self.notes(task.name, dataset))
        for title, path in task.plots(self.results, self.plot_dir):
            rel = os.path.relpath(path, self.output.parent)
            parts.append(f"**{title}**\n\n![{title}]({rel})")
        return "\n\n".join(p for p in parts if p)

    def scored(self, task: str, dataset: str) -> bool:
        rows = self.results[(self.results["task"] == task) & (self.results["dataset"] == dataset)]
        return bool((rows["status"] == "ok").any())

    def notes(self, task: str, dataset: str) -> str:
        rows = self.not_ok(task, dataset)
        lines = sorted({f"- {r.variant} [{r.setting}] ({r.status}): {r.message}" for r in rows.itertuples()})
        return "\n".join(lines)

    def convergence(self) -> str:
        models = self.results[(self.results["status"] == "ok") & (self.results["steps"].astype(str) != "")
                              & (self.results["steps"].astype(str) != "0")]
        models = models.drop_duplicates(["dataset", "variant", "setting", "seed"])
        if models.empty:
            return ""
        converged = models["converged"].astype(str) == "True"
        unconverged = models[~converged]
        text = (f"## Convergence\n\n{int(converged.sum())} of {len(models)} trained models converged: the "
                "mean training loss of the last 10% of constant-rate steps within 1% of the previous 10%'s, "
                "after a fall from the first 10%'s beyond noise, before the step cap. Per dataset (steps "
                "include any final decay):\n\n" + self.convergence_by_dataset(models, converged))
        if unconverged.empty:
            return text
        listed = unconverged.groupby(["dataset", "variant"])["setting"].apply(lambda s: ", ".join(sorted(set(s))))
        rows = [[d, v, s] for (d, v), s in listed.items()]
        return text + f"\n\nUnconverged ({UNCONVERGED} in the tables):\n\n" + markdown_table(["dataset", "variant", "settings"], rows)

    @staticmethod
    def convergence_by_dataset(models: pd.DataFrame, converged: pd.Series) -> str:
        steps = pd.to_numeric(models["steps"], errors="coerce")
        caps = pd.to_numeric(models["step_cap"], errors="coerce")
        rows = []
        for dataset in sorted(set(models["dataset"])):
            mask = models["dataset"] == dataset
            cap = caps[mask].dropna()
            rows.append([dataset, f"{int(converged[mask].sum())} / {int(mask.sum())}",
                         f"{converged[mask].mean():.0%}", f"{steps[mask].median():.0f}",
                         f"{cap.min():.0f}" if cap.nunique() == 1 else (f"{cap.min():.0f}-{cap.max():.0f}" if len(cap) else "")])
        return markdown_table(["dataset", "converged", "share", "median steps", "step cap"], rows)

    def footer(self) -> str:
        r = self.results
        join = lambda col: ", ".join(sorted(set(map(str, r[col]))))  # noqa: E731
        dropped = len(self.all_results) - len(self.results)
        older = (f" {dropped} rows of older suite versions or of earlier runs of the same cells are not shown."
                 if dropped else "")
        return (f"---\nPreset `{self.preset_name}` · suite {join('suite_version')} · device {join('device')} · "
                f"commit {join('git_commit')} · torch {join('torch_version')} · results from "
                f"{r['timestamp_utc'].min()} to {r['timestamp_utc'].max()} UTC.{older} Generated by "
                "`python -m benchmark leaderboard` from results.csv; do not edit by hand.")

    def preset_line(self) -> str:
        """The preset's description; for rows of a preset file not given, what was assumed."""
        if self.preset is not None:
            return f": {self.preset.description}"
        targets = ", ".join(f"{t:g}" for t in DEFAULT_COMPARISON["l0_targets"])
        return (f" (not a packaged preset, and its file was not given: read at the default L0 targets {targets} "
                f"and headline L0 {DEFAULT_COMPARISON['headline_l0']:g}, every dataset; "
                "`python -m benchmark leaderboard --preset FILE.yaml`, or the preset with the run's `--set`, "
                "reads them from it)")

    def render(self) -> str:
        head = f"# SAE benchmark leaderboard\n\nPreset `{self.preset_name}`{self.preset_line()}\n"
        sections = [head, self.summary(), self.budget_section(), self.eval_noise_section(), *(self.task_section(t) for t in self.tasks()),
                    self.convergence(), self.footer()]
        return "\n\n".join(s for s in sections if s) + "\n"


def write_leaderboard(results_path: Path, output: Path, plot_dir: Path, preset: str | None = None,
                      preset_config=None) -> Path:
    """`preset`: the name of the preset whose rows to show (default: that of the most recent row);
    `preset_config`: that preset itself, which a preset file's or an activations file's rows need
    (their name, the file's stem, loads no packaged preset: without it their headline L0s, task
    datasets and budget check would fall back to the defaults)."""
    results = read_results(results_path)
    if results.empty:
        raise UserError(f"no results in {results_path}: run `python -m benchmark run` first")
    two_x = budget_path(results_path)
    budget_results = read_results(two_x) if two_x.exists() else None
    name = choose_preset(results, preset_config.name if preset_config is not None else preset)
    board = Leaderboard(results, name, Path(output), Path(plot_dir), budget_results, preset_config)
    text = board.render()
    tmp = Path(output).with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(output)
    return Path(output)
