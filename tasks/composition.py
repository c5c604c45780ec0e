"""Task 6, `composition`: reconstruct images of concept tuples never seen in training.

Unsupervised variants compose in code space. With c_v the mean code of the training images
whose factor i has value v, z̄ the mean training code and m the number of factors, a held-out
tuple (v_1..v_m) gets ẑ = Σ_i c_{v_i} − (m − 1)·z̄ and x̂ = decode(ẑ): the main-effects
(additive) model of the codes, which is exact when codes are additive in the concepts and the
training tuples are balanced (pairwise independent factors). Through an affine decoder,
decode(ẑ) is exactly that arithmetic applied to the model's reconstructions, so such SAEs score
close to `additive-pixels`, minus their reconstruction error. Variants that take concept
labels (`supervised`) encode the held-out labels themselves. Reference rows, no SAE:
`additive-pixels` (the same arithmetic on pixels) and `ridge-mask` (ridge regression from the
one-hot concept mask to pixels; exact on additive data even when unbalanced).

Metrics on the held-out test images: `heldout_r2` = 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the
per-dimension held-out mean; sklearn's r2_score with multioutput="variance_weighted"),
`heldout_psnr_db` = 10·log10(1 / pooled MSE) (peak 1, x̂ not clipped), `heldout_cos` = mean
cosine between flattened x̂ and x.

Task config keys: `ridge_alpha` (default 1.0), `n_plot_samples` (held-out images per row of
the figure, default 8); the runner adds `artifact_dir`, `model_name` and `seed`.
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.linear_model import Ridge

from benchmark.data import Dataset
from benchmark.registry import TASKS
from benchmark.task import Task
from benchmark.training import TrainedModel
from benchmark.variant import encode_batch

from tasks._common import pooled_r2, psnr_db

CHUNK = 1024  # samples per encode/decode call: bounded memory on large dictionaries
REFERENCES = ("additive-pixels", "ridge-mask")


# ----- metrics -----
def heldout_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    x, x_hat = x.flatten(1).double(), x_hat.flatten(1).double()
    return {
        "heldout_r2": pooled_r2(x, x_hat),
        "heldout_psnr_db": psnr_db(float((x - x_hat).pow(2).mean())),
        "heldout_cos": float(F.cosine_similarity(x_hat, x, dim=1).mean()),
    }


# ----- composition -----
def compose(train_codes: torch.Tensor, train_concepts: torch.Tensor, concepts: torch.Tensor,
            factor_sizes: tuple[int, ...]) -> torch.Tensor:
    """ẑ = Σ_i c_{v_i} − (m − 1)·z̄ for each row of `concepts`; codes (N, K) of `train_concepts`."""
    mean = train_codes.mean(0)
    composed = -(len(factor_sizes) - 1) * mean.expand(len(concepts), -1)
    for factor, n_values in enumerate(factor_sizes):
        one_hot = F.one_hot(train_concepts[:, factor], n_values).to(train_codes.dtype)
        counts = one_hot.sum(0)
        if bool((counts == 0).any()):
            raise ValueError(f"factor {factor} has values never seen in training: cannot compose them")
        value_means = (one_hot.t() @ train_codes) / counts[:, None]  # c_v for every value v
        composed = composed + value_means[concepts[:, factor]]
    return composed


@torch.no_grad()
def composed_images(model, dataset: Dataset) -> torch.Tensor:
    """x̂ for every held-out test tuple."""
    if "concepts" in model.requires:  # the model decodes concept labels itself
        codes = torch.cat([
            encode_batch(model, dataset.test[i : i + CHUNK], dataset.test_concepts[i : i + CHUNK])
            for i in range(0, len(dataset.test), CHUNK)
        ])
    else:
        train_codes = torch.cat([
            encode_batch(model, dataset.train[i : i + CHUNK]) for i in range(0, len(dataset.train), CHUNK)
        ])
        codes = compose(train_codes, dataset.train_concepts, dataset.test_concepts, dataset.concept_sizes())
    return torch.cat([model.decode(codes[i : i + CHUNK]) for i in range(0, len(codes), CHUNK)])


def additive_pixels(dataset: Dataset) -> torch.Tensor:
    pixels = compose(dataset.train.flatten(1), dataset.train_concepts, dataset.test_concepts,
                     dataset.concept_sizes())
    return pixels.view_as(dataset.test)


def concept_mask(concepts: torch.Tensor, factor_sizes) -> np.ndarray:
    """(N, Σ values) one-hot mask: which concept values each sample has."""
    parts = [F.one_hot(concepts[:, f], n) for f, n in enumerate(factor_sizes)]
    return torch.cat(parts, dim=1).cpu().double().numpy()


def ridge_mask(dataset: Dataset, alpha: float) -> torch.Tensor:
    sizes = dataset.concept_sizes()
    ridge = Ridge(alpha=alpha).fit(concept_mask(dataset.train_concepts, sizes),
                                   dataset.train.flatten(1).cpu().double().numpy())
    pixels = ridge.predict(concept_mask(dataset.test_concepts, sizes))
    return torch.as_tensor(pixels, dtype=dataset.test.dtype, device=dataset.test.device).view_as(dataset.test)


# ----- samples for the figure -----
def _safe(name) -> str:
    """A file-name-safe form (external variants are named by paths)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def _artifact_path(directory, dataset: str, variant: str, seed) -> Path:
    return Path(directory) / f"composition__{_safe(dataset)}__{_safe(variant)}__seed{_safe(seed)}.pt"


