"""How many pairs of variants each headline separates under the paired test (benchmark/report/paired.py)
against suite 0.3's unpaired rule (difference of means > 2 x the pooled seed std), on a results
file. For the closing note of the statistics issue; the leaderboard itself uses the paired test.

    python scripts/noise_rules.py results/results.csv
"""
import math
import sys

import pandas as pd

from benchmark.config import load_preset
from benchmark.report.matched import matched_entries, separated_pairs
from benchmark.task import get_task


def unpaired_rule(entries):
    """Suite 0.3's rule: A beats B when its mean is better by more than 2 x the pooled seed std."""
    variances = [e.std**2 for e in entries if e.reached and e.seeds > 1]
    sigma = math.sqrt(sum(variances) / len(variances)) if variances else 0.0
    return lambda a, b, higher: ((a.mean - b.mean) if higher else (b.mean - a.mean)) > 2 * sigma


def main(path: str) -> None:
    results = pd.read_csv(path)
    preset = load_preset(results["preset"].iloc[-1])
    print("| headline | seeds | variant pairs | unpaired 2σ | paired t-test |\n|---|---|---|---|---|")
    for name in preset.tasks:
        task = get_task(name)
        dataset = task.headline_dataset(preset.task_datasets(name))
        target, higher = preset.headline_l0(dataset), task.metrics[task.headline]
        entries = matched_entries(results, name, dataset, task.headline, target)
        if not entries:
            continue
        paired, pairs = separated_pairs(entries, higher)
        unpaired, _ = separated_pairs(entries, higher, unpaired_rule(entries))
        seeds = max(e.seeds for e in entries)
        print(f"| {name} ({dataset}, L0 {target:g}) | {seeds} | {pairs} | {unpaired} | {paired} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/results.csv")
