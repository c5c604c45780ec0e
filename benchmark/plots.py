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
