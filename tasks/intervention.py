"""Task 4, `intervention`: are single-latent edits linearly predictable, and is their strength
stable during training (Tensor-SAE's "R² ≈ 0.93" and "stabilises intervention strength")?

Setting (fixed, so every variant sees the same edits): the first 64 test images; the 16 latents
most frequently non-zero on those 64 images; s_k = the mean |activation| of latent k over the
entries where it is non-zero (for ReLU codes, the mean non-zero activation; the absolute value
keeps signed codes such as MP-SAE's from cancelling to an edit of size ~0). Latents are chosen
on those 64 images, not the whole test split, so that the per-epoch measurement below can
afford the same rule.

For α in {±0.5, ±1, ±1.5, ±2}: actual Δ = clamp01(decode(z + α s_k e_k)) − clamp01(decode(z)),
predicted Δ̂ = α·(decode(z + s_k e_k) − decode(z)). A negative α may push a code below zero: that
is the edit, and it is kept.

- `r2_pixel`: pooled R² of Δ̂ against Δ, 1 − Σ(Δ − Δ̂)² / Σ(Δ − Δ̄)², every pixel of every
  (image, latent, α) pooled, Δ̄ the single grand mean of all those Δ values.
- `r2_color`: the same on the per-image mean-colour shift (C numbers per edit).
For an affine decoder Δ̂ equals the unclamped Δ exactly, so R² < 1 there comes only from
clamp01 (edited pixels pushed out of [0, 1]); for a nonlinear decoder (e.g. `conv`) it also
measures the decoder's curvature along the latent.
- `strength_cv`: the intervention strength S = mean over (image, latent) of
  ‖clamp01(decode(z + s_k e_k)) − clamp01(decode(z))‖₂, the L2 norm over all pixels of the
  change made by one typical activation of the latent (the α = 1 edit: "per unit edit"), is
  measured after every training epoch on a cheaper fixed subset: the first 16 of the 64 images,
  the 16 latents chosen on the 64 at that epoch. `strength_cv` = std / mean (population std)
  of S over the second half of training, epochs ⌊E/2⌋+1..E; it needs at least two epochs there,
  so it is left out when training ran fewer than 3 epochs (or when, at some epoch of that half,
  no latent fired on the 64 images, so S had no value).

Cost: every edit is one decode of one image, and decoders are treated as black boxes, so the
task costs 64·(16·8 + 1) image decodes per model (the unit edit is the α = 1 edit), batched
into one decoder call per latent; the per-epoch strength costs 16·(16 + 1) plus 64 encodes.
"""
import json
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from benchmark.registry import TASKS  # noqa: E402
from benchmark.task import Task  # noqa: E402

from tasks._activity import artifact_file, firing_order, saved_cells  # noqa: E402
from tasks._common import encode_all  # noqa: E402

N_IMAGES = 64
N_LATENTS = 16
ALPHAS = (-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0)
CALLBACK_IMAGES = 16
ARTIFACT_SUFFIX = ".json"


