"""Task 6, `composition`: reconstruct samples of concept tuples never seen in training, and say
how much of that is composition rather than the arithmetic every additive model shares.

Composition. Unsupervised models compose in code space with the main-effects (additive) model
of their codes, fitted by least squares on the training codes: z ≈ b + Σ_i β_{i, v_i}, and a
tuple (v_1..v_m) gets ẑ = b + Σ_i β_{i, v_i}, x̂ = decode(ẑ). On a balanced design (pairwise
independent factors) that is the means arithmetic ẑ = Σ_i c_{v_i} − (m − 1)·z̄ (c_v the mean
code of value v, z̄ the mean code); unlike the means it stays exact on additive codes when
the design is unbalanced, as any held-out set of pairs makes it. Through an affine decoder,
decode(ẑ) is exactly that fit applied to the model's reconstructions. Variants that take
concept labels (`supervised`) encode the tuple's labels themselves.

Reference rows, no SAE: `additive-pixels` (the same least-squares fit on the inputs),
`ridge-mask` (ridge regression from the one-hot concept mask to the inputs: the same model,
shrunk by `ridge_alpha`) and `memoriser` (the mean training sample of the nearest seen tuple:
fewest differing factors, ties averaged). The memoriser knows every seen tuple and composes
nothing, so it calibrates the bottom: high `seen_r2`, low `heldout_r2`.

Metrics ("inputs" are images or vectors, e.g. `prompts` embeddings):
- `heldout_r2`: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² on the held-out test samples (x̄ their
  per-dimension mean; sklearn's r2_score, multioutput="variance_weighted"). Headline.
- `seen_r2`: the same composition, for the tuples seen in training, scored on their test
  renderings (`truth["seen_test"]`, labels `truth["seen_test_concepts"]`: samples never
  trained on, of tuples that were). Omitted when the dataset has none.
- `generalization_gap` = `seen_r2` − `heldout_r2`: what is lost by never having seen the tuple.
- `code_r2`: the same pooled R² in code space, the composed code ẑ against the encoder's code
  of the real held-out sample. 1 when the encoder's codes are additive in the concepts. Omitted
  for models without an encoder of samples (`supervised`, whose code is its labels) and for
  references, and when the held-out codes do not vary.
- `heldout_cos`: mean cosine between flattened x̂ and x. `heldout_psnr_db` (images only)
  = 10·log10(1 / pooled MSE), peak 1, x̂ not clipped.

Task config keys: `ridge_alpha` (default 1.0), `n_plot_samples` (held-out images per row of
the figure, default 8); the runner adds `artifact_dir`, `model_name`, `seed` and `setting`.
The figure (image datasets) shows one model per variant, the one at the headline sparsity
setting (`benchmark.report.matched.headline_settings`).
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
from benchmark.training.loop import TrainedModel
from benchmark.variant import encode_batch

from tasks._activity import artifact_file, artifact_root
from tasks._common import pooled_r2, psnr_db

CHUNK = 1024  # samples per encode/decode call: bounded memory on large dictionaries
REFERENCES = ("additive-pixels", "ridge-mask", "memoriser")
SUFFIX = ".pt"


# ----- metrics -----
def heldout_metrics(x: torch.Tensor, x_hat: torch.Tensor, image: bool = True) -> dict[str, float]:
    x, x_hat = x.flatten(1).double(), x_hat.flatten(1).double()
    metrics = {
        "heldout_r2": pooled_r2(x, x_hat),
        "heldout_cos": float(F.cosine_similarity(x_hat, x, dim=1).mean()),
    }
    if image:  # a peak of 1 means something for images in [0, 1] only
        metrics["heldout_psnr_db"] = psnr_db(float((x - x_hat).pow(2).mean()))
    return metrics


def seen_metrics(heldout_r2: float, x_seen: torch.Tensor, x_hat_seen: torch.Tensor) -> dict[str, float]:
    seen_r2 = pooled_r2(x_seen, x_hat_seen)
    return {"seen_r2": seen_r2, "generalization_gap": seen_r2 - heldout_r2}


def code_r2(actual: torch.Tensor, composed: torch.Tensor) -> float | None:
    """Pooled R² of composed codes against the encoder's codes; None when these do not vary."""
    actual = actual.flatten(1).double()
    if float((actual - actual.mean(0)).pow(2).sum()) == 0.0:
        return None
    return pooled_r2(actual, composed)


