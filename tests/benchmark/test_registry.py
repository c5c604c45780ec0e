import pytest

from benchmark.errors import UserError
from benchmark.registry import DATASETS, TASKS, VARIANTS, Registry


def test_duplicate_names_are_refused():
    registry = Registry("thing", "baselines")
    registry.register("a")(type("A", (), {}))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(type("B", (), {}))


def test_unknown_name_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserError, match="unknown variant 'topkk'.*did you mean 'topk'"):
        VARIANTS.get("topkk")


@pytest.mark.parametrize("registry, names", [
    (VARIANTS, {"relu", "topk", "batchtopk", "jumprelu", "matryoshka", "mp", "tensor", "dense", "conv", "supervised"}),
    (TASKS, {"reconstruction", "sparsity", "atom_entropy", "intervention", "correlated_recovery", "composition"}),
    (DATASETS, {"patches32", "digits8", "cifar10", "mnist", "correlated", "tree", "shapes"}),
])
def test_every_spec_entry_is_registered(registry, names):
    assert names <= set(registry.names())


@pytest.mark.parametrize("name", VARIANTS.names())
def test_registered_name_matches_the_class(name):
    assert VARIANTS.get(name).name == name
