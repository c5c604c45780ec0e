"""Shared by the submission, isolation and resume tests: a tiny preset and the CLI entry."""
from pathlib import Path

import pandas as pd

from benchmark.cli import main

BROKEN = Path(__file__).parent / "broken_variants" / "variants.py"
KEY = ["task", "dataset", "variant", "seed", "metric"]

# One dataset, one epoch, and by default one task without plots (the leaderboard every CLI run
# writes then costs next to nothing).
TINY = """\
description: one dataset, one epoch (tests)
seeds: {seeds}
n_latents: 16
train: {{epochs: 1, batch_size: 128, lr: 0.001}}
datasets:
  digits8: {{}}
tasks:
{tasks}
variants:
  relu: {{l1_coeff: 0.05}}
  topk: {{k: 4, aux_k: 8}}
"""


def write_preset(directory: Path, tasks=("sparsity",), seeds=(0,), name: str = "tiny") -> Path:
    path = Path(directory) / f"{name}.yaml"
    listed = "\n".join(f"  {task}: {{datasets: [digits8]}}" for task in tasks)
    path.write_text(TINY.format(tasks=listed, seeds=list(seeds)))
    return path


def broken(name: str) -> str:
    return f"{BROKEN}:{name}"


def run_argv(out: Path, preset: Path, *args: str) -> list[str]:
    """`benchmark run`'s arguments, without the untrained twins (tests/benchmark/grid/test_twins.py
    covers them): every run of a test that compares two runs is built here."""
    return ["run", "--preset", str(preset), "--out", str(out), "--no-progress", "--no-twins", *args]


def run(out: Path, preset: Path, *args: str) -> int:
    return main(run_argv(out, preset, *args))


def values(path: Path) -> pd.Series:
    frame = pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})
    return frame.set_index(KEY)["value"].sort_index()
