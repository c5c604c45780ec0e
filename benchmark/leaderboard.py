"""leaderboard.md (SPEC section 7), generated from results.csv and never edited by hand."""
import os
from pathlib import Path

import pandas as pd

from benchmark.config import load_preset
from benchmark.errors import UserError
from benchmark.registry import TASKS, VARIANTS
from benchmark.results import read_results
from benchmark.submission import is_external
from benchmark.task import get_task


def choose_preset(results: pd.DataFrame, preset: str | None) -> str:
    """The requested preset, else the one of the most recent row."""
    if preset is not None:
        if preset not in set(results["preset"]):
            raise UserError(f"no results for preset {preset!r}; found: {', '.join(sorted(set(results['preset'])))}")
        return preset
    return results.sort_values("timestamp_utc")["preset"].iloc[-1]


def is_reference(variant: str) -> bool:
    """Rows of non-SAE references (e.g. `additive-pixels`): neither registered nor external."""
    return variant not in VARIANTS and not is_external(variant)


def stats(results: pd.DataFrame) -> pd.DataFrame:
    """mean and std over seeds per (task, dataset, variant, metric), ok rows only."""
    ok = results[(results["status"] == "ok") & (results["metric"] != "")]
    grouped = ok.groupby(["task", "dataset", "variant", "metric"])["value"]
    table = grouped.agg(["mean", "std", "count"]).reset_index()
    table["std"] = table["std"].fillna(0.0)
    return table


def fmt(mean: float, std: float, count: int) -> str:
    text = f"{mean:.4g}"
    return f"{text} ± {std:.2g}" if count > 1 else text


def best_variants(values: pd.Series, higher_is_better: bool) -> set[str]:
    if values.empty:
        return set()
    best = values.max() if higher_is_better else values.min()
    return set(values.index[values == best])


