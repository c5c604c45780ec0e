"""Helpers shared by the atom and intervention tasks: firing counts, and the folder where
tasks keep what their plots need (the leaderboard only hands `plots()` the results table)."""
from pathlib import Path

import torch


def firing_order(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(counts, order): how many rows each latent is non-zero on, and the latents sorted by that
    count, most frequent first (ties: the larger mean |activation| first, then the lower index,
    so the choice is deterministic)."""
    counts = (codes != 0).sum(0)
    strength = codes.abs().mean(0)
    # Stable sorts, applied from the last key to the first: index, then strength, then count.
    order = torch.arange(codes.shape[1], device=codes.device)
    order = order[torch.sort(strength[order], descending=True, stable=True).indices]
    order = order[torch.sort(counts[order], descending=True, stable=True).indices]
    return counts, order


def artifact_file(config: dict, task: str, dataset: str, suffix: str) -> Path | None:
    """Where a task saves per-cell data for its plots, or None when the caller gave no
    `artifact_dir` (e.g. a direct call from a test or a notebook)."""
    root = config.get("artifact_dir")
    if root is None:
        return None
    variant, seed = config.get("model_name", "model"), config.get("seed", 0)
    setting = str(config.get("setting", "default")).replace("/", "_")  # every model of a sweep has its own file
    path = Path(root) / task / dataset / f"{variant}@{setting}-seed{seed}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def artifact_root(plot_dir: Path) -> Path:
    """The runner's `artifact_dir`, seen from the leaderboard's `plot_dir`."""
    return Path(plot_dir) / "artifacts"
