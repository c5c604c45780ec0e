"""The one shared training loop (SPEC section 4) and the on-disk model cache."""
import copy
import dataclasses
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.data import Dataset
from benchmark.training.stacking import keep_rows, stack, unstack
from benchmark.variant import SAE, encode_batch


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


SCHEDULES = ("constant", "linear_decay")


@dataclass(frozen=True)
class TrainConfig:
    """How long and how a model trains (SPEC section 4).

    A model trains at the constant learning rate `lr` until its plateau criterion holds
    (`has_converged`, checked every `check_every` steps from `min_steps` on) or until the cap:
    `max_steps`, else `epochs` passes over the training pool. `length` stretches that (the
    budget check trains at 2x: on to twice the step where the plateau first held, cap doubled).
    Then `schedule: linear_decay` adds `decay_fraction` x the steps taken with the rate falling
    linearly to zero; the plateau is judged before it, so a decay cannot fake convergence.
    A dataset with a stream (and `stream` true) gives fresh samples every step; a finite one is
    passed over in seeded permutations (full batches only, so models of a stack stay aligned).
    """

    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    max_steps: int | None = None
    min_steps: int = 100
    check_every: int = 50
    schedule: str = "constant"
    decay_fraction: float = 0.2
    length: float = 1.0
    stream: bool = True

    def cap(self, n_train: int) -> int:
        """Steps at the constant rate at most (before `length`)."""
        if self.max_steps is not None:
            return int(self.max_steps)
        return int(self.epochs or 0) * steps_per_epoch(n_train, self.batch_size)

    def batch_for(self, n_train: int) -> int:
        return min(self.batch_size, n_train)


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, n_train // min(batch_size, n_train))


CONVERGENCE_WINDOW = 0.1  # compare the mean loss of the last 10% of steps with the previous 10%
CONVERGENCE_TOLERANCE = 0.01  # ... and call it converged within 1% (SPEC section 4)
MIN_PLATEAU_STEPS = 20  # fewer steps cannot show a plateau (two windows of at least 2 steps)


LEARNT_Z = 4.0  # the fall from the first window must exceed this many standard errors


def has_converged(step_losses: list[float]) -> bool:
    """A plateau after learning, judged on windows of the last 10% of steps:
    - plateau: the mean training loss of the last window is within 1% of the previous one's,
      and the comparison can resolve 1% (the standard error of the difference of the two means,
      from the batch-to-batch noise, is at most 1% of the loss: on noisy batches a short window
      cannot tell a plateau from a slow fall, and must not call it one);
    - learnt: it is below the first window's mean by more than 1% and by more than 4 standard
      errors of that difference (at learning rate 0 the loss is flat too: noise alone must not
      pass for learning).
    Fewer than 20 steps: not converged."""
    window = int(len(step_losses) * CONVERGENCE_WINDOW)
    if window < 2:
        return False
    first, previous, last = step_losses[:window], step_losses[-2 * window : -window], step_losses[-window:]
    level = abs(statistics.fmean(previous))
    resolution = math.sqrt((statistics.variance(last) + statistics.variance(previous)) / window)
    plateau = (abs(statistics.fmean(last) - statistics.fmean(previous)) <= CONVERGENCE_TOLERANCE * level
               and resolution <= CONVERGENCE_TOLERANCE * level)
    fall = statistics.fmean(first) - statistics.fmean(last)
    noise = math.sqrt((statistics.variance(first) + statistics.variance(last)) / window)
    learnt = fall > CONVERGENCE_TOLERANCE * abs(statistics.fmean(first)) and fall > LEARNT_Z * noise
    return plateau and learnt


@dataclass
class TrainedModel:
    model: SAE
    history: dict[str, list[dict]] = field(default_factory=dict)  # per-check callback outputs, by task
    train_seconds: float = 0.0  # a stacked model's share: its stack's time over its models
    from_cache: bool = False
    step_losses: list[float] = field(default_factory=list)  # every optimiser step's training loss
    trained: bool = True  # False for a control or a checkpoint: fitted or loaded, never trained
    plateau_step: int | None = None  # the step at which the plateau criterion first held
    cap: int | None = None  # the step cap it trained under (before any decay)

    @property
    def steps(self) -> int:
        return len(self.step_losses)

    @property
    def converged(self) -> bool:
        """Controls and loaded checkpoints count as converged: there is no training to finish."""
        return self.plateau_step is not None if self.trained else True


