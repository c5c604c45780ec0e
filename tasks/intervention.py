"""Task 4, `intervention`: can a variant make a requested colour edit with a few latent edits
(Tensor-SAE's "controllable colour edits"), and is the strength of its edits stable during
training?

Requests (SPEC 5, task 4): Δ* = δ·(colour ⊗ window), δ = DELTA = 0.1, colour ∈ {R, G, B, grey}
as unit vectors (grey = (1,1,1)/√3, so every request has the same energy; single-channel data
has the one grey colour), windows the `windows_per_side`² tiles of the image (task setting,
default 2: 16 requests on RGB). The variant realises a request with m latent edits: orthogonal
matching pursuit (scikit-learn's `orthogonal_mp`) of the request over its alive atoms (`atoms()`
of latents non-zero on at least one test sample, zero atoms dropped), coefficients c by least
squares on the chosen atoms (OMP's own), both in the model's metric (below). The same edit is
applied to the codes of the first N_IMAGES = 64 test images (the first 64 at evaluation seed 0,
else 64 drawn by the evaluation seed): x' = clamp01(decode(z + Σ c_j e_j)), achieved
Δ = x' − clamp01(decode(z)), always in pixels.
- The model's metric: the space the SAE was trained in. On whitened data (`whitened_patches`) a
  pixel change Δ is the whitened change Δ·W (x_w = (x − μ)W), so the request OMP fits is Δ*·W
  and an edit's error (Δ − Δ*) counts as ‖(Δ − Δ*)W‖²: every direction of the data weighs per
  unit of its own spread, as in the SAE's training loss. Elsewhere W = I: pixels.
- `edit_r2` (headline, m = 4) and `edit_r2_m1` (m = 1): pooled R² of achieved against requested
  in the model's metric, 1 − Σ‖(Δ − Δ*)W‖² / Σ‖Δ*W‖², every (request, image) pooled. The
  baseline is the zero edit, not the requests' grand mean: a request's mean is part of what was
  asked (centring would give "change nothing" a negative score that depends on the window size
  and colour: −0.13 on 8×8 RGB with 4 windows). 1: the edits do exactly what was asked; 0:
  nothing of it; < 0: worse than not editing. A dictionary that holds the request atoms scores
  1 at m = 1; a random dictionary of K unit atoms in D dimensions captures about m·2·ln(K)/D of
  a request's energy (linear decoder, no clamping), so little when D is large. Clamping caps it
  below 1 on images with pixels near 0 or 1 (the same cap for every variant). For a nonlinear
  decoder the impulse-response atoms need not predict an edit made at an image's code: its
  score can be negative (ConvAE).
- `edit_r2_pixel` (m = 4, secondary): revision 2's headline, atoms chosen and edits scored in
  pixels; equal to `edit_r2` on data without a whitening. Why it is no longer the headline on
  whitened data: W⁻¹ = Σ^½ stretches the smooth, large-variance components that window-sized
  requests are made of, so any atom (random, untrained) becomes a smooth picture in pixels that
  fits them part-way: measured on whitened8, random-dict 0.55 and untrained twins 0.55 against
  0.58–0.72 for trained variants; an external tied ReLU SAE scored 0.533 trained, 0.532 at a
  learning rate of 1e-12. In the whitened metric a window's edges and colour balance count as
  much as its mean, and a random dictionary realises little of them (the m·2·ln(K)/D above).
- `off_target_frac` (m = 4, the headline's edits): Σ of the achieved change's pixel energy
  outside the request's window / its total energy, pooled over requests and images (energies
  summed before dividing, so an edit that achieves almost nothing weighs almost nothing). 0:
  nothing leaks.
- `alpha_linearity_r2`: revision 1's `r2_pixel`, kept as a diagnostic only. For the 16 latents
  most often non-zero on the 64 images, edits α·s_k·e_k (s_k the mean non-zero |activation|,
  α ∈ ALPHAS); pooled R² of the clamped change against α times the α = 1 change. For an
  affine decoder it is exactly 1 before clamping, so it measures only saturation (and a
  nonlinear decoder's curvature): it separates nothing the Tensor-SAE paper claims.
- `strength_cv`: the unit-edit strength S = mean over (image, latent) of
  ‖clamp01(decode(z + s_k e_k)) − clamp01(decode(z))‖₂ (16 images, those 16 latents) measured
  at every convergence check of training (every `check_every` steps); std / mean (population std)
  of S over checks ⌊E/2⌋+1..E. Left out when fewer than 2 checks are in that half, or for models
  that were not trained (controls).

Cost per model: one encode of the test split (alive atoms), OMP of 16 requests over ≤ K atoms
(three times on whitened data, twice elsewhere), 3·16·64 + 16·64·8 + 1·64 image decodes in a
handful of batched decoder calls.
"""
import warnings
from pathlib import Path

