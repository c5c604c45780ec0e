"""Your activations, your SAEs: what `eval --activations` and `run --activations` share.

- `activations_preset`: the preset with its datasets replaced by one, the file
  (benchmark/datasets/activations.py), named after it; every task of the preset is kept (those
  that need what a file cannot give, images, concepts, a model to splice into, write `skipped`
  rows with the reason), each pointed at that dataset.
- `checkpoint_folders`: the folders given, a folder that holds no checkpoint but whose
  sub-folders do standing for those.
- `checkpoint_specs`: checkpoints of one format, architecture and width form one family
  (`checkpoint:DIR1|DIR2|...`), read as a sweep over its members; a checkpoint alone keeps its
  own `checkpoint:DIR`.
- `own_l0_targets`: a single checkpoint's own L0 on the test split joins the targets, so the
  controls are read at exactly that L0 (interpolated along their sweeps) and every foreign SAE
  gets a "beats the controls?" verdict.
- `test_rows_for`: the test split capped by the widest checkpoint (4,096 rows at d_sae 16,384).
"""
import dataclasses
import math
import re
from pathlib import Path

import torch

from benchmark.config import Preset
from benchmark.errors import UserError
from benchmark.interop import FAMILY_SEPARATOR, checkpoint_class, detect_format, family_key

ACTIVATION_CONTROLS = ("pca", "pca-topk", "random-dict")  # the controls that run on vectors


def dataset_name(path: Path) -> str:
    """The file's stem, reduced to letters, digits, '-' and '_' (it names plots and folders)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).stem).strip("-") or "activations"


def activations_preset(base: Preset, path: Path, labels: Path | None = None, l0_targets=None,
                       headline_l0: float | None = None) -> Preset:
    name = dataset_name(path)
    entry = {"kind": "activations", "path": str(Path(path).resolve()), "seeds": [base.seeds[0]]}
    if labels is not None:
        entry["labels"] = str(Path(labels).resolve())
    comparison = dict(base.comparison)
    if l0_targets:
        comparison["l0_targets"] = sorted(float(t) for t in l0_targets)
    targets = comparison["l0_targets"]
    if headline_l0 is not None:
        comparison["headline_l0"] = float(headline_l0)
    elif float(comparison["headline_l0"]) not in targets:  # the target nearest the preset's, in log
        comparison["headline_l0"] = min(targets, key=lambda t: abs(math.log(t / comparison["headline_l0"])))
    tasks = {task: dict(entry_, datasets=[name]) for task, entry_ in base.tasks.items()}
    controls = {c: p for c, p in base.controls.items() if c in ACTIVATION_CONTROLS}
    return dataclasses.replace(base, name=f"activations-{name}", description=f"{base.name} on {Path(path).name}",
                               datasets={name: entry}, tasks=tasks, comparison=comparison, controls=controls,
                               budget_check=None, eval_seeds=1)


def with_targets(preset: Preset, extra) -> Preset:
    """The preset with more L0 targets (a single checkpoint's own L0s)."""
    comparison = dict(preset.comparison, l0_targets=sorted(set(preset.comparison["l0_targets"]) | set(extra)))
    return dataclasses.replace(preset, comparison=comparison)


CODES_BUDGET = 256 * 2**20  # bytes of one dense (test rows x d_sae) float32 code matrix


def test_rows_for(preset: Preset, dataset: str, widest: int) -> Preset:
    """The preset with the file's test split capped so that the widest checkpoint's dense codes
    fit CODES_BUDGET (the tasks hold a few such matrices at once: they, not the file, set the
    peak memory); between 1,024 and the builder's 8,192 rows."""
    entry = dict(preset.datasets[dataset], max_test=max(1024, min(8192, CODES_BUDGET // (4 * widest))))
    return dataclasses.replace(preset, datasets={**preset.datasets, dataset: entry})


def checkpoint_folders(folders) -> list[Path]:
    found = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise UserError(f"checkpoint folder {folder} does not exist")
        if any(module_matches(folder)):
            found.append(folder)
            continue
        children = sorted(c for c in folder.iterdir() if c.is_dir() and any(module_matches(c)))
        if not children:
            detect_format(folder)  # its one-line message: no known format here
        found += children
    return found


def module_matches(folder: Path):
    from benchmark.interop import FORMATS

    return (module.matches(folder) for module in FORMATS.values())


def checkpoint_specs(folders: list[Path]) -> list[str]:
    """`checkpoint:` specs: one per family (two or more checkpoints that agree on format,
    architecture, activation, d_in and d_sae), one per checkpoint alone; in the order given."""
    families: dict[tuple, list[Path]] = {}
    for folder in folders:  # checkpoint_class reads each folder once; its family's class reuses it
        families.setdefault(family_key(checkpoint_class(folder).checkpoint), []).append(folder.resolve())
    return [f"checkpoint:{FAMILY_SEPARATOR.join(map(str, members))}" for members in families.values()]


@torch.no_grad()
def own_l0_targets(classes: list[type], dataset) -> list[float]:
    """The test-split L0 of every checkpoint that is alone (not in a family)."""
    from benchmark.grid.runner import achieved_l0

    return [achieved_l0(cls(dataset.input_shape, cls.checkpoint.d_sae), dataset)
            for cls in classes if not getattr(cls, "members", None)]