# ----- composition -----
def check_seen(train_concepts: torch.Tensor, factor_sizes) -> None:
    for factor, n_values in enumerate(factor_sizes):
        seen = torch.bincount(train_concepts[:, factor].cpu(), minlength=n_values)
        if bool((seen == 0).any()):
            raise ValueError(f"factor {factor} has values never seen in training: cannot compose them")


def design(concepts: torch.Tensor, factor_sizes) -> torch.Tensor:
    """(N, 1 + Σ values) float64: an intercept and the one-hot concept mask."""
    parts = [torch.ones(len(concepts), 1, dtype=torch.float64, device=concepts.device)]
    parts += [F.one_hot(concepts[:, f], n).double() for f, n in enumerate(factor_sizes)]
    return torch.cat(parts, dim=1)


def compose(train_values: torch.Tensor, train_concepts: torch.Tensor, concepts: torch.Tensor,
            factor_sizes) -> torch.Tensor:
    """The least-squares main-effects model of `train_values` (N, D), predicted for each row of
    `concepts`. The one-hot design is rank-deficient (each factor's columns sum to the
    intercept); the pseudo-inverse picks one solution, and every tuple whose values were all
    seen gets the same prediction from any solution."""
    check_seen(train_concepts, factor_sizes)
    x_train = design(train_concepts, factor_sizes)
    gram = x_train.T @ x_train  # small: (1 + Σ values)²
    coefficients = torch.linalg.pinv(gram, hermitian=True) @ (x_train.T @ train_values.flatten(1).double())
    composed = design(concepts, factor_sizes) @ coefficients
    return composed.to(train_values.dtype)


def seen_split(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(samples, concepts) of the seen tuples' test renderings, on the data's device, or None."""
    if "seen_test" not in dataset.truth:
        return None
    device = dataset.test.device
    return dataset.truth["seen_test"].to(device), dataset.truth["seen_test_concepts"].to(device)


def targets(dataset: Dataset) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{name: (samples, concepts)} to compose: `heldout` (the test split), and `seen` when the
    dataset has test renderings of seen tuples."""
    out = {"heldout": (dataset.test, dataset.test_concepts)}
    seen = seen_split(dataset)
    if seen is not None:
        out["seen"] = seen
    return out


@torch.no_grad()
def encode_chunks(model, x: torch.Tensor, concepts: torch.Tensor | None = None) -> torch.Tensor:
    return torch.cat([
        encode_batch(model, x[i : i + CHUNK], None if concepts is None else concepts[i : i + CHUNK])
        for i in range(0, len(x), CHUNK)
    ])


@torch.no_grad()
def decode_chunks(model, codes: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(codes[i : i + CHUNK]) for i in range(0, len(codes), CHUNK)])


@torch.no_grad()
def composed_codes(model, dataset: Dataset) -> dict[str, torch.Tensor]:
    """{target: codes} for every target tuple set (see `targets`)."""
    wanted = targets(dataset)
    if "concepts" in model.requires:  # the model encodes the tuple's labels itself
        return {name: encode_chunks(model, x, concepts) for name, (x, concepts) in wanted.items()}
    train_codes = encode_chunks(model, dataset.train)
    return {name: compose(train_codes, dataset.train_concepts, concepts, dataset.concept_sizes())
            for name, (_, concepts) in wanted.items()}


def composed_samples(model, dataset: Dataset) -> torch.Tensor:
    """x̂ for every held-out test tuple."""
    return decode_chunks(model, composed_codes(model, dataset)["heldout"])


def additive_pixels(dataset: Dataset, concepts: torch.Tensor | None = None) -> torch.Tensor:
    concepts = dataset.test_concepts if concepts is None else concepts
    values = compose(dataset.train, dataset.train_concepts, concepts, dataset.concept_sizes())
    return values.view(len(concepts), *dataset.input_shape)


def concept_mask(concepts: torch.Tensor, factor_sizes) -> np.ndarray:
    """(N, Σ values) one-hot mask: which concept values each sample has."""
    return design(concepts, factor_sizes)[:, 1:].cpu().numpy()


