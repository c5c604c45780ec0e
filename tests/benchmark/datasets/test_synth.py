"""`synth`: SynthSAEBench's world from SAELens' own generator, sampled from the cell seed."""
import numpy as np
import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.errors import UserError

pytest.importorskip("sae_lens.synthetic", reason="synth needs sae-lens==6.54.12 (a core dependency: pip install -e .)")

from benchmark.datasets.synth import synthetic_model  # noqa: E402


def world(hierarchy=True, correlation=True, num_features=96, hidden_dim=24):
    model = dict(num_features=num_features, hidden_dim=hidden_dim,
                 firing_probability=dict(generator_name="zipfian", exponent=0.5, max_prob=0.4, min_prob=0.01),
                 mean_firing_magnitudes=dict(generator_name="linear", start=5.0, end=4.0),
                 std_firing_magnitudes=dict(generator_name="folded_normal", mean=0.5, std=0.5),
                 bias=0.5, seed=7)
    if hierarchy:
        model["hierarchy"] = dict(total_root_nodes=4, branching_factor=3, max_depth=2, mutually_exclusive_portion=1.0,
                                  compensate_probabilities=True, scale_children_by_parent=True)
    if correlation:
        model["correlation"] = dict(rank=4, correlation_scale=0.1)
    return model


def synth(model, seed=0, n_train=3000, n_test=6000):
    return build_dataset("synth", {"kind": "synth", "model": model, "n_train": n_train, "n_test": n_test}, seed=seed)


def active(dataset) -> torch.Tensor:
    return dataset.truth["test_codes"].to_dense() > 0


def test_firing_rates_and_l0_match_the_configuration_within_sampling_error():
    dataset = synth(world(hierarchy=False, correlation=False), n_test=20000)
    p = dataset.truth["firing_probabilities"].double()
    rate = active(dataset).double().mean(0)
    sigma = (p * (1 - p) / 20000).sqrt()
    assert ((rate - p).abs() <= 4.5 * sigma + 1e-12).all()
    l0 = active(dataset).sum(1).double()
    assert abs(l0.mean() - p.sum()) <= 4.5 * float((p * (1 - p)).sum().sqrt()) / np.sqrt(20000)
    assert sorted(p.tolist(), reverse=True) == p.tolist()  # Zipfian: the most frequent feature first


def test_the_hierarchy_holds_children_fire_only_with_their_parent_and_exclusively():
    model = world()
    dataset = synth(model)
    on = active(dataset)
    checked = 0
    stack = list(synthetic_model(model).hierarchy.roots)
    while stack:
        node = stack.pop()
        children = [c.feature_index for c in node.children if c.feature_index is not None]
        stack.extend(node.children)
        if node.feature_index is None or not children:
            continue
        assert not (on[:, children].any(1) & ~on[:, node.feature_index]).any()  # no child without its parent
        assert node.mutually_exclusive_children
        assert on[:, children].sum(1).max() <= 1  # mutually exclusive children
        checked += int(on[:, children].any(1).sum())
    assert checked > 100  # the constraints were exercised, not vacuous


def test_samples_are_the_dictionary_applied_to_the_true_codes_scaled_to_unit_mean_square():
    dataset = synth(world())
    truth = dataset.truth
    x = (truth["test_codes"].to_dense() @ truth["dictionary"]) / truth["scale"] + truth["bias"]
    torch.testing.assert_close(dataset.test, x, atol=1e-5, rtol=1e-5)
    assert dataset.train.pow(2).mean().item() == pytest.approx(1.0, rel=1e-5)


def test_the_cell_seed_draws_the_samples_from_one_fixed_world():
    model = world()
    a, again, other = synth(model, seed=0), synth(model, seed=0), synth(model, seed=1)
    assert torch.equal(a.train, again.train) and torch.equal(a.test, again.test)
    assert not torch.equal(a.train, other.train)
    assert torch.equal(a.truth["dictionary"], other.truth["dictionary"])  # the world is the config's
    first = next(a.stream.batches(len(a.train)))[0]
    torch.testing.assert_close(first, a.train)  # train is the stream's first samples
    assert not any(torch.equal(a.test[:10], a.train[i : i + 10]) for i in range(0, len(a.train) - 10, 10))


def test_drawing_samples_leaves_the_global_torch_generator_alone():
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    synth(world(), n_train=100, n_test=100)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("bad, fragment", [
    ({"num_features": 0}, "num_features"),
    ({"firing_probability": {"generator_name": "nope"}}, "nope"),
    ({"hierarchy": {"total_root_nodes": 4, "branching_factor": 1}}, "branching_factor"),
])
def test_a_configuration_the_generator_rejects_is_one_clear_error(bad, fragment):
    with pytest.raises(UserError, match=fragment):
        synth({**world(), **bad}, n_train=10, n_test=10)


def test_a_rejected_configuration_through_the_cli_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    import yaml

    from benchmark.cli import main

    bad = {**world(), "hierarchy": {"total_root_nodes": 4, "branching_factor": 1}}
    preset = {"seeds": [0], "n_latents": 8, "train": {"epochs": 1, "batch_size": 32, "lr": 0.001},
              "comparison": {"l0_targets": [2], "headline_l0": 2},
              "datasets": {"synth": {"kind": "synth", "model": bad, "n_train": 64, "n_test": 64}},
              "tasks": {"ground_truth": {"datasets": ["synth"]}},
              "variants": {"topk": {"sweep": [{"k": 2}]}}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset))
    out = tmp_path / "out"
    code = main(["run", "--preset", str(path), "--variant", "topk", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "branching_factor" in err and "Traceback" not in err
    assert not out.exists()
