import torch
from benchmark.grid import plan
from benchmark.grid.plan import ModelSpec
from benchmark.training.loop import TrainConfig


def spec(**changes):
    fields = dict(variant="relu", n_latents=8, hparams={"l1_coeff": 0.1}, train=TrainConfig(1, 8, 1e-3),
                  seed=0, dataset_config={"kind": "digits8"})
    return ModelSpec(**{**fields, **changes})


def test_the_model_cache_key_sees_everything_that_determines_a_model():
    base = spec().key([])
    assert spec().key([]) == base
    for changed in [spec(n_latents=9), spec(hparams={"l1_coeff": 0.2}), spec(train=TrainConfig(2, 8, 1e-3)),
                    spec(seed=1), spec(dataset_config={"kind": "digits8", "seed": 1})]:
        assert changed.key([]) != base
    assert spec().key(["intervention"]) != base  # per-epoch callbacks are stored with the model


def test_the_model_cache_key_changes_with_the_training_code(monkeypatch):
    before = spec().key([])
    monkeypatch.setattr(plan, "training_code_digest", lambda: "edited code")
    assert spec().key([]) != before


def test_the_training_code_digest_covers_the_variant_files():
    plan.training_code_digest.cache_clear()
    assert plan.training_code_digest() == plan.training_code_digest()
    assert len(plan.training_code_digest()) == 16


def patches_runner(tmp_path, variant: str, entry: str):
    """A runner of one variant (its preset entry `entry`) on 8x8 patches, seeds 0 and 1, K 32,
    its datasets loaded."""
    from benchmark.config import parse_preset
    from benchmark.grid.runner import RunOptions, Runner

    preset = parse_preset(
        "seeds: [0, 1]\nn_latents: 32\ntrain: {epochs: 1, batch_size: 64, lr: 0.001}\n"
        "datasets: {p: {kind: patches32, size: 8, n_train: 64, n_test: 16}}\n"
        f"tasks: {{reconstruction: {{datasets: [p]}}}}\nvariants: {{{variant}: {entry}}}\n", "t", "t")
    runner = Runner(RunOptions(preset=preset, variants=[variant], controls=False, out_dir=tmp_path, progress=False,
                               twins=False))
    runner.load_datasets()
    return runner


def test_each_seed_builds_its_own_data_and_the_spec_sees_it(tmp_path):
    """Datasets are rebuilt from the cell's seed: different crops, a different model identity."""
    from benchmark.grid.runner import Cell

    runner = patches_runner(tmp_path, "topk", "{aux_k: 8, sweep: [{k: 2}, {k: 4}]}")
    a, b = runner.datasets["p", 0], runner.datasets["p", 1]
    assert not torch.equal(a.train, b.train) and a.config != b.config
    cells = runner.cells()
    assert {(c.setting, c.seed) for c in cells} == {("k=2", 0), ("k=4", 0), ("k=2", 1), ("k=4", 1)}
    specs = {c: runner.model_spec(c) for c in cells}
    assert specs[Cell("topk", "k=2", "p", 0)].hparams["k"] == 2
    assert len({spec.key([]) for spec in specs.values()}) == 4


def test_a_dataset_sweep_replaces_the_variants_and_labels_are_stable():
    from benchmark.config import parse_preset, setting_label

    preset = parse_preset(
        "seeds: [0]\ntrain: {epochs: 1, batch_size: 8, lr: 0.1}\n"
        "datasets: {digits8: {variants: {topk: {sweep: [{k: 1}]}}}, other: {kind: digits8}}\n"
        "tasks: {sparsity: {datasets: [digits8, other]}}\n"
        "variants: {topk: {aux_k: 4, sweep: [{k: 2}, {k: 8}]}, relu: {l1_coeff: 0.1}}\n", "t", "t")
    assert preset.settings("topk", "digits8") == {"k=1": {"aux_k": 4, "k": 1}}
    assert list(preset.settings("topk", "other")) == ["k=2", "k=8"]
    assert preset.settings("relu", "other") == {"default": {"l1_coeff": 0.1}}
    assert setting_label({"b": 1, "a": 0.5}) == "a=0.5,b=1"


def test_a_model_whose_latents_are_all_dead_is_skipped_by_the_atom_tasks_not_an_error(tmp_path):
    """A sweep setting whose penalty kills every latent leaves the atom tasks nothing to
    measure: a `skipped` row with the reason, and the run exits 0."""
    from benchmark.cli import main

    submission = tmp_path / "dead.py"
    submission.write_text(
        "import torch\nfrom benchmark.variant import SAE\n\n"
        "class Dead(SAE):\n"
        "    def __init__(self, input_shape, n_latents):\n"
        "        super().__init__(input_shape, n_latents)\n"
        "        self.w = torch.nn.Parameter(torch.zeros(n_latents, self.input_dim))\n"
        "    def encode(self, x):\n"
        "        return (x.flatten(1) @ self.w.t()).relu() * 0\n"
        "    def decode(self, z):\n"
        "        return (z @ self.w).view(-1, *self.input_shape)\n"
        "    def loss(self, x, x_hat, z):\n"
        "        return (x - x_hat).pow(2).mean() + 0 * self.w.sum(), {}\n")
    preset = tmp_path / "p.yaml"
    preset.write_text("seeds: [0]\nn_latents: 16\ntrain: {epochs: 1, batch_size: 64, lr: 0.001}\n"
                      "datasets: {w: {kind: whitened_patches, size: 4, n_train: 128, n_test: 64}}\n"
                      "tasks: {atom_entropy: {datasets: [w]}, intervention: {datasets: [w]}}\n")
    out = tmp_path / "out"
    assert main(["run", "--variant", f"{submission}:Dead", "--preset", str(preset), "--out", str(out),
                 "--no-progress", "--no-controls", "--jobs", "1"]) == 0
    import pandas as pd

    rows = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert set(rows["status"]) == {"skipped"} and all("no alive atoms" in m for m in rows["message"])


def test_a_matched_width_is_searched_once_per_dataset_and_equals_the_search(tmp_path, monkeypatch):
    """dense matched to tensor's parameters: every cell and task asks for the width; the planner
    bisects once (the same width as the search itself), and still pickles (Ray ships runners)."""
    import pickle

    from benchmark.flops import match_n_latents, params_of
    from benchmark.registry import VARIANTS

    runner = patches_runner(tmp_path, "dense", "{match_params_of: tensor, sweep: [{l1_coeff: 0.1}, {l1_coeff: 0.2}]}")
    searches = []
    monkeypatch.setattr(plan, "match_n_latents", lambda *a, **k: searches.append(a) or match_n_latents(*a, **k))
    widths = {runner.model_spec(cell).n_latents for cell in runner.cells() for _ in range(3)}
    shape = runner.datasets["p", 0].input_shape
    target = params_of(VARIANTS.get("tensor"), shape, 32, {})
    assert widths == {match_n_latents(VARIANTS.get("dense"), shape, {"l1_coeff": 0.1}, target)} and widths != {32}
    assert len(searches) == 2  # one per setting (their hyperparameters differ), not per cell or call
    assert pickle.loads(pickle.dumps(runner.planner))._widths == runner.planner._widths