import matplotlib
import torch
from sklearn.linear_model import orthogonal_mp

matplotlib.use("Agg")  # no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from benchmark.datasets.whitened_patches import is_whitened, pixel_map  # noqa: E402
from benchmark.registry import TASKS  # noqa: E402
from benchmark.task import NotScorable, Task  # noqa: E402

from tasks._activity import artifact_file, firing_order  # noqa: E402
from tasks._common import encode_all  # noqa: E402
from tasks.atom_entropy import cell_label, headline_artifacts  # noqa: E402

DELTA = 0.1
N_IMAGES = 64
EDIT_ATOMS = (1, 4)  # m: latent edits per request; the headline uses the largest
WINDOWS_PER_SIDE = 2
N_LATENTS = 16  # alpha_linearity_r2 and strength: the most frequently active latents
ALPHAS = (-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0)
CALLBACK_IMAGES = 16
ARTIFACT_SUFFIX = ".pt"
COLOURS = {"R": (1.0, 0.0, 0.0), "G": (0.0, 1.0, 0.0), "B": (0.0, 0.0, 1.0), "grey": (1.0, 1.0, 1.0)}


class PooledR2:
    """R² of predictions against targets pooled over everything added, accumulated in float64
    so that the edits of one latent at a time never have to be held together. `centred=False`
    measures against the zero prediction instead of the grand mean: 1 − SSE / Σ y²."""

    def __init__(self, centred: bool = True):
        self.centred = centred
        self.n = 0
        self.sum = 0.0
        self.sum_sq = 0.0
        self.sse = 0.0

    def add(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        wide = torch.float64  # sums in float64: the total variance is a difference of two sums
        target = target.expand_as(prediction)
        self.n += target.numel()
        self.sum += float(target.sum(dtype=wide))
        self.sum_sq += float(target.square().sum(dtype=wide))
        self.sse += float((target - prediction).square().sum(dtype=wide))

    def value(self) -> float:
        total = self.sum_sq - (self.sum**2 / self.n if self.centred else 0.0)  # Σ(y − ȳ)² or Σ y²
        return 1.0 - self.sse / total if total > 0 else float("nan")


def clamp01(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0.0, 1.0)


# ----- requests -----
def window_masks(height: int, width: int, per_side: int) -> torch.Tensor:
    """(per_side², H, W) bool: tiles covering the image once (near-equal sizes when H or W is
    not a multiple of per_side), row-major."""
    rows = torch.arange(height).tensor_split(per_side)
    cols = torch.arange(width).tensor_split(per_side)
    masks = torch.zeros(per_side * per_side, height, width, dtype=torch.bool)
    for i, (r, c) in enumerate((r, c) for r in rows for c in cols):
        masks[i, r[:, None], c[None, :]] = True
    return masks


def colour_directions(channels: int) -> dict[str, torch.Tensor]:
    """Unit colour vectors: R, G, B and grey for RGB, the one grey for single-channel data."""
    if channels == 1:
        return {"grey": torch.ones(1)}
    if channels != 3:
        raise ValueError(f"intervention knows colours for 1 or 3 channels, not {channels}")
    return {name: torch.tensor(rgb) / torch.tensor(rgb).norm() for name, rgb in COLOURS.items()}


def edit_requests(shape, per_side: int = WINDOWS_PER_SIDE, delta: float = DELTA):
    """(requests (R, C, H, W), windows (R, H, W) bool, names): δ·colour ⊗ window, colours
    outer, windows inner."""
    channels, height, width = shape
    masks = window_masks(height, width, per_side)
    requests, windows, names = [], [], []
    for name, colour in colour_directions(channels).items():
        for w, mask in enumerate(masks):
            requests.append(delta * colour[:, None, None] * mask.float())
            windows.append(mask)
            names.append(f"{name}@{w}")
    return torch.stack(requests), torch.stack(windows), names


# ----- realising requests -----
def pursuit_coefficients(requests: torch.Tensor, atoms: torch.Tensor, m: int) -> torch.Tensor:
    """(R, A) coefficients of the m atoms (rows of `atoms`, (A, D), non-zero) that orthogonal
    matching pursuit picks for each request (rows of `requests`, (R, D)), least-squares
    coefficients on the picked atoms; at most m non-zeros per row."""
    norms = atoms.double().norm(dim=1)
    unit = (atoms.double() / norms[:, None]).cpu().numpy()  # OMP assumes unit-norm columns
    targets = requests.double().cpu().numpy()
    with warnings.catch_warnings():  # an exact fit before m atoms stops early: fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        coef = orthogonal_mp(unit.T, targets.T, n_nonzero_coefs=min(m, unit.shape[0]))
    coef = torch.as_tensor(coef).reshape(unit.shape[0], -1).T  # (R, A)
    return (coef / norms.cpu()[None, :]).to(atoms.dtype)


def usable_atoms(model, alive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, atoms (A, D) in the model's own space): the alive latents whose atom is not
    zero (a whitening is invertible: an atom is zero in pixels exactly when it is zero here)."""
    atoms = model.atoms().float().flatten(1)
    usable = alive.to(atoms.device) & (atoms.abs().sum(1) > 0)
    return usable.nonzero().flatten(), atoms[usable]


def model_metric(dataset):
    """The map from a pixel-space change (N, C, H, W) to the space the model works in, flattened
    (N, D): Δ·W on whitened data (the whitened change: x_w = (x − μ)W), else Δ itself."""
    if not is_whitened(dataset):
        return lambda change: change.flatten(1)
    whitening = dataset.truth["whitening"]
    return lambda change: change.flatten(1) @ whitening.to(change.device, change.dtype)


def edit_r2(requests: torch.Tensor, achieved: torch.Tensor, to_metric=lambda change: change.flatten(1)) -> float:
    """Pooled, uncentred R² of the achieved edits (R, N, C, H, W) against the requests
    (R, C, H, W), both measured through `to_metric` (pixels by default)."""
    r2 = PooledR2(centred=False)
    r2.add(to_metric(requests)[:, None], to_metric(achieved.flatten(0, 1)).view(*achieved.shape[:2], -1))
    return r2.value()


@torch.no_grad()
def achieved_edits(decode_pixels, codes: torch.Tensor, latents: torch.Tensor,
                   coefficients: torch.Tensor) -> torch.Tensor:
    """(R, N, C, H, W): clamp01(decode(z + Σ c_j e_j)) − clamp01(decode(z)) for every request's
    coefficients (R, A) over `latents` and every row z of `codes`, in one decoder call."""
    n_requests, n = coefficients.shape[0], codes.shape[0]
    shifts = codes.new_zeros(n_requests, codes.shape[1])
    shifts[:, latents] = coefficients.to(codes.dtype).to(codes.device)
    edited = (codes[None] + shifts[:, None]).flatten(0, 1)  # rows ordered (request, image)
    base = clamp01(decode_pixels(codes))
    out = clamp01(decode_pixels(edited))
    return out.view(n_requests, n, *out.shape[1:]) - base[None]


def off_target_fraction(achieved: torch.Tensor, windows: torch.Tensor) -> float | None:
    """Share of the achieved edits' energy outside their windows (R, H, W), pooled; None when
    nothing changed at all."""
    energy = achieved.double().square().sum(2)  # (R, N, H, W): summed over channels
    total = float(energy.sum())
    if total == 0:
        return None
    outside = energy * (~windows.to(energy.device))[:, None]
    return float(outside.sum()) / total


# ----- the alpha-linearity diagnostic and the strength trace (revision 1) -----
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
def edit_effects(decode, codes: torch.Tensor, latent: int, scale: float, alphas,
                 clamp: bool = True, base: torch.Tensor | None = None):
    """(actual Δ, predicted Δ̂), each (len(alphas), N, *image_shape), for edits of `latent` by
    α·scale on every row of `codes`; Δ̂ = α·(decode(z + scale·e_k) − decode(z)). `base` =
    decode(codes) when the caller has it already; `clamp=False` drops clamp01 (used by tests)."""
    fix = clamp01 if clamp else (lambda x: x)  # noqa: E731
    base = decode(codes) if base is None else base
    multipliers = sorted(set(alphas) | {1.0})  # α = 1 is also the unit edit: decoded once
    decoded = dict(zip(multipliers, decode_edits(decode, codes, [latent], [scale], multipliers)[0]))
    step = decoded[1.0] - base
    actual = torch.stack([fix(decoded[a]) - fix(base) for a in alphas])
    predicted = torch.stack([a * step for a in alphas])
    return actual, predicted


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
def chosen_latents(codes: torch.Tensor):
    """The (up to) N_LATENTS latents most often non-zero in `codes`, and each one's mean
    |activation| where non-zero."""
    counts, order = firing_order(codes)
    latents = [k for k in order[:N_LATENTS].tolist() if counts[k] > 0]
    scales = [float(codes[:, k].abs().sum() / counts[k]) for k in latents]
    return latents, scales


def alpha_linearity_r2(decode_pixels, codes: torch.Tensor) -> float:
    latents, scales = chosen_latents(codes)
    r2 = PooledR2()
    base = decode_pixels(codes)
    for k, s in zip(latents, scales):
        actual, predicted = edit_effects(decode_pixels, codes, k, s, ALPHAS, base=base)
        r2.add(actual, predicted)
    return r2.value()


def _first_images(dataset, n):
    concepts = None if dataset.test_concepts is None else dataset.test_concepts[:n]
    return dataset.test[:n], concepts


def evaluation_images(dataset, n: int, eval_seed: int):
    """The n test images to edit: the first n at evaluation seed 0 (the task's canonical draw),
    else n drawn without replacement by a generator seeded with the evaluation seed."""
    if eval_seed == 0:
        return _first_images(dataset, n)
    chosen = torch.randperm(dataset.test.shape[0], generator=torch.Generator().manual_seed(eval_seed))[:n]
    chosen = chosen.to(dataset.test.device)
    concepts = None if dataset.test_concepts is None else dataset.test_concepts[chosen]
    return dataset.test[chosen], concepts


def pixel_decoder(model, dataset):
    """decode, then (whitened data) the inverse whitening: the model's output in pixels."""
    to_pixels = pixel_map(dataset)
    return lambda codes: to_pixels(model.decode(codes))


@TASKS.register("intervention")
class Intervention(Task):
    description = "Colour-window edit requests realised by 1 or 4 latent edits (OMP on the atoms): R² of achieved against requested"
    metrics = {"edit_r2": True, "edit_r2_m1": True, "off_target_frac": False, "edit_r2_pixel": True,
               "alpha_linearity_r2": True, "strength_cv": False}
    headline = "edit_r2"
    eval_seeded = True  # which test images are edited

    def dataset_skip_reason(self, dataset):
        if not dataset.is_image:
            shape = "x".join(map(str, dataset.input_shape))
            return f"intervention needs images (C×H×W); {dataset.name} holds {shape} vectors"
        return None

    @torch.no_grad()
    def epoch_callback(self, model, dataset, epoch):
        if not dataset.is_image:
            return {}
        images, concepts = _first_images(dataset, N_IMAGES)
        codes = encode_all(model, images, concepts)
        latents, scales = chosen_latents(codes)
        if not latents:
            return {"strength": float("nan")}
        decode = pixel_decoder(model, dataset)
        return {"strength": unit_edit_strength(decode, codes[:CALLBACK_IMAGES], latents, scales)}

    @torch.no_grad()
    def evaluate(self, trained, dataset, config):
        model = trained.model
        decode = pixel_decoder(model, dataset)
        to_model = model_metric(dataset)
        alive = (encode_all(model, dataset.test, dataset.test_concepts) != 0).any(0)
        latents, atoms = usable_atoms(model, alive)
        if latents.numel() == 0:
            raise NotScorable("no alive atoms: every latent is zero on the whole test split")
        eval_seed = int(config.get("eval_seed", 0))
        images, concepts = evaluation_images(dataset, N_IMAGES, eval_seed)
        codes = encode_all(model, images, concepts)
        requests, windows, names = edit_requests(dataset.input_shape, config.get("windows_per_side", WINDOWS_PER_SIDE))
        requests = requests.to(atoms.device)
        metrics, achieved = {}, {}
        for m in EDIT_ATOMS:  # the headline: atoms chosen and edits scored in the model's metric
            coefficients = pursuit_coefficients(to_model(requests), atoms, m)
            achieved[m] = achieved_edits(decode, codes, latents, coefficients)
            metrics["edit_r2" if m == max(EDIT_ATOMS) else f"edit_r2_m{m}"] = edit_r2(requests, achieved[m], to_model)
        off_target = off_target_fraction(achieved[max(EDIT_ATOMS)], windows)
        if off_target is not None:
            metrics["off_target_frac"] = off_target
        metrics["edit_r2_pixel"] = self._pixel_edit_r2(dataset, decode, codes, latents, atoms, requests,
                                                       achieved[max(EDIT_ATOMS)])
        metrics["alpha_linearity_r2"] = alpha_linearity_r2(decode, codes)
        trace = [entry["strength"] for entry in trained.history.get(self.name, [])]
        cv = strength_cv(trace) if trace else None
        if cv is not None:
            metrics["strength_cv"] = cv
        if eval_seed == 0:  # the gallery shows the canonical draw
            self._save(config, dataset.name, trace, requests, achieved[max(EDIT_ATOMS)], names, metrics)
        return metrics

    @staticmethod
    def _pixel_edit_r2(dataset, decode, codes, latents, atoms, requests, headline_edits) -> float:
        """Revision 2's headline: atoms chosen and edits scored in pixels. On data without a
        whitening the two metrics coincide, and so do the edits."""
        if not is_whitened(dataset):
            return edit_r2(requests, headline_edits)
        pixel_atoms = pixel_map(dataset)(atoms.view(-1, *dataset.input_shape), shift=False).flatten(1)
        coefficients = pursuit_coefficients(requests.flatten(1), pixel_atoms, max(EDIT_ATOMS))
        return edit_r2(requests, achieved_edits(decode, codes, latents, coefficients))

    def _save(self, config, dataset_name, trace, requests, achieved, names, metrics):
        path = artifact_file(config, self.name, dataset_name, ARTIFACT_SUFFIX)
        if path is not None:  # the mean achieved edit per request: what the edit gallery shows
            torch.save({"label": cell_label(config), "strength": trace, "names": names,
                        "requested": requests.cpu().half(), "achieved": achieved.mean(1).cpu().half(),
                        "edit_r2": metrics["edit_r2"]}, path)

    def plots(self, results, plot_dir):
        read_label = lambda path: torch.load(path)["label"]  # noqa: E731
        figures = []
        for dataset_name, shown in headline_artifacts(results, plot_dir, self.name, ARTIFACT_SUFFIX, read_label).items():
            saved = {variant: torch.load(path) for variant, path in shown.items()}
            path = Path(plot_dir) / f"intervention_edits_{dataset_name}.png"
            self._edit_figure(dataset_name, saved, path)
            figures.append((f"Requested and achieved colour edits on {dataset_name} (m = {max(EDIT_ATOMS)} latent "
                            "edits, mean over the 64 images; one model per variant)", path))
            traced = {variant: blob for variant, blob in saved.items() if len(blob["strength"]) > 0}
            if traced:
                path = Path(plot_dir) / f"intervention_strength_{dataset_name}.png"
                self._strength_figure(dataset_name, traced, path)
                figures.append((f"Intervention strength during training on {dataset_name}", path))
        return figures

    @staticmethod
    def _edit_figure(dataset_name, saved, path):
        from torchvision.utils import make_grid  # lazily: importing torchvision costs seconds

        first = next(iter(saved.values()))
        rows = {"requested": first["requested"].float(), **{v: b["achieved"].float() for v, b in saved.items()}}
        zoom = max(1, 32 // first["requested"].shape[-1])
        fig, axes = plt.subplots(len(rows), 1, squeeze=False, figsize=(8, 0.62 * len(rows) + 0.4))
        for ax, (label, edits) in zip(axes[:, 0], rows.items()):
            shown = (0.5 + 0.5 * edits / DELTA).clamp(0, 1)  # zero change = mid-grey, +δ = full
            shown = shown.repeat_interleave(zoom, -1).repeat_interleave(zoom, -2)
            grid = make_grid(shown, nrow=len(shown), padding=1, pad_value=1.0)
            ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
            score = "" if label == "requested" else f": edit R² {saved[label]['edit_r2']:.3f}"
            setting = saved.get(label, {}).get("label", {}).get("setting")
            ax.set_title(f"{label}{f', {setting}' if setting else ''}{score}", fontsize=8, loc="left")
            ax.axis("off")
        fig.suptitle(f"Colour edits on {dataset_name}: {', '.join(first['names'])}", fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    @staticmethod
    def _strength_figure(dataset_name, saved, path):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for variant, blob in sorted(saved.items()):
            trace = blob["strength"]
            ax.plot(range(1, len(trace) + 1), trace, marker="o", markersize=3, label=variant)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("convergence check")
        ax.set_ylabel("strength: mean ‖Δ‖₂ of a unit edit")
        ax.set_yscale("log")
        ax.set_title(f"Intervention strength at each convergence check, {dataset_name} (one seed per variant)", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
