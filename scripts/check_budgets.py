"""Check the presets' time budgets (SPEC section 9): run the whole suite the way a user would
(`python -m benchmark run --all --preset P --force`, a fresh process, into a temporary folder)
and compare its wall time with the budget. Exit 1 when a preset is over its budget or the run
failed, so CI can use it.

    python scripts/check_budgets.py              # smoke (60 s)
    python scripts/check_budgets.py --default    # smoke, then default (budget 30 min; ~38-48 estimated)
    python scripts/check_budgets.py --default --default-out results   # ... publishing the default run

The budgets are for 2 CPU cores with nothing else running; on a busy machine the wall time is
longer than the suite's own cost (the script prints the process's CPU time beside it). The
training is mostly fp32 matrix products, so the script also prints this machine's one-thread
matmul rate and the wall time scaled to the reference core's (~75 GFLOP/s): an estimate, for
runs on a slower or faster machine than the budget's. The run
starts cold, as on a fresh clone: with --default-out, that folder's model and activation caches,
results.csv and plots are removed first, so every model is trained and every activation
extracted within the measured time, and the published files come from this run alone. After
each run the script prints each dataset's share of the wall time (from the rows' timestamps).
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGETS_S = {"smoke": 60, "default": 30 * 60}
REFERENCE_GFLOPS = 75.0  # one core of the 2-core machine the budgets are set on
REPO = Path(__file__).resolve().parents[1]


def run_preset(preset: str, out: str | None = None) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the run's processes, exit code) of one full run, into `out`
    (e.g. `results`, so that the measured run is the published one) or a temporary folder."""
    with tempfile.TemporaryDirectory(prefix=f"budget-{preset}-") as scratch:
        results_dir = REPO / out if out else Path(scratch)
        if out:  # a warm cache would hide the training and extraction cost; the published results
            # and figures must come from this run alone, not beside rows of an older configuration
            for stale in ("cache", "plots"):
                shutil.rmtree(results_dir / stale, ignore_errors=True)
            for name in ("results.csv", "results-2x.csv"):
                (results_dir / name).unlink(missing_ok=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # --out as given (relative to the repository): `results` puts leaderboard.md beside it
        code = subprocess.call(
            [sys.executable, "-m", "benchmark", "run", "--all", "--preset", preset, "--force",
             "--no-progress", "--device", "cpu", "--out", out or scratch],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        print_dataset_shares(results_dir / "results.csv")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss (KiB on Linux) of RUSAGE_CHILDREN: the largest resident set of any one process
    # of the run, the parent or a cell's child (not their sum: with --jobs 2 two cells overlap).
    print(f"  peak memory of the largest process (the run or one cell): {after.ru_maxrss / 1024:.0f} MiB")
    return wall, cpu, code


def matmul_gflops(products: int = 50) -> float:
    """This machine's one-thread fp32 matmul rate at the default's sizes (a batch of 1,024 rows
    of d 192 against K 256), the best of 5 timings of `products` products."""
    import torch

    from benchmark.perf.counting import gflops
    from benchmark.perf.timing import timed

    torch.set_num_threads(1)
    a, b = torch.randn(1024, 192), torch.randn(192, 256)
    seconds = min(timed(lambda: [a @ b for _ in range(products)], torch.device("cpu")) for _ in range(5))
    return gflops(products * 2 * a.shape[0] * a.shape[1] * b.shape[1], seconds)


def print_dataset_shares(results_csv: Path) -> None:
    """Seconds of the run's wall time that ended a cell of each dataset: the gaps between
    consecutive finished cells, summed per dataset (with parallel jobs, a share, not a cost).
    A cell ends at its first row: the passes over finished models (seed stability) add rows to
    cells after the whole grid, and counting those would move every such cell to the run's end;
    their time is printed apart."""
    import pandas as pd

    if not results_csv.exists():
        return
    rows = pd.read_csv(results_csv, parse_dates=["timestamp_utc"])
    rows = rows[rows["run_id"] == rows["run_id"].iloc[-1]]
    cells = rows.groupby(["dataset", "variant", "seed", "setting"])["timestamp_utc"].min().sort_values()
    gaps = cells.diff().dt.total_seconds().fillna(0)
    shares = gaps.groupby(level="dataset").sum().sort_values(ascending=False)
    after = (rows["timestamp_utc"].max() - cells.iloc[-1]).total_seconds()
    print("  wall seconds by dataset: " + ", ".join(f"{name} {sec:.0f}" for name, sec in shares.items())
          + f"; after the grid's last cell (passes over finished models): {after:.0f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", action="store_true", help="also run the default preset (budget 30 min on the reference's 2 cores)")
    parser.add_argument("--default-out", metavar="DIR", help="run the default preset into DIR (relative to the "
                        "repository; e.g. results, to publish the measured run) instead of a temporary folder")
    args = parser.parse_args(argv)
    presets = ["smoke"] + (["default"] if args.default else [])
    speed = matmul_gflops()
    print(f"this machine: {speed:.0f} GFLOP/s one-thread fp32 matmul (the budgets' reference: ~{REFERENCE_GFLOPS:.0f})")
    failed = False
    for preset in presets:
        wall, cpu, code = run_preset(preset, args.default_out if preset == "default" else None)
        budget = BUDGETS_S[preset]
        over = wall > budget
        verdict = "run FAILED" if code else ("OVER BUDGET" if over else "ok")
        print(f"{preset}: {wall:.1f} s wall, {cpu:.1f} s CPU (budget {budget} s wall on 2 cores): {verdict}")
        print(f"  at the reference's matmul rate: ~{wall * speed / REFERENCE_GFLOPS:.0f} s wall (an estimate)")
        failed |= bool(code) or over
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
