import numpy as np
import pytest
import torch

from benchmark.data import Dataset
from benchmark.training.loop import TrainedModel
from tasks.sparse_probing import (SparseProbing, balanced, balanced_attributes, pool_by_group, probe_accuracy,
                                 probe_scores)

N_GROUPS, TOKENS_PER_GROUP, D = 120, 3, 16


class PlantedToy(torch.nn.Module):
    """Codes = the input with latent `planted` replaced by a given column of the input."""

    def __init__(self, planted_source: int, planted: int = 7):
        super().__init__()
        self.requires, self.source, self.planted = frozenset(), planted_source, planted

    def encode(self, x):
        codes = x.clone()
        codes[:, self.planted] = x[:, self.source]
        return codes


def probing_dataset(seed=0, positive_fraction=0.5) -> Dataset:
    """Groups of 3 tokens with Gaussian inputs; dimension 0 is 0 except on each group's first
    token, so that its mean over the group is the group's label; 2/3 of the groups train."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(N_GROUPS, generator=g) < positive_fraction).long()
    groups = torch.arange(N_GROUPS).repeat_interleave(TOKENS_PER_GROUP)
    x = torch.randn(len(groups), D, generator=g)
    x[:, 0] = 0
    x[::TOKENS_PER_GROUP, 0] = TOKENS_PER_GROUP * labels.float()  # pooled over the group: the label
    is_train = groups < 2 * N_GROUPS // 3
    not_applicable = labels.clone()
    not_applicable[::2] = -1  # an attribute defined on half the groups only
    truth = {"probing": {"train_groups": groups[is_train], "test_groups": groups[~is_train],
                         "labels": {"planted": labels, "half": not_applicable}}}
    return Dataset("probe-toy", x[is_train], x[~is_train], {}, truth=truth)


def test_a_latent_equal_to_the_label_gives_accuracy_1_at_k1():
    data = probing_dataset()
    out = SparseProbing().evaluate(TrainedModel(PlantedToy(planted_source=0)), data, {"seed": 0})
    assert set(out) == set(SparseProbing.metrics)
    assert out == {"probe_acc_k1": 1.0, "probe_acc_k2": 1.0, "probe_acc_k5": 1.0}


def test_every_evaluation_seed_scores_as_alone_and_the_corpus_is_encoded_once(monkeypatch):
    """Three evaluation seeds: the noisy planted latent gives each its own subsample draw, as
    three separate calls would, from one encoding of each split (not three)."""
    data = probing_dataset(seed=3)
    noise = torch.Generator().manual_seed(0)
    for split in (data.train, data.test):  # the label no longer separable: each draw scores its own accuracy
        split[:, 0] += 3 * torch.randn(len(split), generator=noise)
    model, encodes, real_encode = PlantedToy(planted_source=0), [], PlantedToy.encode
    monkeypatch.setattr(PlantedToy, "encode", lambda self, x: encodes.append(len(x)) or real_encode(self, x))
    alone = {s: SparseProbing().evaluate(TrainedModel(model), data, {"seed": 0, "eval_seed": s}) for s in range(3)}
    calls_alone = len(encodes)
    encodes.clear()
    together = SparseProbing().evaluate_under(TrainedModel(model), data, {"seed": 0}, [0, 1, 2])
    assert together == alone and len(encodes) == calls_alone // 3
    assert len({out["probe_acc_k1"] for out in together.values()}) > 1  # the seeds do draw differently


def test_a_latent_of_noise_gives_chance():
    data = probing_dataset()
    data.truth["probing"]["labels"] = {"planted": data.truth["probing"]["labels"]["planted"]}
    data.train[:, 0] = torch.randn(len(data.train))  # the label is gone from the input
    data.test[:, 0] = torch.randn(len(data.test))
    out = SparseProbing().evaluate(TrainedModel(PlantedToy(planted_source=1)), data, {"seed": 0})
    assert out["probe_acc_k1"] < 0.75


def test_the_raw_activation_reference_finds_the_label_dimension():
    rows = SparseProbing().reference_rows(probing_dataset(), {}, seed=0)
    assert rows["raw-activations"]["probe_acc_k1"] == 1.0


def test_classes_are_balanced_so_a_constant_feature_scores_exactly_one_half():
    """90% negatives: predicting "negative" always would score 0.9 without balancing."""
    data = probing_dataset(positive_fraction=0.1)
    probing = {**data.truth["probing"], "labels": {"planted": data.truth["probing"]["labels"]["planted"]}}
    constant = lambda x: torch.ones(len(x), 1)  # noqa: E731
    out = probe_scores(constant(data.train), constant(data.test), probing, seed=0)
    assert out["probe_acc_k1"] == 0.5


def test_pooling_and_balancing_helpers():
    ids, pooled = pool_by_group(torch.tensor([[1.0], [3.0], [10.0]]), torch.tensor([5, 5, 2]))
    assert ids.tolist() == [2, 5] and pooled[:, 0].tolist() == [10.0, 2.0]
    keep = balanced(np.array([1, 0, 0, 0, -1, 1, 0]), np.random.default_rng(0))
    labels = np.array([1, 0, 0, 0, -1, 1, 0])[keep]
    assert (labels == 1).sum() == (labels == 0).sum() == 2


def test_datasets_without_attributes_are_skipped():
    x = torch.randn(8, 4)
    assert "no attributes" in SparseProbing().dataset_skip_reason(Dataset("plain", x, x, {}))
    assert SparseProbing().dataset_skip_reason(probing_dataset()) is None


def test_an_attribute_missing_a_class_in_a_split_is_left_out_and_none_left_is_an_error():
    data = probing_dataset()
    probing = {**data.truth["probing"], "labels": {"all-one": torch.ones(N_GROUPS, dtype=torch.long)}}
    with pytest.raises(ValueError, match="both classes"):
        probe_scores(data.train, data.test, probing, seed=0)


def graded_features(seed=0, n_groups=400, d=12):
    """Pooled features where three columns carry each of two attributes weakly (accuracies
    between chance and 1), the rest noise; nonnegative and sparse-ish like SAE codes."""
    g = torch.Generator().manual_seed(seed)
    labels = {"a": (torch.rand(n_groups, generator=g) < 0.5).long(),
              "b": (torch.rand(n_groups, generator=g) < 0.3).long()}
    x = torch.randn(n_groups, d, generator=g)
    for j, name in enumerate(labels):
        x[:, 3 * j : 3 * j + 3] += torch.tensor([1.0, 0.7, 0.4]) * labels[name][:, None]
    x = torch.relu(x)
    groups = torch.arange(n_groups)
    is_train = groups % 4 != 0
    return x[is_train], x[~is_train], {"train_groups": groups[is_train], "test_groups": groups[~is_train],
                                       "labels": labels}


@pytest.mark.filterwarnings("ignore:.penalty. was deprecated:FutureWarning")  # in SAEBench's call
def test_the_accuracy_is_saebenchs_own_functions_on_the_same_rows():
    """On the suite's balanced rows, SAEBench's own steps of train_probe_on_activations (its
    top-k mean-difference mask, the reduced features, its sklearn probe) give exactly the
    suite's accuracy, for every attribute and k. (train_probe_on_activations itself is not
    called: it draws its own rows, and under jaxtyping >= 0.3 its nested shape check fails.)"""
    probe_training = pytest.importorskip(
        "sae_bench.evals.sparse_probing.probe_training",
        reason="SAEBench's code: pip install --no-deps sae-bench==0.6.0 (see README)")
    train_x, test_x, probing = graded_features()
    train, test = pool_by_group(train_x, probing["train_groups"]), pool_by_group(test_x, probing["test_groups"])
    rows = list(balanced_attributes(train, test, probing["labels"], seed=0))
    assert [r[0] for r in rows] == ["a", "b"]

    def theirs(tr_x, tr_y, te_x, te_y, k):
        tensors = [torch.tensor(a, dtype=torch.float32) for a in (tr_x, te_x)]
        labels = [torch.tensor(a, dtype=torch.int) for a in (tr_y, te_y)]
        mask = probe_training.get_top_k_mean_diff_mask(tensors[0], labels[0], k)
        tensors = [probe_training.apply_topk_mask_reduce_dim(t, mask) for t in tensors]
        return probe_training.train_sklearn_probe(tensors[0], labels[0], tensors[1], labels[1])[1]

    means = {}
    for k in (1, 2, 5):
        accuracies = []
        for name, *split in rows:
            ours = probe_accuracy(*split, k)
            assert ours == theirs(*split, k), (name, k)
            accuracies.append(ours)
        assert 0.55 < min(accuracies) and max(accuracies) < 1.0  # neither chance nor trivial
        means[f"probe_acc_k{k}"] = float(np.mean(accuracies))
    assert probe_scores(train_x, test_x, probing, seed=0) == means


def test_the_probe_does_not_standardise_so_the_units_of_the_features_matter():
    """SAEBench fits on the raw features: in units 10^4 smaller, its L2 penalty (C=1) wins and
    every prediction is one class (exactly 1/2 on balanced rows); a standardising probe would
    score the same in any units."""
    train_x, test_x, probing = graded_features()
    train, test = pool_by_group(train_x, probing["train_groups"]), pool_by_group(test_x, probing["test_groups"])
    for _, tr_x, tr_y, te_x, te_y in balanced_attributes(train, test, probing["labels"], seed=0):
        assert probe_accuracy(tr_x, tr_y, te_x, te_y, 2) > 0.6
        assert probe_accuracy(tr_x * 1e-4, tr_y, te_x * 1e-4, te_y, 2) == 0.5


def test_a_separate_probe_set_is_probed_and_the_raw_reference_undoes_the_scaling():
    data = probing_dataset()
    probing = data.truth["probing"]
    scale = 1e-3  # the dataset's inputs are the model's activations x 1000
    separate = {**probing, "train_inputs": data.train.clone(), "test_inputs": data.test.clone(),
                "input_scale": scale}
    noise = Dataset("noise-splits", torch.randn_like(data.train), torch.randn_like(data.test), {},
                    truth={"probing": separate})
    out = SparseProbing().evaluate(TrainedModel(PlantedToy(planted_source=0)), noise, {"seed": 0})
    assert out["probe_acc_k1"] == 1.0  # the label is only in the probe set, not the dataset's splits
    reference = SparseProbing().reference_rows(noise, {}, seed=0)["raw-activations"]
    assert reference == probe_scores(data.train * scale, data.test * scale, probing, seed=0)