def ridge_mask(dataset: Dataset, alpha: float, concepts: torch.Tensor | None = None) -> torch.Tensor:
    concepts = dataset.test_concepts if concepts is None else concepts
    sizes = dataset.concept_sizes()
    ridge = Ridge(alpha=alpha).fit(concept_mask(dataset.train_concepts, sizes),
                                   dataset.train.flatten(1).cpu().double().numpy())
    values = torch.as_tensor(ridge.predict(concept_mask(concepts, sizes)), dtype=dataset.test.dtype)
    return values.to(dataset.test.device).view(len(concepts), *dataset.input_shape)


def memoriser(dataset: Dataset, concepts: torch.Tensor | None = None) -> torch.Tensor:
    """The mean training sample of the nearest seen tuple (fewest differing factors; the means
    of equally near tuples averaged): recall without composition."""
    concepts = dataset.test_concepts if concepts is None else concepts
    seen, which = dataset.train_concepts.unique(dim=0, return_inverse=True)
    flat = dataset.train.flatten(1).double()
    sums = torch.zeros(len(seen), flat.shape[1], dtype=torch.float64, device=flat.device).index_add_(0, which, flat)
    means = sums / torch.bincount(which, minlength=len(seen))[:, None]
    distance = (concepts[:, None, :] != seen[None, :, :]).sum(-1)  # (targets, seen tuples)
    nearest = (distance == distance.min(1, keepdim=True).values).double()
    prediction = (nearest @ means) / nearest.sum(1, keepdim=True)
    return prediction.to(dataset.test.dtype).view(len(concepts), *dataset.input_shape)