def save_samples(config: dict, dataset: Dataset, variant: str, composed: torch.Tensor) -> None:
    """Keep a few held-out tuples, true beside composed, for `plots` (which sees no model)."""
    directory, seed = config.get("artifact_dir"), config.get("seed", 0)
    if directory is None or variant is None:
        return
    n = min(int(config.get("n_plot_samples", 8)), len(dataset.test))
    index = torch.linspace(0, len(dataset.test) - 1, n).round().long().to(dataset.test.device)
    Path(directory).mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "dataset": dataset.name, "variant": variant, "seed": seed,
            "true": dataset.test[index].cpu(), "composed": composed[index].cpu(),
            "tuples": dataset.test_concepts[index].cpu(),
        },
        _artifact_path(directory, dataset.name, variant, seed),
    )


@TASKS.register("composition")
class Composition(Task):
    description = "Reconstruct images of concept tuples never seen in training, composed from seen concepts."
    metrics = {"heldout_r2": True, "heldout_psnr_db": True, "heldout_cos": True}
    headline = "heldout_r2"

    def dataset_skip_reason(self, dataset: Dataset) -> str | None:
        if dataset.train_concepts is None or dataset.test_concepts is None:
            return f"{dataset.name} has no concept labels to compose"
        return None

    def headline_dataset(self, dataset_names: list[str]) -> str:
        held_out_tuples = [name for name in dataset_names if "tuple" in name]
        return (held_out_tuples or dataset_names)[0]

    def evaluate(self, trained: TrainedModel, dataset: Dataset, config: dict) -> dict[str, float]:
        composed = composed_images(trained.model, dataset)
        save_samples(config, dataset, config.get("model_name"), composed)
        return heldout_metrics(dataset.test, composed)

    def reference_rows(self, dataset: Dataset, config: dict, seed: int) -> dict[str, dict[str, float]]:
        composed = {
            "additive-pixels": additive_pixels(dataset),
            "ridge-mask": ridge_mask(dataset, float(config.get("ridge_alpha", 1.0))),
        }
        rows = {}
        for name, images in composed.items():
            save_samples({**config, "seed": seed}, dataset, name, images)
            rows[name] = heldout_metrics(dataset.test, images)
        return rows

    def plots(self, results: pd.DataFrame, plot_dir: Path) -> list[tuple[str, Path]]:
        """One figure per dataset: true held-out images, then each row's composed images, read
        from the samples `evaluate` saved in plot_dir/artifacts (the runner's artifact_dir)."""
        ok = results[(results.task == self.name) & (results.status == "ok")]
        figures = []
        for dataset in sorted(ok.dataset.unique()):
            scores = ok[(ok.dataset == dataset) & (ok.metric == "heldout_r2")].groupby("variant").value.mean()
            samples = _load_samples(Path(plot_dir) / "artifacts", dataset, set(scores.index))
            if samples:
                path = Path(plot_dir) / f"composition_{_safe(dataset)}.png"
                _draw(samples, scores, dataset, path)
                figures.append((f"Unseen concept tuples composed ({dataset}): true images, then each row's x̂", path))
        return figures


def _load_samples(directory: Path, dataset: str, variants: set[str]) -> dict[str, dict]:
    """The first seed's samples of every variant with results, references first."""
    samples = {}
    for path in sorted(directory.glob("composition__*.pt")):
        blob = torch.load(path)
        if blob["dataset"] != dataset or blob["variant"] not in variants:
            continue
        kept = samples.get(blob["variant"])
        if kept is None or blob["seed"] < kept["seed"]:
            samples[blob["variant"]] = blob
    order = sorted(samples, key=lambda v: (v not in REFERENCES, v != "supervised", v))
    return {v: samples[v] for v in order}


def _draw(samples: dict[str, dict], scores: pd.Series, dataset: str, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state
    from torchvision.utils import make_grid

    first = next(iter(samples.values()))
    rows = [("true", first["true"])] + [
        (f"{v} (R² {scores[v]:.2f})", blob["composed"]) for v, blob in samples.items()
    ]
    n_cols = len(first["true"])
    grid = make_grid(torch.cat([images.clamp(0, 1) for _, images in rows]), nrow=n_cols, padding=1, pad_value=1.0)
    fig = Figure(figsize=(1 + 0.6 * n_cols, 0.6 * len(rows) + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    row_height = grid.shape[1] / len(rows)
    ax.set_yticks([(i + 0.5) * row_height for i in range(len(rows))], [name for name, _ in rows], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"composition on {dataset}: held-out tuples", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
