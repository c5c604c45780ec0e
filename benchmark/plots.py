"""Figures shared by several tasks (matplotlib, headless)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def metric_means(results: pd.DataFrame, task: str, metrics: list[str]) -> pd.DataFrame:
    """Mean over seeds of `metrics`, one row per (dataset, variant), ok rows only."""
    rows = results[(results["task"] == task) & (results["status"] == "ok") & results["metric"].isin(metrics)]
    if rows.empty or not set(metrics) <= set(rows["metric"]):
        return pd.DataFrame(columns=["dataset", "variant", *metrics])
    table = rows.pivot_table(index=["dataset", "variant"], columns="metric", values="value", aggfunc="mean")
    return table.dropna(subset=metrics).reset_index()


def pareto_front(points: pd.DataFrame, cost: str, score: str) -> pd.DataFrame:
    """Points no other point beats on both lower cost and higher score, sorted by cost."""
    ordered = points.sort_values([cost, score], ascending=[True, False])
    best, front = float("-inf"), []
    for index, row in ordered.iterrows():
        if row[score] > best:
            best = row[score]
            front.append(index)
    return ordered.loc[front]


def pareto_plot(results: pd.DataFrame, cost: str, xlabel: str, path: Path, score: str = "r2") -> Path | None:
    """Reconstruction score against a cost, one panel per dataset, the Pareto front joined.
    None when there is nothing to plot."""
    table = metric_means(results, "reconstruction", [cost, score])
    datasets = sorted(table["dataset"].unique())
    if not datasets:
        return None
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        points = table[table["dataset"] == dataset]
        for _, row in points.iterrows():
            ax.scatter(row[cost], row[score])
            ax.annotate(row["variant"], (row[cost], row[score]), fontsize=8, xytext=(3, 3), textcoords="offset points")
        front = pareto_front(points, cost, score)
        ax.plot(front[cost], front[score], "k--", lw=1, label="Pareto front")
        ax.set(xscale="log", xlabel=xlabel, ylabel=f"test {score}", title=dataset)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frontier_plot(results: pd.DataFrame, task: str, dataset: str, metric: str, higher_is_better: bool,
                  targets: list[float], path: Path) -> Path | None:
    """`metric` against achieved L0 (log axis): one line per variant through its sweep (mean over
    seeds of each setting), controls dashed, references as dotted horizontal lines, the target
    L0s as faint verticals. None when there is nothing to plot."""
    from benchmark.matched import is_control_name, model_rows, reference_rows

    rows = model_rows(results, task, dataset, metric)
    rows = rows[rows["l0"] > 0]
    if rows.empty:
        return None
    points = rows.groupby(["variant", "setting"]).agg(l0=("l0", "mean"), value=("value", "mean")).reset_index()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab20").colors  # one colour per line: more lines than the default cycle
    for i, (variant, line) in enumerate(points.groupby("variant")):
        line = line.sort_values("l0")
        control = is_control_name(variant)
        ax.plot(line["l0"], line["value"], "--" if control else "-", marker="o", ms=3, lw=1.2,
                color=colours[i % len(colours)], label=f"{variant} (control)" if control else variant,
                alpha=0.8 if control else 1.0)
    for variant, ref in reference_rows(results, task, dataset, metric).groupby("variant"):
        ax.axhline(ref["value"].mean(), ls=":", lw=1, color="grey")
        ax.annotate(variant, (ax.get_xlim()[0], ref["value"].mean()), fontsize=7, color="grey")
    for target in targets:
        ax.axvline(target, color="0.85", lw=0.8, zorder=0)
    ax.set(xscale="log", xlabel="achieved test L0 (log)", ylabel=f"{metric} {'↑' if higher_is_better else '↓'}",
           title=f"{task} on {dataset}")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