# ----- samples for the figure -----
def _safe(name) -> str:
    """A file-name-safe form (external variants are named by paths)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def save_samples(config: dict, dataset: Dataset, variant: str | None, composed: torch.Tensor) -> None:
    """Keep a few held-out images, true beside composed, for `plots` (which sees no model)."""
    if variant is None or not dataset.is_image:
        return
    path = artifact_file({**config, "model_name": _safe(variant)}, "composition", _safe(dataset.name), SUFFIX)
    if path is None:
        return
    n = min(int(config.get("n_plot_samples", 8)), len(dataset.test))
    index = torch.linspace(0, len(dataset.test) - 1, n).round().long().to(dataset.test.device)
    torch.save(
        {
            "dataset": dataset.name, "variant": variant, "seed": config.get("seed", 0),
            "setting": config.get("setting"),
            "true": dataset.test[index].cpu(), "composed": composed[index].cpu(),
            "tuples": dataset.test_concepts[index].cpu(),
        },
        path,
    )


@TASKS.register("composition")
class Composition(Task):
    description = ("Reconstruct samples of concept tuples never seen in training, composed from seen "
                   "concepts; the gap to seen tuples and the additivity of the codes.")
    metrics = {"heldout_r2": True, "seen_r2": True, "generalization_gap": False, "code_r2": True,
               "heldout_cos": True, "heldout_psnr_db": True}
    headline = "heldout_r2"

    def dataset_skip_reason(self, dataset: Dataset) -> str | None:
        if dataset.train_concepts is None or dataset.test_concepts is None:
            return f"{dataset.name} has no concept labels to compose"
        return None

    def headline_dataset(self, dataset_names: list[str]) -> str:
        """`prompts` (the supervised SAE's own setting), preferring its tuple split; else the
        first tuple split; else the first dataset."""
        def rank(name):
            return ("prompts" not in name, "tuple" not in name)
        return min(dataset_names, key=lambda name: (rank(name), dataset_names.index(name)))

    def evaluate(self, trained: TrainedModel, dataset: Dataset, config: dict) -> dict[str, float]:
        model = trained.model
        model.eval()
        codes = composed_codes(model, dataset)
        composed = decode_chunks(model, codes["heldout"])
        save_samples(config, dataset, config.get("model_name"), composed)
        metrics = heldout_metrics(dataset.test, composed, dataset.is_image)
        seen = seen_split(dataset)
        if seen is not None:
            metrics.update(seen_metrics(metrics["heldout_r2"], seen[0], decode_chunks(model, codes["seen"])))
        if "concepts" not in model.requires:
            score = code_r2(encode_chunks(model, dataset.test), codes["heldout"])
            if score is not None:
                metrics["code_r2"] = score
        return metrics

    def reference_rows(self, dataset: Dataset, config: dict, seed: int) -> dict[str, dict[str, float]]:
        alpha = float(config.get("ridge_alpha", 1.0))
        predictors = {
            "additive-pixels": lambda concepts: additive_pixels(dataset, concepts),
            "ridge-mask": lambda concepts: ridge_mask(dataset, alpha, concepts),
            "memoriser": lambda concepts: memoriser(dataset, concepts),
        }
        seen = seen_split(dataset)
        rows = {}
        for name, predict in predictors.items():
            composed = predict(dataset.test_concepts)
            save_samples({**config, "seed": seed}, dataset, name, composed)
            rows[name] = heldout_metrics(dataset.test, composed, dataset.is_image)
            if seen is not None:
                rows[name].update(seen_metrics(rows[name]["heldout_r2"], seen[0], predict(seen[1])))
        return rows

    def plots(self, results: pd.DataFrame, plot_dir: Path) -> list[tuple[str, Path]]:
        """One figure per image dataset: true held-out images, then the composed images of each
        reference and of each variant at its headline setting (first seed)."""
        ok = results[(results.task == self.name) & (results.status == "ok")]
        figures = []
        for dataset in sorted(ok.dataset.unique()):
            rows = ok[ok.dataset == dataset]
            settings = _headline_settings(rows, self.name, dataset)
            samples = _load_samples(artifact_root(plot_dir) / self.name / _safe(dataset), settings)
            if samples:
                path = Path(plot_dir) / f"composition_{_safe(dataset)}.png"
                _draw(samples, _scores(rows, samples), dataset, path)
                figures.append((f"Unseen concept tuples composed ({dataset}): true images, then each row's x̂", path))
        return figures


def _headline_settings(rows: pd.DataFrame, task: str, dataset: str) -> dict[str, object]:
    """{row name: setting} of the rows to draw: references (no setting) and each variant's
    headline setting."""
    from benchmark.report.matched import headline_settings

    settings = dict(headline_settings(rows, task, dataset))
    settings.update({name: None for name in REFERENCES if name in set(rows.variant)})
    return settings


def _load_samples(directory: Path, settings: dict[str, object]) -> dict[str, dict]:
    """The first seed's samples of each row in `settings` at its setting; references first."""
    samples = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        blob = torch.load(path)
        variant = blob["variant"]
        if variant not in settings or (variant not in REFERENCES and str(blob.get("setting")) != str(settings[variant])):
            continue
        kept = samples.get(variant)
        if kept is None or blob["seed"] < kept["seed"]:
            samples[variant] = blob
    order = sorted(samples, key=lambda v: (v not in REFERENCES, v != "supervised", v))
    return {v: samples[v] for v in order}


def _scores(rows: pd.DataFrame, samples: dict[str, dict]) -> dict[str, float]:
    """Mean `heldout_r2` over seeds of each drawn row, at the drawn setting."""
    scores = {}
    for variant, blob in samples.items():
        picked = rows[(rows.variant == variant) & (rows.metric == "heldout_r2")]
        if variant not in REFERENCES and "setting" in picked and blob.get("setting") is not None:
            picked = picked[picked.setting.astype(str) == str(blob["setting"])]
        scores[variant] = float(pd.to_numeric(picked.value).mean()) if len(picked) else float("nan")
    return scores


def _draw(samples: dict[str, dict], scores: dict[str, float], dataset: str, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend state
    from torchvision.utils import make_grid

    first = next(iter(samples.values()))
    label = lambda v, blob: v if blob.get("setting") is None else f"{v} {blob['setting']}"  # noqa: E731
    rows = [("true", first["true"])] + [
        (f"{label(v, blob)} (R² {scores[v]:.2f})", blob["composed"]) for v, blob in samples.items()
    ]
    n_cols = len(first["true"])
    grid = make_grid(torch.cat([images.clamp(0, 1) for _, images in rows]), nrow=n_cols, padding=1, pad_value=1.0)
    aspect = first["true"].shape[-1] / first["true"].shape[-2]
    fig = Figure(figsize=(1.5 + 0.6 * aspect * n_cols, 0.6 * len(rows) + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    row_height = grid.shape[1] / len(rows)
    ax.set_yticks([(i + 0.5) * row_height for i in range(len(rows))], [name for name, _ in rows], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"composition on {dataset}: held-out tuples", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