def untrained(model: SAE, dataset: Dataset, keep_top: int | None = None) -> TrainedModel:
    """A freshly constructed model initialised from the data and never stepped: an untrained
    twin (benchmark/grid/twins.py). `keep_top`: its codes keep each sample's largest |values| only."""
    model.init_from_data(dataset.train)
    model.eval()
    if keep_top is not None:
        model.encode = keep_largest(model.encode, keep_top)  # this instance only
    return TrainedModel(model=model, trained=False)


def keep_largest(encode, k: int):
    """`encode` whose codes keep each row's k largest |values| (ties broken by topk), zeros elsewhere."""
    def sparse_encode(*args, **kwargs):
        codes = encode(*args, **kwargs)
        kept = codes.abs().topk(min(k, codes.shape[-1]), dim=-1).indices
        return torch.zeros_like(codes).scatter(-1, kept, codes.gather(-1, kept))
    return sparse_encode


def _batch_concepts(dataset: Dataset, idx):
    return None if dataset.train_concepts is None else dataset.train_concepts[idx]


def training_step(model: SAE, optimiser: torch.optim.Optimizer, x: torch.Tensor,
                  concepts: torch.Tensor | None = None, update_scale: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step on the batch `x`; returns the detached loss (no device sync): a
    scalar, or the (M,) per-model losses of a stacked model (x then (M, B, ...)).
    `update_scale` (M,): each stacked model moves by that fraction of Adam's update (its decay
    phase; the update scaled after the fact equals Adam at rate scale x lr).
    `benchmark perf` times exactly this function."""
    codes = encode_batch(model, x, concepts)
    loss, _ = model.loss(x, model.decode(codes), codes)
    optimiser.zero_grad(set_to_none=True)
    loss.sum().backward()
    before = None if update_scale is None else [p.detach().clone() for p in model.parameters()]
    optimiser.step()
    if before is not None:
        with torch.no_grad():
            for p, old in zip(model.parameters(), before):
                p.copy_(torch.lerp(old, p, update_scale.view(-1, *([1] * (p.ndim - 1)))))
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


def batch_source(dataset: Dataset, cfg: TrainConfig, seed: int):
    """Endless (x, concepts) training batches on the dataset's device: fresh samples from its
    stream, else seeded permutations of `train` (full batches; a CPU generator, so the same
    order on any device)."""
    device = dataset.train.device
    if cfg.stream and dataset.stream is not None:
        for x, concepts in dataset.stream.batches(cfg.batch_size):
            yield x.to(device), None if concepts is None else concepts.to(device)
    n = dataset.train.shape[0]
    batch = cfg.batch_for(n)
    generator = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=generator).to(device)
        for lo in range(0, n - batch + 1, batch):
            idx = perm[lo : lo + batch]
            yield dataset.train[idx], _batch_concepts(dataset, idx)


class Progress:
    """One model's way through training: the constant phase until its plateau (or cap), then
    the optional decay; decides each step's learning-rate scale and when it is done."""

    def __init__(self, cfg: TrainConfig, cap: int):
        self.cfg, self.cap = cfg, cap
        self.losses: list[float] = []
        self.plateau_step: int | None = None
        self.constant_until: int | None = None
        self.end: int | None = None

    def scale(self, step: int) -> float:
        """The learning-rate factor of 1-based `step`."""
        if self.constant_until is None or step <= self.constant_until:
            return 1.0
        decay = self.end - self.constant_until
        return 1.0 - (step - self.constant_until - 1) / decay

    @property
    def cap_step(self) -> int:
        """The last step at the constant rate if the plateau never holds."""
        return math.ceil(self.cfg.length * self.cap)

    def after(self, step: int, checked: bool) -> None:
        """Update after `step` (losses synced up to it when `checked`)."""
        limit = self.cap_step
        if self.constant_until is None:
            if checked and self.plateau_step is None and step >= self.cfg.min_steps and has_converged(self.losses):
                self.plateau_step = step
            if self.plateau_step is not None:
                limit = min(limit, math.ceil(self.cfg.length * self.plateau_step))
            if step >= limit:
                self.constant_until = step
                decay = round(self.cfg.decay_fraction * step) if self.cfg.schedule == "linear_decay" else 0
                self.end = step + decay

    def done(self, step: int) -> bool:
        return self.end is not None and step >= self.end


