"""Presets with --set: changed values, the changed preset's own name, and one clear error per
bad override."""
import pytest

from benchmark.config import load_preset
from benchmark.errors import UserError


def test_set_changes_the_named_values_and_only_those():
    base = load_preset("default")
    changed = load_preset("default", ["datasets.minilm.train.batch_size=128", "train.lr=0.004",
                                      "datasets.prompts.variants.topk.train.min_steps=2000",
                                      "comparison.l0_targets=[4, 8]"])
    assert changed.datasets["minilm"]["train"]["batch_size"] == 128
    assert changed.train["lr"] == 0.004 and isinstance(changed.train["lr"], float)
    assert changed.train_settings("topk", "prompts")["min_steps"] == 2000  # a mapping made on the way
    assert changed.train_settings("topk", "minilm") == {**base.train_settings("topk", "minilm"), "batch_size": 128}
    assert changed.l0_targets("minilm") == [4.0, 8.0]
    for name in ("correlated-rho0.0", "correlated-rho0.3"):  # untouched, merge keys (<<: *correlated) resolved alike
        assert changed.datasets[name] == base.datasets[name]
    assert changed.tasks == base.tasks and changed.variants == base.variants
    assert changed.name == ("default+datasets.minilm.train.batch_size=128+train.lr=0.004"
                            "+datasets.prompts.variants.topk.train.min_steps=2000+comparison.l0_targets=[4, 8]")
    assert "With --set datasets.minilm.train.batch_size=128" in changed.description
    assert load_preset("default", []).name == "default"


def test_set_reaches_a_dataset_whose_name_holds_dots():
    changed = load_preset("default", ["datasets.correlated-rho0.9.train.lr=0.02"])
    assert changed.train_settings("topk", "correlated-rho0.9")["lr"] == 0.02
    assert changed.train_settings("topk", "correlated-rho0.6")["lr"] == 0.01  # its sibling keeps the preset's


@pytest.mark.parametrize("item, message", [
    ("train.lr", "--set wants KEY.PATH=VALUE"),
    ("train..lr=1", "--set wants KEY.PATH=VALUE"),
    ("datasets.synht.train.lr=0.1", "preset 'default' has no dataset 'synht'; its datasets: minilm"),
    ("tasks.reconstrction.datasets=[minilm]", "has no task 'reconstrction'"),
    ("datasets.correlated-rho0.0.kind.x=1", "datasets.correlated-rho0.0.kind is 'correlated', not a mapping"),
    ("train.lr=[1", "'[1' is not a YAML value"),
    ("datasets.minilm.train.batch_size=0", "dataset 'minilm' train 'batch_size' must be a positive integer, got 0"),
    ("datasets.minilm.train.batchsize=64", "dataset 'minilm' 'train' must be a mapping with keys among"),
    ("variants.relu.l1_coef=0.1", "unknown hyperparameter(s) ['l1_coef'] of relu"),
    ("datasets.minilm.budget_check_seeds=0", "dataset 'minilm' 'budget_check_seeds' must be a positive integer"),
])
def test_a_bad_set_is_one_clear_error(item, message):
    with pytest.raises(UserError) as caught:
        load_preset("default", [item])
    assert message in str(caught.value) and "\n" not in str(caught.value)
