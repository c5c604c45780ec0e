import numpy as np
import pytest
import torch

from benchmark.data import Dataset
from benchmark.training import TrainedModel
from tasks.sparse_probing import SparseProbing, balanced, pool_by_group, probe_scores

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
