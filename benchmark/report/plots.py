"""Figures shared by the tasks (matplotlib, headless).

Cost plots (R² against FLOPs or parameters across every model) are deliberately absent: they
would put models of different L0 side by side. Cost per model is in the tables at each target
L0 (`flops_per_sample`, `params`, `r2_per_mflop`, `r2_per_kparam`).
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def frontier_plot(results: pd.DataFrame, task: str, dataset: str, metric: str, higher_is_better: bool,
                  targets: list[float], path: Path) -> Path | None:
    """`metric` against achieved L0 (log axis): one line per variant through its sweep (mean over
    seeds of each setting), controls dashed, references as dotted horizontal lines, the target
    L0s as faint verticals. None when there is nothing to plot."""
    from benchmark.report.matched import is_control_name, model_rows, reference_rows

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
