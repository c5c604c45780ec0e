"""Task `sparse_probing` (SAEBench's): can a few latents tell a known binary attribute?

A dataset declares what to probe in `truth["probing"]`: `train_groups` and `test_groups`, one
group id per sample of each split (on `minilm`: the sentence of each token), and `labels`,
attribute name -> (n_groups,) long tensor of 1, 0 or -1 (the attribute does not apply to that
group). The samples are `train_inputs` and `test_inputs` where the dataset gives a separate
probe set (`minilm`: sentences the SAE never trains on, as SAEBench probes datasets apart from
the SAE's training data), else the dataset's own train and test splits (`mnist5k`, a user's
activations file with a labels CSV). `input_scale` (default 1) multiplies the samples back
into the units the model produced them in (`minilm` scales them to unit mean square).

SAEBench's procedure (sae-bench 0.6.0, `sae_bench/evals/sparse_probing/`), reproduced exactly
and tested against its own functions in tests/tasks/test_sparse_probing.py:
- codes (and raw activations) are mean-pooled over each group's samples (SAEBench's
  `get_sae_meaned_activations` over a sequence's tokens, special tokens excluded);
- `get_top_k_mean_diff_mask`: the k features with the largest |mean(positive) − mean(negative)|
  on the balanced training groups (float32, `torch.argsort(descending=True)`), kept in index
  order (`apply_topk_mask_reduce_dim`);
- `train_sklearn_probe`: scikit-learn's `LogisticRegression(penalty="l2", C=1.0,
  max_iter=1000)` (L2 is the default: penalty= is deprecated in sklearn 1.8) on those raw features as float32 (no standardisation), fitted on the
  training groups, `accuracy_score` on the test groups;
- the `raw-activations` reference row is the same probe on the activations' input dimensions
  in the model's own units (SAEBench's `llm_top_{k}_test_accuracy` on the unscaled stream).

This suite's own parts, which SAEBench has no counterpart for: the data (above), a binary
attribute per group in place of SAEBench's one-class-vs-the-rest over multi-class datasets;
classes balanced by subsampling the larger class of each split to the smaller's size with a
generator seeded by the cell's seed and evaluation seed (SAEBench draws its negatives with the
global torch generator); attributes with fewer than MIN_PER_CLASS groups of a class in a split
are skipped.

`probe_acc_k{1,2,5}`: mean held-out accuracy over the attributes; chance is 0.5. The reference
row `raw-activations` is a sparse probe that any SAE's latents should match or beat to claim
they isolate the attribute better than the basis the data came in.
"""
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from benchmark.data import Dataset
from benchmark.registry import TASKS
from benchmark.task import Task
from benchmark.training.loop import TrainedModel
from benchmark.variant import encode_batch

KS = (1, 2, 5)
MIN_PER_CLASS = 2  # per split: fewer, and the attribute cannot be probed
CHUNK = 4096  # samples encoded at once