def cell_text(stat_rows: pd.DataFrame, variant: str, best: set[str], status: str | None) -> str:
    if variant in stat_rows.index:
        row = stat_rows.loc[variant]
        text = fmt(row["mean"], row["std"], int(row["count"]))
        return f"**{text}**" if variant in best else text
    return status or ""


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class Leaderboard:
    def __init__(self, results: pd.DataFrame, preset: str, output: Path, plot_dir: Path):
        self.results = results[results["preset"] == preset]
        self.preset_name = preset
        self.output = output
        self.plot_dir = plot_dir
        self.stats = stats(self.results)
        try:
            self.preset = load_preset(preset)
        except UserError:
            self.preset = None  # results of a preset file that is not in the package

    def task_datasets(self, task: str) -> list[str]:
        present = list(dict.fromkeys(self.results.loc[self.results["task"] == task, "dataset"]))
        if self.preset is not None and task in self.preset.tasks:
            order = self.preset.task_datasets(task)
            return [d for d in order if d in present] + [d for d in present if d not in order]
        return sorted(present)

    def tasks(self) -> list:
        return [get_task(t) for t in TASKS.names() if t in set(self.results["task"])]

    def status_of(self, task: str, dataset: str, variant: str) -> str | None:
        rows = self.results[(self.results["task"] == task) & (self.results["dataset"] == dataset)
                            & (self.results["variant"] == variant) & (self.results["status"] != "ok")]
        return rows["status"].iloc[0] if not rows.empty else None

    def metric_rows(self, task: str, dataset: str, metric: str) -> pd.DataFrame:
        s = self.stats
        return s[(s["task"] == task) & (s["dataset"] == dataset) & (s["metric"] == metric)].set_index("variant")

    # ----- sections -----
    def summary(self) -> str:
        variants = sorted(v for v in set(self.results["variant"]) if not is_reference(v))
        header, columns = ["variant"], []
        for task in self.tasks():
            datasets = self.task_datasets(task.name)
            if datasets:
                dataset = task.headline_dataset(datasets)
                columns.append((task, dataset))
                header.append(f"{task.name}: {task.headline} ({dataset}) {'↑' if task.metrics[task.headline] else '↓'}")
        ranks = pd.DataFrame(index=variants)
        cells = {v: [] for v in variants}
        for task, dataset in columns:
            rows = self.metric_rows(task.name, dataset, task.headline).reindex(variants).dropna(subset=["mean"])
            higher = task.metrics[task.headline]
            best = best_variants(rows["mean"], higher)
            ranks[task.name] = rows["mean"].rank(ascending=not higher)
            for v in variants:
                cells[v].append(cell_text(rows, v, best, self.status_of(task.name, dataset, v)))
        # A rank from a single task would put a specialist (e.g. `supervised`, which only
        # `composition` can score) above variants scored everywhere: rank only variants that
        # have a value in at least half the columns.
        enough = ranks.notna().sum(axis=1) >= max(1, -(-len(columns) // 2))
        mean_rank = ranks.mean(axis=1, skipna=True).where(enough)
        order = mean_rank.sort_values(na_position="last").index
        overall = mean_rank.rank(method="min")
        table = [[v, *cells[v], f"{int(overall[v])}" if pd.notna(overall[v]) else ""] for v in order]
        note = ("Mean ± std over seeds; best in bold (↑ higher is better, ↓ lower). Overall rank: "
                "the order of a variant's mean rank over the columns it has a value in, given to "
                "variants with a value in at least half the columns.")
        return "## Summary\n\n" + note + "\n\n" + markdown_table(header + ["overall rank"], table)

    def task_section(self, task) -> str:
        parts = [f"## {task.name}\n\n{task.description} Headline: `{task.headline}`."]
        for dataset in self.task_datasets(task.name):
            sub = self.stats[(self.stats["task"] == task.name) & (self.stats["dataset"] == dataset)]
            metrics = [m for m in task.metrics if m in set(sub["metric"])]
            variants = sorted(set(self.results.loc[(self.results["task"] == task.name)
                                                   & (self.results["dataset"] == dataset), "variant"]))
            columns = {m: self.metric_rows(task.name, dataset, m) for m in metrics}
            best = {m: best_variants(columns[m]["mean"], task.metrics[m]) for m in metrics}
            rows = [[v, *(cell_text(columns[m], v, best[m], self.status_of(task.name, dataset, v)) for m in metrics)]
                    for v in variants]
            header = ["variant", *(f"{m} {'↑' if task.metrics[m] else '↓'}" for m in metrics)]
            parts.append(f"### {task.name} on {dataset}\n\n" + markdown_table(header, rows) + self.notes(task.name, dataset))
        for title, path in task.plots(self.results, self.plot_dir):
            rel = os.path.relpath(path, self.output.parent)
            parts.append(f"**{title}**\n\n![{title}]({rel})")
        return "\n\n".join(parts)

    def notes(self, task: str, dataset: str) -> str:
        rows = self.results[(self.results["task"] == task) & (self.results["dataset"] == dataset)
                            & (self.results["status"] != "ok")]
        lines = sorted({f"- {r.variant} ({r.status}): {r.message}" for r in rows.itertuples()})
        return "\n\n" + "\n".join(lines) if lines else ""

    def footer(self) -> str:
        r = self.results
        join = lambda col: ", ".join(sorted(set(map(str, r[col]))))  # noqa: E731
        return (f"---\nPreset `{self.preset_name}` · device {join('device')} · commit {join('git_commit')} · "
                f"torch {join('torch_version')} · results from {r['timestamp_utc'].min()} to "
                f"{r['timestamp_utc'].max()} UTC. Generated by `python -m benchmark leaderboard` "
                "from results.csv; do not edit by hand.")

    def render(self) -> str:
        head = (f"# SAE benchmark leaderboard\n\nPreset `{self.preset_name}`"
                + (f": {self.preset.description}" if self.preset else "") + "\n")
        sections = [head, self.summary(), *(self.task_section(t) for t in self.tasks()), self.footer()]
        return "\n\n".join(sections) + "\n"


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