def train_model(
    model: SAE,
    dataset: Dataset,
    cfg: TrainConfig,
    seed: int,
    callbacks: dict | None = None,
    progress: bool = False,
) -> TrainedModel:
    """Adam on the dataset's training batches until the plateau criterion holds or the cap
    (TrainConfig). `dataset` must already be on the model's device. `callbacks` maps a name to
    `fn(model, dataset, step) -> dict`, called in eval mode without gradients at every
    convergence check; their outputs are kept in `history[name]`."""
    return train_models([model], [dataset], cfg, [seed], callbacks, progress)[0]


@dataclass
class Fork:
    """A longer training of model `parent` (the budget check's 2x: the same configuration but a
    larger `length`). Until the two schedules part (at the parent's decay, or its end) they take
    the same steps on the same batches, so the fork rides the parent's stack row and only then
    gets a row of its own: its first part is not trained twice. `model` (the parent's class and
    hyperparameters) receives its weights."""

    parent: int
    model: SAE
    cfg: TrainConfig


def train_models(models: list[SAE], datasets: list[Dataset], cfg: TrainConfig, seeds: list[int],
                 callbacks: dict | None = None, progress: bool = False,
                 hparams: list[dict] | None = None, forks: list[Fork] = ()) -> list[TrainedModel]:
    """Train `models` (model m on datasets[m] with data seed seeds[m]). With `hparams` (each
    model's constructor hyperparameters) and more than one model they train as one stack
    (benchmark/training/stacking.py); otherwise one at a time. Results equal within float rounding.
    `forks` (stacked only) branch off their parent models (Fork); their results follow the models'."""
    forks = list(forks)
    for fork in forks:
        if hparams is None or dataclasses.replace(fork.cfg, length=cfg.length) != cfg:
            raise ValueError("a fork trains in a stack (hparams) and differs from its parent only in length")
    if hparams is not None and (len(models) > 1 or forks):
        return _train_together(models, datasets, cfg, seeds, callbacks or {}, progress, hparams, forks)
    return [_train_together([m], [d], cfg, [s], callbacks or {}, progress, None, [])[0]
            for m, d, s in zip(models, datasets, seeds)]


def _train_together(models, datasets, cfg, seeds, callbacks, progress, hparams, forks) -> list[TrainedModel]:
    start = time.perf_counter()
    for model, dataset in zip(models, datasets):
        model.init_from_data(dataset.train)
        model.train()
    sources, source_of = {}, []
    for dataset, seed in zip(datasets, seeds):  # models on one (dataset, seed) share its batches
        key = (id(dataset), seed)
        if key not in sources:
            sources[key] = batch_source(dataset, cfg, seed)
        source_of.append(key)
    # Every trained model: the models, then the forks (which use their parent's data).
    everyone = list(models) + [f.model for f in forks]
    datasets = list(datasets) + [datasets[f.parent] for f in forks]
    source_of += [source_of[f.parent] for f in forks]
    configs = [cfg] * len(models) + [f.cfg for f in forks]
    caps = [c.cap(d.train.shape[0]) for c, d in zip(configs, datasets)]
    progresses = [Progress(c, cap) for c, cap in zip(configs, caps)]
    results = [TrainedModel(model=m, history={name: [] for name in callbacks}, cap=cap) for m, cap in zip(everyone, caps)]
    stacked = hparams is not None
    module = stack(models, hparams) if stacked else models[0]
    optimiser = adam(module, cfg.lr)
    active = list(range(len(models)))  # the model of each stack row, in order
    riders = {m: [len(models) + j for j, f in enumerate(forks) if f.parent == m] for m in active}  # forks on its row
    pending: list[tuple[list[list[int]], torch.Tensor]] = []  # (each row's models, their losses) since the last sync
    bar = tqdm(total=max(p.cap_step for p in progresses), desc="train", leave=False, disable=not progress)
    step = 0
    while active:
        step += 1
        batches = {key: next(source) for key, source in sources.items()
                   if any(source_of[m] == key for m in active)}
        scales = [progresses[m].scale(step) for m in active]
        if stacked:
            x = torch.stack([batches[source_of[m]][0] for m in active])
            losses = _stacked_step(module, optimiser, x, scales)
        else:
            x, concepts = batches[source_of[0]]
            optimiser.param_groups[0]["lr"] = cfg.lr * scales[0]
            losses = training_step(module, optimiser, x, concepts).reshape(1)
        on_rows = [[m, *riders[m]] for m in active]
        on_stack = [m for row in on_rows for m in row]
        pending.append((on_rows, losses))
        # Losses reach the CPU (one device sync) at each check, and at a cap so it is judged too.
        checked = step % cfg.check_every == 0 or any(step == progresses[m].cap_step for m in on_stack)
        if checked:
            _sync(pending, progresses)
            pending = []
            if callbacks:
                _run_callbacks(module, everyone, active, datasets, results, callbacks, step, stacked)
        for m in on_stack:
            progresses[m].after(step, checked)
        active, optimiser = _fork(module, active, riders, progresses, results, optimiser, step)
        finished = [m for m in active if progresses[m].done(step)]
        if finished:
            if pending:
                _sync(pending, progresses)
                pending = []
            active, optimiser = _finish(module, everyone, active, finished, optimiser, stacked)
        bar.update()
    bar.close()
    seconds = (time.perf_counter() - start) / len(everyone)
    for model, result, prog in zip(everyone, results, progresses):
        model.eval()
        result.step_losses, result.plateau_step, result.train_seconds = prog.losses, prog.plateau_step, seconds
    return results


