"""leaderboard.md (SPEC section 8), generated from results.csv and never edited by hand.

Every comparison is at matched L0 (benchmark/matched.py) with the controls beside the variants:
the summary at each dataset's headline L0 (ranks shared within noise, no mean of ranks across
tasks), then per task and dataset the metric-against-L0 frontier of the headline metric and a
table at every target L0. Unconverged models (†), targets a sweep does not reach (n/r), variants
that beat every control beyond noise (✓) and comparisons that separate no variants beyond noise
are marked wherever they appear.
"""
import os
from pathlib import Path

import pandas as pd

from benchmark.config import DEFAULT_COMPARISON, load_preset
from benchmark.errors import UserError
from benchmark.matched import (Entry, beats_controls, discriminates, matched_entries, noise_ranks,
                               pooled_std)
from benchmark.registry import TASKS
from benchmark.results import latest_runs, read_results
from benchmark.task import get_task

UNCONVERGED = "†"
BEATS = "✓"
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
            "reference": f"{entry.variant} (reference)"}[entry.kind]


def best_of(entries: list[Entry], higher: bool) -> set[str]:
    reached = [e for e in entries if e.reached and e.kind != "reference"]
    if not reached:
        return set()
    best = max(e.mean for e in reached) if higher else min(e.mean for e in reached)
    return {e.variant for e in reached if e.mean == best}


class Leaderboard:
    def __init__(self, results: pd.DataFrame, preset: str, output: Path, plot_dir: Path):
        self.all_results = results[results["preset"] == preset]
        self.results = latest_runs(newest_suite(self.all_results))
        self.preset_name = preset
        self.output = output
        self.plot_dir = plot_dir
        try:
            self.preset = load_preset(preset)
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

    def not_ok(self, task: str, dataset: str) -> pd.DataFrame:
        r = self.results
        return r[(r["task"] == task) & (r["dataset"] == dataset) & (r["status"] != "ok")]

    # ----- sections -----
    def summary(self) -> str:
        columns, notes = [], []
        for task in self.tasks():
            datasets = self.task_datasets(task.name)
            if not datasets:
                continue
            dataset = task.headline_dataset(datasets)
            target = self.headline_l0(dataset)
            higher = task.metrics[task.headline]
            entries = matched_entries(self.results, task.name, dataset, task.headline, target)
            if not entries:
                continue
            columns.append((task, dataset, target, higher, entries))
            sigma = pooled_std(entries)
            verdict = "separates variants beyond noise" if discriminates(entries, higher) else \
                "**does not separate any two variants beyond noise**"
            control = [e for e in entries if e.kind == "control" and e.reached]
            winner = best_of(entries, higher)
            won_by_control = bool(winner) and all(v in {c.variant for c in control} for v in winner)
            notes.append(f"- `{task.name}` ({dataset}, L0 {target:g}): 2σ = {2 * sigma:.3g}; {verdict}"
                         + ("; **a control is best**" if won_by_control else ""))
        names = []
        for *_, entries in columns:
            names += [display_name(e) for e in entries if display_name(e) not in names]
        header = ["model"] + [f"{t.name}: {t.headline} {'↑' if h else '↓'} ({d}, L0 {l0:g})" for t, d, l0, h, _ in columns]
        rows = []
        for name in names:
            cells = []
            for task, dataset, target, higher, entries in columns:
                entry = next((e for e in entries if display_name(e) == name), None)
                if entry is None:
                    cells.append(self.status_text(task.name, dataset, name.split(" (")[0]))
                    continue
                ranks = noise_ranks(entries, higher)
                text = entry_text(entry, entry.variant in best_of(entries, higher))
                if entry.variant in ranks:
                    text += f" #{ranks[entry.variant]}"
                if entry.kind == "variant" and beats_controls(entry, entries, higher):
                    text += f" {BEATS}"
                cells.append(text)
            rows.append([name, *cells])
        legend = (f"Each column: the task's headline metric on its headline dataset, read at that dataset's headline "
                  f"L0 by interpolating every variant's sparsity sweep in log L0 (per seed, then mean ± std over "
                  f"seeds). #n: rank, counting only models better by more than 2 × the pooled seed std σ (ties "
                  f"within noise share a rank); there is no overall rank, since the columns are not comparable. "
                  f"{BEATS}: better than the best control beyond noise. {NOT_REACHED}: the sweep does not reach this "
                  f"L0. {UNCONVERGED}: read from a model whose training did not converge. Best in bold.")
        return "## Summary at the headline L0\n\n" + legend + "\n\n" + markdown_table(header, rows) + "\n\n" + "\n".join(notes)

    def status_text(self, task: str, dataset: str, variant: str) -> str:
        rows = self.not_ok(task, dataset)
        rows = rows[rows["variant"] == variant]
        return rows["status"].iloc[0] if not rows.empty else ""

    def target_table(self, task, dataset: str, target: float) -> str:
        metrics = [m for m in task.metrics if m in set(self.results.loc[(self.results["task"] == task.name)
                                                                        & (self.results["dataset"] == dataset), "metric"])]
        per_metric = {m: matched_entries(self.results, task.name, dataset, m, target) for m in metrics}
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
        verdict = ""
        if headline:
            higher = task.metrics[task.headline]
            verdict = (f"\n\n`{task.headline}` at L0 {target:g}: 2σ = {2 * pooled_std(headline):.3g}; "
                       + ("separates variants beyond noise." if discriminates(headline, higher)
                          else "**does not separate any two variants beyond noise.**"))
        header = ["model", *(f"{m} {'↑' if task.metrics[m] else '↓'}" for m in metrics)]
        return f"#### L0 = {target:g}\n\n" + markdown_table(header, rows) + verdict

    def task_section(self, task) -> str:
        parts = [f"## {task.name}\n\n{task.description} Headline: `{task.headline}`."]
        from benchmark.plots import frontier_plot

        for dataset in self.task_datasets(task.name):
            parts.append(f"### {task.name} on {dataset}")
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
        unconverged = models[models["converged"].astype(str) != "True"]
        text = (f"## Convergence\n\n{len(models) - len(unconverged)} of {len(models)} trained models converged "
                "(mean training loss of the last 10% of steps within 1% of the previous 10%'s).")
        if unconverged.empty:
            return text
        listed = unconverged.groupby(["dataset", "variant"])["setting"].apply(lambda s: ", ".join(sorted(set(s))))
        rows = [[d, v, s] for (d, v), s in listed.items()]
        return text + f" Unconverged ({UNCONVERGED} in the tables):\n\n" + markdown_table(["dataset", "variant", "settings"], rows)

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

    def render(self) -> str:
        head = (f"# SAE benchmark leaderboard\n\nPreset `{self.preset_name}`"
                + (f": {self.preset.description}" if self.preset else "") + "\n")
        sections = [head, self.summary(), *(self.task_section(t) for t in self.tasks()), self.convergence(), self.footer()]
        return "\n\n".join(s for s in sections if s) + "\n"


def write_leaderboard(results_path: Path, output: Path, plot_dir: Path, preset: str | None = None) -> Path:
    results = read_results(results_path)
    if results.empty:
        raise UserError(f"no results in {results_path}: run `python -m benchmark run` first")
    board = Leaderboard(results, choose_preset(results, preset), Path(output), Path(plot_dir))
    text = board.render()
    tmp = Path(output).with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(output)
    return Path(output)
