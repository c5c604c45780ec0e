import pytest
import torch

from benchmark.data import Dataset
from benchmark.registry import VARIANTS
from benchmark.training import ModelCache, TrainConfig, TrainingDiverged, train_model


def tiny_dataset():
    g = torch.Generator().manual_seed(0)
    return Dataset("toy", torch.rand(200, 1, 4, 4, generator=g), torch.rand(50, 1, 4, 4, generator=g), {})


def trained(seed, cfg=TrainConfig(2, 32, 1e-3), callbacks=None):
    torch.manual_seed(seed)
    model = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=0.01)
    return train_model(model, tiny_dataset(), cfg, seed, callbacks)


def test_same_seed_same_weights_and_other_seed_differs():
    a, b, c = trained(0), trained(0), trained(1)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not torch.equal(a.model.W_dec, c.model.W_dec)
    assert a.epoch_losses == b.epoch_losses and len(a.epoch_losses) == 2


def test_training_lowers_the_loss():
    result = trained(0, TrainConfig(20, 32, 1e-2))
    assert result.epoch_losses[-1] < 0.75 * result.epoch_losses[0]


def test_callbacks_run_after_every_epoch():
    result = trained(0, callbacks={"probe": lambda model, data, epoch: {"epoch": epoch, "training": model.training}})
    assert result.history["probe"] == [{"epoch": 0, "training": False}, {"epoch": 1, "training": False}]


def test_a_nan_loss_stops_training_with_a_clear_error():
    torch.manual_seed(0)
    model = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=float("nan"))
    with pytest.raises(TrainingDiverged, match="became nan in epoch 1"):
        train_model(model, tiny_dataset(), TrainConfig(1, 32, 1e-3), 0)


def test_cache_round_trip(tmp_path):
    first = trained(0)
    cache = ModelCache(tmp_path)
    cache.save("key", first)
    fresh = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=0.01)
    loaded = cache.load("key", fresh)
    assert loaded.from_cache and loaded.epoch_losses == first.epoch_losses
    assert torch.equal(fresh.W_dec, first.model.W_dec)
    assert cache.load("other", fresh) is None
    (tmp_path / "key.pt").write_bytes(b"truncated")  # a torn entry is retrained, not trusted
    assert cache.load("key", fresh) is None


def test_convergence_compares_the_last_tenth_of_steps_with_the_one_before():
    from benchmark.training import has_converged

    flat = [1.0] * 100
    assert has_converged(flat)
    # Last 10% at 0.995 against 1.0: within 1%. At 0.98: not.
    assert has_converged([1.0] * 90 + [0.995] * 10)
    assert not has_converged([1.0] * 90 + [0.98] * 10)
    # Still falling steadily (-2% per tenth): not converged; earlier steps do not matter.
    assert not has_converged([1.0 - 0.002 * i for i in range(100)])
    assert has_converged([5.0] * 50 + [1.0] * 50)
    assert not has_converged([1.0] * 19)  # too few steps to show a plateau


def test_a_trained_model_records_every_step_and_a_control_counts_as_converged():
    from benchmark.training import TrainedModel

    result = trained(0, TrainConfig(3, 32, 1e-3))
    assert result.steps == 3 * 7 == len(result.step_losses)  # 200 samples in batches of 32: 7 a epoch
    assert TrainedModel(model=result.model, trained=False).converged