class PooledR2:
    """R² of predictions against targets pooled over everything added, accumulated in float64
    so that the edits of one latent at a time never have to be held together."""

    def __init__(self):
        self.n = 0
        self.sum = 0.0
        self.sum_sq = 0.0
        self.sse = 0.0

    def add(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        wide = torch.float64  # sums in float64: the total variance is a difference of two sums
        self.n += target.numel()
        self.sum += float(target.sum(dtype=wide))
        self.sum_sq += float(target.square().sum(dtype=wide))
        self.sse += float((target - prediction).square().sum(dtype=wide))

    def value(self) -> float:
        total = self.sum_sq - self.sum**2 / self.n  # Σ(y − ȳ)², ȳ the grand mean
        return 1.0 - self.sse / total if total > 0 else float("nan")


def clamp01(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0)


@torch.no_grad()
def edit_effects(decode, codes: torch.Tensor, latent: int, scale: float, alphas,
                 clamp: bool = True, base: torch.Tensor | None = None):
    """(actual Δ, predicted Δ̂), each (len(alphas), N, *image_shape), for edits of `latent` by
    α·scale on every row of `codes`. `base` = decode(codes) when the caller has it already;
    `clamp=False` drops clamp01 (used by tests)."""
    fix = clamp01 if clamp else (lambda x: x)  # noqa: E731
    base = decode(codes) if base is None else base
    multipliers = sorted(set(alphas) | {1.0})  # α = 1 is also the unit edit: decoded once
    decoded = dict(zip(multipliers, decode_edits(decode, codes, [latent], [scale], multipliers)[0]))
    step = decoded[1.0] - base  # the prediction is this unit step scaled by α
    actual = torch.stack([fix(decoded[a]) - fix(base) for a in alphas])
    predicted = torch.stack([a * step for a in alphas])
    return actual, predicted


@torch.no_grad()
def decode_edits(decode, codes: torch.Tensor, latents, scales, multipliers) -> torch.Tensor:
    """decode(z + m·s_k·e_k) for every latent k, multiplier m and row z, as one batch (one
    decoder call, not one per edit): shape (len(latents), len(multipliers), N, *image_shape)."""
    n, n_latents, n_mult = codes.shape[0], len(latents), len(multipliers)
    as_tensor = lambda values: torch.tensor(values, dtype=codes.dtype, device=codes.device)  # noqa: E731
    shifts = as_tensor(scales)[:, None] * as_tensor(multipliers)[None, :]  # (L, M)
    edited = codes.repeat(n_latents * n_mult, 1)  # rows ordered (latent, multiplier, image)
    rows = torch.arange(edited.shape[0], device=codes.device)
    columns = torch.tensor(latents, device=codes.device).repeat_interleave(n_mult * n)
    edited[rows, columns] += shifts.flatten().repeat_interleave(n)
    out = decode(edited)
    return out.view(n_latents, n_mult, n, *out.shape[1:])


@torch.no_grad()
def unit_edit_strength(decode, codes: torch.Tensor, latents, scales) -> float:
    """S: mean over (image, latent) of ‖clamp01(decode(z + s_k e_k)) − clamp01(decode(z))‖₂."""
    base = clamp01(decode(codes))
    edited = clamp01(decode_edits(decode, codes, latents, scales, [1.0])[:, 0])  # (L, N, ...)
    return float((edited - base).flatten(2).norm(dim=2).mean())


def strength_cv(trace: list[float]) -> float | None:
    """std / mean (population std) of the second half of a per-epoch trace, epochs ⌊E/2⌋+1..E;
    None when that half has fewer than two values, or a NaN (an epoch where no latent fired)."""
    half = torch.tensor(trace[len(trace) // 2 :], dtype=torch.float64)
    if half.numel() < 2 or not bool(half.isfinite().all()):
        return None
    return float(half.std(correction=0) / half.mean())


@torch.no_grad()
def chosen_latents(model, images, concepts):
    """Codes of `images`, the (up to) N_LATENTS latents most often non-zero on them, and each
    one's mean |activation| where non-zero."""
    codes = encode_all(model, images, concepts)
    counts, order = firing_order(codes)
    latents = [k for k in order[:N_LATENTS].tolist() if counts[k] > 0]
    scales = [float(codes[:, k].abs().sum() / counts[k]) for k in latents]
    return codes, latents, scales


def _first_images(dataset, n):
    concepts = None if dataset.test_concepts is None else dataset.test_concepts[:n]
    return dataset.test[:n], concepts


@TASKS.register("intervention")
class Intervention(Task):
    description = "Linearity of single-latent edits (R² of α-scaled unit edits) and stability of edit strength over training"
    metrics = {"r2_pixel": True, "r2_color": True, "strength_cv": False}
    headline = "r2_pixel"

    def dataset_skip_reason(self, dataset):
        if not dataset.is_image:
            shape = "x".join(map(str, dataset.input_shape))
            return f"intervention needs images in [0, 1] (C×H×W); {dataset.name} holds {shape} vectors"
        return None

    @torch.no_grad()
    def epoch_callback(self, model, dataset, epoch):
        if not dataset.is_image:
            return {}
        images, concepts = _first_images(dataset, N_IMAGES)
        codes, latents, scales = chosen_latents(model, images, concepts)
        if not latents:
            return {"strength": float("nan")}
        return {"strength": unit_edit_strength(model.decode, codes[:CALLBACK_IMAGES], latents, scales)}

    @torch.no_grad()
    def evaluate(self, trained, dataset, config):
        model = trained.model
        images, concepts = _first_images(dataset, N_IMAGES)
        codes, latents, scales = chosen_latents(model, images, concepts)
        if not latents:
            raise ValueError(f"no latent is non-zero on the first {len(images)} test images")
        pixel, colour = PooledR2(), PooledR2()
        base = model.decode(codes)
        for k, s in zip(latents, scales):
            actual, predicted = edit_effects(model.decode, codes, k, s, ALPHAS, base=base)
            pixel.add(actual, predicted)
            colour.add(actual.mean((-2, -1)), predicted.mean((-2, -1)))
        metrics = {"r2_pixel": pixel.value(), "r2_color": colour.value()}
        trace = [entry["strength"] for entry in trained.history.get(self.name, [])]
        cv = strength_cv(trace) if trace else None
        if cv is not None:
            metrics["strength_cv"] = cv
        self._save_trace(config, dataset.name, trace)
        return metrics

    def _save_trace(self, config, dataset_name, trace):
        path = artifact_file(config, self.name, dataset_name, ARTIFACT_SUFFIX)
        if path is not None and trace:
            path.write_text(json.dumps({"strength": trace}))

    def plots(self, results, plot_dir):
        rows = results[(results["task"] == self.name) & (results["status"] == "ok")]
        figures = []
        for dataset_name, variants in sorted(saved_cells(plot_dir, self.name, ARTIFACT_SUFFIX).items()):
            scored = set(rows.loc[rows["dataset"] == dataset_name, "variant"])
            shown = {v: seeds for v, seeds in variants.items() if v in scored}
            if shown:
                path = Path(plot_dir) / f"intervention_strength_{dataset_name}.png"
                self._strength_figure(dataset_name, shown, path)
                figures.append((f"Intervention strength during training on {dataset_name}", path))
        return figures

    @staticmethod
    def _strength_figure(dataset_name, variants, path):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for variant, seeds in sorted(variants.items()):
            traces = [json.loads(p.read_text())["strength"] for p in seeds.values()]
            length = min(len(t) for t in traces)
            mean = torch.tensor([t[:length] for t in traces], dtype=torch.float64).mean(0)
            ax.plot(range(1, length + 1), mean.numpy(), marker="o", markersize=3, label=variant)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("strength: mean ‖Δ‖₂ of a unit edit")
        ax.set_yscale("log")
        ax.set_title(f"Intervention strength after each epoch, {dataset_name} (mean over seeds)", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
