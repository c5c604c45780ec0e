from benchmark import plan
from benchmark.plan import ModelSpec
from benchmark.training import TrainConfig


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
