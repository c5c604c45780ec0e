"""A whole run of a small preset in this process, for tests that read its results."""
import pandas as pd

from benchmark.config import parse_preset
from benchmark.grid.runner import RunOptions, Runner


def run_preset(text: str, out, variants=("topk",), **options) -> tuple[RunOptions, pd.DataFrame]:
    """(the run's options, its results.csv) after running preset `text` into `out`."""
    run = RunOptions(preset=parse_preset(text, "test", "test"), variants=list(variants), out_dir=out,
                     progress=False, isolate=False, **options)
    Runner(run).run()
    return run, pd.read_csv(out / "results.csv")