def group_index(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(group ids ascending, each sample's position among them, samples per group)."""
    ids, inverse = torch.unique(groups.cpu(), return_inverse=True)
    return ids, inverse, torch.bincount(inverse, minlength=len(ids)).double()


def pool_by_group(features: torch.Tensor, groups: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, mean feature vector of each group), groups in ascending order."""
    ids, inverse, counts = group_index(groups)
    features = features.flatten(1).double().cpu()
    sums = torch.zeros(len(ids), features.shape[1], dtype=torch.float64).index_add_(0, inverse, features)
    return ids.numpy(), (sums / counts[:, None]).numpy()


@torch.no_grad()
def pooled_codes(model, x: torch.Tensor, groups: torch.Tensor, concepts: torch.Tensor | None = None,
                 device=None) -> tuple[np.ndarray, np.ndarray]:
    """pool_by_group(codes of x, groups), encoding CHUNK samples at a time on `device` (default:
    x's) and pooling as it goes: the codes of a large probe set are never held at once."""
    ids, inverse, counts = group_index(groups)
    sums = None
    for lo in range(0, len(x), CHUNK):
        part_concepts = None if concepts is None else concepts[lo : lo + CHUNK]
        codes = encode_batch(model, x[lo : lo + CHUNK].to(device or x.device), part_concepts)
        codes = codes.flatten(1).double().cpu()
        if sums is None:
            sums = torch.zeros(len(ids), codes.shape[1], dtype=torch.float64)
        sums.index_add_(0, inverse[lo : lo + CHUNK], codes)
    return ids.numpy(), (sums / counts[:, None]).numpy()


def balanced(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of an equal number of positives and negatives (labels −1 are left out)."""
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n = min(len(positive), len(negative))
    keep = np.concatenate([rng.choice(positive, n, replace=False), rng.choice(negative, n, replace=False)])
    return np.sort(keep)


def mean_difference_ranking(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """SAEBench's get_top_k_mean_diff_mask before its cut: the columns by decreasing
    |mean(positive) − mean(negative)| (float32, torch's descending argsort)."""
    x, y = torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels)
    return torch.argsort((x[y == 1].mean(0) - x[y == 0].mean(0)).abs(), descending=True).numpy()


def probe_accuracy(train_x, train_y, test_x, test_y, k: int, ranking: np.ndarray | None = None) -> float:
    """SAEBench's top-k selection (the first k of `ranking`, default mean_difference_ranking,
    in index order as apply_topk_mask_reduce_dim keeps them), then its train_sklearn_probe: L2
    logistic regression (C=1, max_iter=1000) on the raw selected features as float32; held-out
    accuracy."""
    ranking = mean_difference_ranking(train_x, train_y) if ranking is None else ranking
    chosen = np.sort(ranking[:k])
    probe = LogisticRegression(C=1.0, max_iter=1000)  # L2: SAEBench's penalty="l2", sklearn's default
    probe.fit(train_x[:, chosen].astype(np.float32), train_y)
    return float(accuracy_score(test_y, probe.predict(test_x[:, chosen].astype(np.float32))))


def balanced_attributes(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                        labels: dict, seed: int, eval_seed: int = 0):
    """(name, train_x, train_y, test_x, test_y) of every attribute with at least MIN_PER_CLASS
    groups of each class in both splits, classes balanced in each split. `train` and `test` are
    pool_by_group's (ids, pooled features). The subsamples are drawn from the cell's seed
    (evaluation seed 0, the task's canonical draw) or from (seed, evaluation seed)."""
    (train_ids, train_x), (test_ids, test_x) = train, test
    rng = np.random.default_rng(seed if eval_seed == 0 else [seed, eval_seed])
    for name in sorted(labels):
        values = labels[name].cpu().numpy()
        train_y, test_y = values[train_ids], values[test_ids]
        if min(np.sum(y == c) for y in (train_y, test_y) for c in (0, 1)) < MIN_PER_CLASS:
            continue
        train_rows, test_rows = balanced(train_y, rng), balanced(test_y, rng)
        yield name, train_x[train_rows], train_y[train_rows], test_x[test_rows], test_y[test_rows]


def pooled_scores(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], labels: dict,
                  seed: int, eval_seed: int = 0) -> dict[str, float]:
    """{probe_acc_k1, probe_acc_k2, probe_acc_k5}: mean over balanced_attributes."""
    accuracies = {k: [] for k in KS}
    for _, train_x, train_y, test_x, test_y in balanced_attributes(train, test, labels, seed, eval_seed):
        ranking = mean_difference_ranking(train_x, train_y)  # the same sort SAEBench does for each k
        for k in KS:
            accuracies[k].append(probe_accuracy(train_x, train_y, test_x, test_y, k, ranking))
    if not accuracies[KS[0]]:
        raise ValueError("no attribute has both classes in both splits")
    return {f"probe_acc_k{k}": float(np.mean(scores)) for k, scores in accuracies.items()}


def probe_scores(train_features: torch.Tensor, test_features: torch.Tensor, probing: dict,
                 seed: int, eval_seed: int = 0) -> dict[str, float]:
    """pooled_scores of per-sample features (one row per sample of each split)."""
    return pooled_scores(pool_by_group(train_features, probing["train_groups"]),
                         pool_by_group(test_features, probing["test_groups"]),
                         probing["labels"], seed, eval_seed)


def probe_inputs(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The samples `truth["probing"]` describes: its separate probe set, else the dataset's splits."""
    probing = dataset.truth["probing"]
    return probing.get("train_inputs", dataset.train), probing.get("test_inputs", dataset.test)


@TASKS.register("sparse_probing")
class SparseProbing(Task):
    description = "Held-out accuracy of logistic probes on the k latents that best separate known binary attributes."
    metrics = {f"probe_acc_k{k}": True for k in KS}
    headline = "probe_acc_k1"
    eval_seeded = True  # the balanced subsamples

    def dataset_skip_reason(self, dataset: Dataset) -> str | None:
        if "probing" not in dataset.truth:
            return f"{dataset.name} declares no attributes to probe"
        return None

    def evaluate(self, trained: TrainedModel, dataset: Dataset, config: dict) -> dict[str, float]:
        return self.evaluate_under(trained, dataset, config, [int(config.get("eval_seed", 0))]).popitem()[1]

    def evaluate_under(self, trained, dataset, config, eval_seeds):
        """The probe corpus is encoded once; each evaluation seed draws its own balanced subsamples."""
        probing = dataset.truth["probing"]
        separate = "train_inputs" in probing  # a separate probe set has no concept labels
        train_x, test_x = probe_inputs(dataset)
        device = dataset.train.device
        train = pooled_codes(trained.model, train_x, probing["train_groups"],
                             None if separate else dataset.train_concepts, device)
        test = pooled_codes(trained.model, test_x, probing["test_groups"],
                            None if separate else dataset.test_concepts, device)
        seed = int(config.get("seed", 0))
        return {s: pooled_scores(train, test, probing["labels"], seed, s) for s in eval_seeds}

    def reference_rows(self, dataset: Dataset, config: dict, seed: int) -> dict[str, dict[str, float]]:
        """The probe on the input dimensions, in the model's own units (× `input_scale`)."""
        scale = float(dataset.truth["probing"].get("input_scale", 1.0))
        train_x, test_x = probe_inputs(dataset)
        return {"raw-activations": probe_scores(train_x * scale, test_x * scale, dataset.truth["probing"], seed,
                                                int(config.get("eval_seed", 0)))}