def _fork(module, active, riders, progresses, results, optimiser, step):
    """Each fork whose schedule parts from its parent's after `step` gets a row of its own: a
    copy of the parent's (weights, buffers, Adam's moments) and of its history."""
    parting = [(row, j) for row, m in enumerate(active) for j in riders[m]
               if progresses[m].done(step) or progresses[j].scale(step + 1) != progresses[m].scale(step + 1)]
    if not parting:
        return active, optimiser
    for row, j in parting:
        m = active[row]
        riders[m].remove(j)
        riders[j] = []
        results[j].history = copy.deepcopy(results[m].history)
    rows = list(range(len(active))) + [row for row, _ in parting]
    return active + [j for _, j in parting], keep_rows(module, rows, optimiser)


def _stacked_step(module, optimiser, x, scales) -> torch.Tensor:
    """One step of a stack; models in their decay phase move by their scale of Adam's update."""
    if all(s == 1.0 for s in scales):
        return training_step(module, optimiser, x)
    param = next(module.parameters())
    return training_step(module, optimiser, x, update_scale=torch.tensor(scales, dtype=param.dtype, device=param.device))


def _sync(pending, progresses) -> None:
    """Move the losses since the last sync to the CPU (one device sync) and check them."""
    values = torch.cat([losses.reshape(-1) for _, losses in pending]).double().cpu().tolist()
    position = 0
    for rows, losses in pending:
        for row in rows:  # a row's loss is that of every model on it (a riding fork's too)
            for m in row:
                progresses[m].losses.append(values[position])
            position += 1
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is not None:
        step = len(progresses[pending[-1][0][0][0]].losses)
        raise TrainingDiverged(f"training loss became {bad} by step {step}")


@torch.no_grad()
def _run_callbacks(module, models, active, datasets, results, callbacks, step, stacked) -> None:
    if stacked:
        unstack(module, [models[m] for m in active], list(range(len(active))))
    for m in active:
        models[m].eval()
        for name, fn in callbacks.items():
            results[m].history[name].append(fn(models[m], datasets[m], step))
        models[m].train()


def _finish(module, models, active, finished, optimiser, stacked):
    """Copy finished models out of the stack and drop them from it."""
    rows = [active.index(m) for m in finished]
    if not stacked:
        return [m for m in active if m not in finished], optimiser
    unstack(module, [models[m] for m in finished], rows)
    keep = [i for i, m in enumerate(active) if m not in finished]
    remaining = [active[i] for i in keep]
    if remaining:
        optimiser = keep_rows(module, keep, optimiser)
    return remaining, optimiser


class ModelCache:
    """Trained weights and training history on disk, keyed by the model's content hash."""

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pt"

    def holds(self, key: str) -> bool:
        return self.directory is not None and self._path(key).exists()

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
            train_seconds=blob["train_seconds"],
            from_cache=True,
            step_losses=blob["step_losses"],
            plateau_step=blob["plateau_step"],
            cap=blob["cap"],
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
                "train_seconds": trained.train_seconds,
                "step_losses": trained.step_losses,
                "plateau_step": trained.plateau_step,
                "cap": trained.cap,
            },
            tmp,
        )
        tmp.replace(self._path(key))
