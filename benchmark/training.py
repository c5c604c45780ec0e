"""The one shared training loop (SPEC section 4) and the on-disk model cache."""
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.data import Dataset
from benchmark.variant import SAE, encode_batch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float


@dataclass
class TrainedModel:
    model: SAE
    history: dict[str, list[dict]] = field(default_factory=dict)  # per-epoch callback outputs, by task
    epoch_losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    from_cache: bool = False


def _batch_concepts(dataset: Dataset, idx):
    return None if dataset.train_concepts is None else dataset.train_concepts[idx]


def training_step(model: SAE, optimiser: torch.optim.Optimizer, x: torch.Tensor,
                  concepts: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step on the batch `x`; returns the detached loss (no device sync).
    `benchmark perf` times exactly this function."""
    codes = encode_batch(model, x, concepts)
    loss, _ = model.loss(x, model.decode(codes), codes)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    model.after_step()
    return loss.detach()


def train_model(
    model: SAE,
    dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    callbacks: dict | None = None,
    progress: bool = False,
) -> TrainedModel:
    """Adam on seeded permutation batches of the device-resident training tensor.

    `dataset` must already be on the model's device. `callbacks` maps a name to
    `fn(model, dataset, epoch) -> dict`, called in eval mode without gradients after every epoch;
    their outputs are kept in `history[name]`.
    """
    callbacks = callbacks or {}
    x_train = dataset.train
    n = x_train.shape[0]
    generator = torch.Generator().manual_seed(seed)  # CPU generator: same permutation on any device
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    result = TrainedModel(model=model, history={name: [] for name in callbacks})
    start = time.perf_counter()
    model.init_from_data(x_train)
    epochs = tqdm(range(cfg.epochs), desc="train", leave=False, disable=not progress)
    for epoch in epochs:
        model.train()
        perm = torch.randperm(n, generator=generator).to(x_train.device)
        total = torch.zeros((), device=x_train.device)
        for lo in range(0, n, cfg.batch_size):
            idx = perm[lo : lo + cfg.batch_size]
            loss = training_step(model, optimiser, x_train[idx], _batch_concepts(dataset, idx))
            total += loss * idx.numel()
        epoch_loss = float(total) / n  # one device sync per epoch
        if not torch.isfinite(torch.tensor(epoch_loss)):
            raise TrainingDiverged(f"training loss became {epoch_loss} in epoch {epoch + 1}")
        result.epoch_losses.append(epoch_loss)
        epochs.set_postfix(loss=f"{epoch_loss:.4g}")
        model.eval()
        with torch.no_grad():
            for name, fn in callbacks.items():
                result.history[name].append(fn(model, dataset, epoch))
    result.train_seconds = time.perf_counter() - start
    model.eval()
    return result


class ModelCache:
    """Trained weights and training history on disk, keyed by the model's content hash."""

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def load(self, key: str, model: SAE) -> TrainedModel | None:
        if self.directory is None or not self._path(key).exists():
            return None
        try:
            blob = torch.load(self._path(key), map_location=next(model.parameters()).device)
            model.load_state_dict(blob["state_dict"])
        except Exception:  # a stale or truncated cache entry is retrained, never trusted
            return None
        model.eval()
        return TrainedModel(
            model=model,
            history=blob["history"],
            epoch_losses=blob["epoch_losses"],
            train_seconds=blob["train_seconds"],
            from_cache=True,
        )

    def save(self, key: str, trained: TrainedModel) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(".tmp")
        torch.save(
            {
                "state_dict": trained.model.state_dict(),
                "history": trained.history,
                "epoch_losses": trained.epoch_losses,
                "train_seconds": trained.train_seconds,
            },
            tmp,
        )
        tmp.replace(self._path(key))
