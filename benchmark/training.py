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


CONVERGENCE_WINDOW = 0.1  # compare the mean loss of the last 10% of steps with the previous 10%
CONVERGENCE_TOLERANCE = 0.01  # ... and call it converged within 1% (SPEC section 4)


def has_converged(step_losses: list[float]) -> bool:
    """The mean training loss of the last 10% of steps is within 1% of the previous 10%'s.
    Fewer than 20 steps cannot show a plateau: not converged."""
    window = int(len(step_losses) * CONVERGENCE_WINDOW)
    if window < 2:
        return False
    last = sum(step_losses[-window:]) / window
    previous = sum(step_losses[-2 * window : -window]) / window
    return abs(last - previous) <= CONVERGENCE_TOLERANCE * abs(previous)


@dataclass
class TrainedModel:
    model: SAE
    history: dict[str, list[dict]] = field(default_factory=dict)  # per-epoch callback outputs, by task
    epoch_losses: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    from_cache: bool = False
    step_losses: list[float] = field(default_factory=list)  # every optimiser step's training loss
    trained: bool = True  # False for a control or a checkpoint: fitted or loaded, never trained

    @property
    def steps(self) -> int:
        return len(self.step_losses)

    @property
    def converged(self) -> bool:
        """Controls and loaded checkpoints count as converged: there is no training to finish."""
        return has_converged(self.step_losses) if self.trained else True


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


def adam(model: SAE, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel (one pass over all parameters: 3x faster per step than the
    default on a 2-core CPU at SAE sizes, measured), falling back to the default where the
    device or dtype has no fused kernel."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(model.parameters(), lr=lr)


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
    optimiser = adam(model, cfg.lr)
    result = TrainedModel(model=model, history={name: [] for name in callbacks})
    start = time.perf_counter()
    model.init_from_data(x_train)
    epochs = tqdm(range(cfg.epochs), desc="train", leave=False, disable=not progress)
    for epoch in epochs:
        model.train()
        perm = torch.randperm(n, generator=generator).to(x_train.device)
        losses, sizes = [], []
        for lo in range(0, n, cfg.batch_size):
            idx = perm[lo : lo + cfg.batch_size]
            losses.append(training_step(model, optimiser, x_train[idx], _batch_concepts(dataset, idx)))
            sizes.append(idx.numel())
        step_losses = torch.stack(losses).double().cpu()  # one device sync per epoch
        epoch_loss = float((step_losses * torch.tensor(sizes, dtype=torch.float64)).sum()) / n
        result.step_losses += step_losses.tolist()
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
            step_losses=blob["step_losses"],
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
                "step_losses": trained.step_losses,
            },
            tmp,
        )
        tmp.replace(self._path(key))
