"""Task `ground_truth`: SynthSAEBench's metrics (Chanin & Garriga-Alonso, 2026) of an SAE against
the true features of a dataset that has them, computed by SAELens' own functions
(`sae_lens.synthetic.evals`, the ones `eval_sae_on_synthetic_data` runs), fed with the suite's
model: its atoms (`model.atoms()`, the decoder rows) and its codes and reconstructions of the
dataset's fixed test split.

- `mcc`: mean |cosine| of the Hungarian one-to-one matching between the atoms and the true
  feature vectors, averaged over the matched pairs (min(K, n_true) of them: with fewer latents
  than true features, unlike `correlated_recovery`'s `mmcs`, unmatched true features cost
  nothing).
- `uniqueness`: distinct true features among the atoms' best matches, over K.
- `gt_f1`, `gt_precision`, `gt_recall`: each latent is a detector of its best-matching true
  feature (by |cosine|): fires (code != 0) vs the feature active (> 0) on the test samples;
  means over all K latents (a dead latent scores 0). `gt_f1` is the headline, SynthSAEBench's
  ranking metric.
- `explained_variance`: 1 − E‖x − x̂‖² / total variance of x.
- `shrinkage_gap`: |1 − shrinkage|, SAELens' shrinkage being mean ‖x̂‖ / ‖x‖ (1: none; an L1
  penalty pulls it below 1, an untrained model may overshoot above). Lower is better: the ideal
  is 1, not the largest ratio (read as higher-is-better, an untrained model's 1.4 "won").
- `dead_latents`: latents that never fire on the test split (a count, as SAELens reports it).

Datasets: any with a true dictionary and true codes of its test split in `truth` (`synth`,
`correlated`, `tree`, `superposition`). True codes may be sparse (synth's thousands of
features); they are densified a block of rows at a time.
"""
import torch

from benchmark.registry import TASKS
from benchmark.task import Task

from tasks._common import encode_all
from tasks.correlated_recovery import highest_rho_dataset

ROWS = 2048  # test rows scored at once: a dense block of true codes stays small


def true_code_rows(codes: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    if codes.is_sparse:
        return codes.index_select(0, torch.arange(lo, hi)).to_dense()
    return codes[lo:hi]


@torch.no_grad()
def ground_truth_metrics(model, x: torch.Tensor, true_codes: torch.Tensor, true_features: torch.Tensor,
                         concepts=None) -> dict[str, float]:
    from sae_lens.evals import ExplainedVarianceCalculator  # 7 s to import: only when scored
    from sae_lens.synthetic.evals import (ClassificationMetricsCalculator, DeadLatentsCalculator,
                                          ShrinkageCalculator, feature_uniqueness,
                                          mean_correlation_coefficient)

    atoms = model.atoms().detach().flatten(1).float().cpu()
    true_features = true_features.float().cpu()
    classification = ClassificationMetricsCalculator(atoms, true_features)
    dead, shrinkage, variance = DeadLatentsCalculator(len(atoms)), ShrinkageCalculator(), ExplainedVarianceCalculator()
    for lo in range(0, len(x), ROWS):
        hi = min(lo + ROWS, len(x))
        batch = x[lo:hi]
        codes = encode_all(model, batch, None if concepts is None else concepts[lo:hi])
        x_hat = model.decode(codes).flatten(1).float().cpu()
        codes, batch = codes.float().cpu(), batch.flatten(1).float().cpu()
        classification.add_batch(codes, true_code_rows(true_codes, lo, hi).float())
        dead.add_batch(codes)
        shrinkage.add_batch(x_hat, batch)
        variance.add_batch(x_hat, batch)
    detection = classification.compute()
    return {
        "gt_f1": detection.f1_score,
        "gt_precision": detection.precision,
        "gt_recall": detection.recall,
        "mcc": mean_correlation_coefficient(atoms, true_features),
        "uniqueness": feature_uniqueness(atoms, true_features),
        "explained_variance": variance.compute(),
        "shrinkage_gap": abs(1.0 - shrinkage.compute()),
        "dead_latents": float(dead.compute()),
    }


@TASKS.register("ground_truth")
class GroundTruth(Task):
    description = ("SynthSAEBench's ground-truth metrics by SAELens' own functions: per-latent F1 of "
                   "firing against the matched true feature, MCC, uniqueness, explained variance.")
    metrics = {"gt_f1": True, "gt_precision": True, "gt_recall": True, "mcc": True, "uniqueness": True,
               "explained_variance": True, "shrinkage_gap": False, "dead_latents": False}
    headline = "gt_f1"

    def dataset_skip_reason(self, dataset):
        if "dictionary" not in dataset.truth or "test_codes" not in dataset.truth:
            return f"{dataset.name} has no true features and codes to score against"
        return None

    def headline_dataset(self, dataset_names):
        """`synth` (SynthSAEBench's world) where it runs; else correlated_recovery's headline,
        the highest-rho known dictionary (`default`, which has no `synth`: correlated-rho0.9)."""
        return next((n for n in dataset_names if n.startswith("synth")), None) or highest_rho_dataset(dataset_names)

    def evaluate(self, trained, dataset, config):
        model = trained.model
        model.eval()
        return ground_truth_metrics(model, dataset.test, dataset.truth["test_codes"], dataset.truth["dictionary"],
                                    dataset.test_concepts)
