"""Task `sparse_probing` (SAEBench's): can a few latents tell a known binary attribute?

A dataset declares what to probe in `truth["probing"]`: `train_groups` and `test_groups`, one
group id per sample of each split (on `minilm`: the sentence of each token), and `labels`,
attribute name -> (n_groups,) long tensor of 1, 0 or -1 (the attribute does not apply to that
group). Codes are mean-pooled over each group's samples (SAEBench pools over a sequence's
tokens), then for every attribute:

1. classes are balanced: the larger class of each split is subsampled (seeded) to the smaller's
   size, on the groups where the attribute applies;
2. the k latents with the largest |mean(positive) − mean(negative)| on the training groups are
   kept (ties: the lower index);
3. scikit-learn's LogisticRegression (on standardised features) is fitted on the training
   groups and scored on the test groups.

`probe_acc_k{1,2,5}`: mean held-out accuracy over the attributes; chance is 0.5. The reference
row `raw-activations` runs the same probe on the raw input dimensions: a sparse probe that any
SAE's latents should match or beat to claim they isolate the attribute better than the
basis the data came in.
"""
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmark.data import Dataset
from benchmark.registry import TASKS
from benchmark.task import Task
from benchmark.training import TrainedModel

from tasks._common import encode_all

KS = (1, 2, 5)
MIN_PER_CLASS = 2  # per split: fewer, and the attribute cannot be probed


def pool_by_group(features: torch.Tensor, groups: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(group ids, mean feature vector of each group), groups in ascending order."""
    ids, inverse = torch.unique(groups.cpu(), return_inverse=True)
    features = features.flatten(1).double().cpu()
    sums = torch.zeros(len(ids), features.shape[1], dtype=torch.float64).index_add_(0, inverse, features)
    counts = torch.bincount(inverse, minlength=len(ids)).double()
    return ids.numpy(), (sums / counts[:, None]).numpy()


def balanced(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of an equal number of positives and negatives (labels −1 are left out)."""
    positive, negative = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n = min(len(positive), len(negative))
    keep = np.concatenate([rng.choice(positive, n, replace=False), rng.choice(negative, n, replace=False)])
    return np.sort(keep)


def top_k_by_mean_difference(features: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    difference = np.abs(features[labels == 1].mean(0) - features[labels == 0].mean(0))
    return np.argsort(-difference, kind="stable")[:k]


def probe_accuracy(train_x, train_y, test_x, test_y, k: int) -> float:
    chosen = top_k_by_mean_difference(train_x, train_y, k)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(train_x[:, chosen], train_y)
    return float(probe.score(test_x[:, chosen], test_y))


def probe_scores(train_features: torch.Tensor, test_features: torch.Tensor, probing: dict,
                 seed: int, eval_seed: int = 0) -> dict[str, float]:
    """{probe_acc_k1, probe_acc_k2, probe_acc_k5}: mean over the attributes that have at least
    MIN_PER_CLASS groups of each class in both splits. The balanced subsamples are drawn from the
    cell's seed (evaluation seed 0, the task's canonical draw) or from (seed, evaluation seed)."""
    train_ids, train_x = pool_by_group(train_features, probing["train_groups"])
    test_ids, test_x = pool_by_group(test_features, probing["test_groups"])
    rng = np.random.default_rng(seed if eval_seed == 0 else [seed, eval_seed])
    accuracies = {k: [] for k in KS}
    for name in sorted(probing["labels"]):
        labels = probing["labels"][name].cpu().numpy()
        train_y, test_y = labels[train_ids], labels[test_ids]
        if min(np.sum(y == c) for y in (train_y, test_y) for c in (0, 1)) < MIN_PER_CLASS:
            continue
        train_rows, test_rows = balanced(train_y, rng), balanced(test_y, rng)
        for k in KS:
            accuracies[k].append(probe_accuracy(train_x[train_rows], train_y[train_rows],
                                                test_x[test_rows], test_y[test_rows], k))
    if not accuracies[KS[0]]:
        raise ValueError("no attribute has both classes in both splits")
    return {f"probe_acc_k{k}": float(np.mean(scores)) for k, scores in accuracies.items()}


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
        model = trained.model
        train_codes = encode_all(model, dataset.train, dataset.train_concepts)
        test_codes = encode_all(model, dataset.test, dataset.test_concepts)
        return probe_scores(train_codes, test_codes, dataset.truth["probing"], int(config.get("seed", 0)),
                            int(config.get("eval_seed", 0)))

    def reference_rows(self, dataset: Dataset, config: dict, seed: int) -> dict[str, dict[str, float]]:
        return {"raw-activations": probe_scores(dataset.train, dataset.test, dataset.truth["probing"], seed,
                                                int(config.get("eval_seed", 0)))}
