"""Shared by the submission, isolation and resume tests: a tiny preset and the CLI entry."""
import textwrap
from pathlib import Path

import pandas as pd

from benchmark.cli import main

BROKEN = Path(__file__).parent / "broken_variants" / "variants.py"
KEY = ["task", "dataset", "variant", "seed", "metric"]

TINY = """\
description: one dataset, one epoch, two tasks (tests)
seeds: [0]
n_latents: 16
train: {epochs: 1, batch_size: 128, lr: 0.001}
datasets:
  digits8: {}
tasks:
  reconstruction: {datasets: [digits8]}
  sparsity: {datasets: [digits8]}
variants:
  relu: {l1_coeff: 0.05}
  topk: {k: 4, aux_k: 8}
"""


def write_preset(directory: Path, text: str = TINY, name: str = "tiny") -> Path:
    path = Path(directory) / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def broken(name: str) -> str:
    return f"{BROKEN}:{name}"


def run(out: Path, preset: Path, *args: str) -> int:
    return main(["run", "--preset", str(preset), "--out", str(out), "--no-progress", *args])


def values(path: Path) -> pd.Series:
    frame = pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})
    return frame.set_index(KEY)["value"].sort_index()
