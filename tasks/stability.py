"""Task `stability`: do different seeds learn the same dictionary?

SAEs trained with different seeds share only part of their latents (Paulo & Belrose 2025: about
30% at 131k latents), which a leaderboard of one seed's numbers cannot show. For each variant,
setting and dataset, the dictionaries (`model.atoms()`, flattened and unit-normed) of every pair
of seeds are matched one to one by the Hungarian algorithm on |cos|
(`scipy.optimize.linear_sum_assignment`, maximising), and each seed's model is scored against
every other seed's:

- `pairwise_mcc`: the mean matched |cos| (the mean correlation coefficient of the matched pairs),
  averaged over the other seeds;
- `matched_frac`: the fraction of its atoms whose match has |cos| > MATCH_THRESHOLD = 0.7,
  averaged over the other seeds.

Seeds vary the data (crops, splits, held-out photographs) as well as the initialisation. To tell
the two apart, on the task's headline dataset the first seed's model is also compared with its
*same-data twin*: the same variant, setting and data stream, initialised from another seed
(INIT_OFFSET added): `same_data_mcc` and `same_data_frac` (first seed only).

The null is the `random-dict` control (independent random dictionaries: no atom matches above
0.7 in 192 dimensions), the one control scored: the others have no initialisation to vary
(`block-basis` is the same on every seed, `pca` changes only with the data), so they would win
the comparison by construction and say nothing about training. Dead latents keep their atoms: a dictionary that only partly
learnt is only partly stable. Each seed's value is read at that model's own L0, like any metric,
so the matched-L0 tables compare variants at equal sparsity. The per-seed values share models
(seed 0 against 1 enters both seeds' means), so the paired test across them is indicative, not
exact. The task needs two or more seeds; with one, its rows are `skipped` with the reason.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment

from benchmark.control import is_control
from benchmark.registry import TASKS
from benchmark.task import Task

MATCH_THRESHOLD = 0.7
INIT_OFFSET = 1_000_003  # the twin's initialisation seed: seed + INIT_OFFSET


def unit_atoms(model) -> np.ndarray:
    """(n_latents, input_dim) atoms scaled to unit norm (all-zero atoms stay zero)."""
    atoms = model.atoms().detach().double().flatten(1).cpu()
    return (atoms / atoms.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def match_dictionaries(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean matched |cos|, fraction matched above MATCH_THRESHOLD) of the one-to-one matching
    of a's atoms with b's that maximises the summed |cos|; over a's atoms (the smaller of the
    two dictionaries when their sizes differ)."""
    similarity = np.abs(a @ b.T)
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    matched = similarity[rows, cols]
    return float(matched.mean()), float((matched > MATCH_THRESHOLD).mean())


@TASKS.register("stability")
class Stability(Task):
    description = ("Seed stability: each model's dictionary matched one to one (Hungarian on |cos|) with the same "
                   "variant and setting on every other seed, and on the headline dataset with a same-data twin (another "
                   "initialisation, the same data); random-dict is the null.")
    headline = "pairwise_mcc"
    metrics = {"pairwise_mcc": True, "matched_frac": True, "same_data_mcc": True, "same_data_frac": True}
    across_seeds = True
    null_control = "random-dict"

    def skip_reason(self, variant_cls, dataset):
        if is_control(variant_cls) and variant_cls.name != self.null_control:
            return (f"{variant_cls.name} has no initialisation to vary (it is fixed by the data): "
                    f"{self.null_control} is stability's null")
        return super().skip_reason(variant_cls, dataset)

    def evaluate_seeds(self, models, twin):
        atoms = {seed: unit_atoms(trained.model) for seed, trained in models.items()}
        out = {}
        for seed, own in atoms.items():
            scores = [match_dictionaries(own, other) for s, other in atoms.items() if s != seed]
            out[seed] = {"pairwise_mcc": float(np.mean([mcc for mcc, _ in scores])),
                         "matched_frac": float(np.mean([frac for _, frac in scores]))}
        if twin is not None:
            first = min(models)
            mcc, frac = match_dictionaries(atoms[first], unit_atoms(twin.model))
            out[first].update(same_data_mcc=mcc, same_data_frac=frac)
        return out
