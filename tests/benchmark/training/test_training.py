import dataclasses

import pytest
import torch

from benchmark.data import Dataset, Stream
from benchmark.registry import VARIANTS
from benchmark.training.loop import ModelCache, TrainConfig, TrainingDiverged, has_converged, train_model


def tiny_dataset():
    g = torch.Generator().manual_seed(0)
    return Dataset("toy", torch.rand(200, 1, 4, 4, generator=g), torch.rand(50, 1, 4, 4, generator=g), {})


def trained(seed, cfg=TrainConfig(2, 32, 1e-3), callbacks=None, dataset=None):
    torch.manual_seed(seed)
    model = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=0.01)
    return train_model(model, dataset or tiny_dataset(), cfg, seed, callbacks)


class CountingStream(Stream):
    """Fresh uniform samples; counts what it hands out (to test that training draws from it)."""

    def __init__(self):
        self.drawn = 0

    def batches(self, batch_size):
        g = torch.Generator().manual_seed(7)
        while True:
            self.drawn += batch_size
            yield torch.rand(batch_size, 1, 4, 4, generator=g), None


def test_same_seed_same_weights_and_other_seed_differs():
    a, b, c = trained(0), trained(0), trained(1)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert not torch.equal(a.model.W_dec, c.model.W_dec)
    assert a.step_losses == b.step_losses and a.steps == 2 * 6  # 200 samples: 6 full batches of 32


def test_training_lowers_the_loss():
    result = trained(0, TrainConfig(20, 32, 1e-2))
    assert sum(result.step_losses[-6:]) < 0.75 * sum(result.step_losses[:6])


def test_callbacks_run_at_every_check():
    cfg = TrainConfig(max_steps=40, batch_size=32, lr=1e-3, check_every=10, min_steps=20)
    result = trained(0, cfg, callbacks={"probe": lambda model, data, step: {"step": step, "training": model.training}})
    assert result.history["probe"] == [{"step": s, "training": False} for s in (10, 20, 30, 40)]


def test_a_nan_loss_stops_training_with_a_clear_error():
    torch.manual_seed(0)
    model = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=float("nan"))
    with pytest.raises(TrainingDiverged, match="became nan by step"):
        train_model(model, tiny_dataset(), TrainConfig(1, 32, 1e-3), 0)


def test_cache_round_trip(tmp_path):
    first = trained(0)
    cache = ModelCache(tmp_path)
    cache.save("key", first)
    fresh = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=0.01)
    loaded = cache.load("key", fresh)
    assert loaded.from_cache and loaded.step_losses == first.step_losses
    assert loaded.plateau_step == first.plateau_step and loaded.cap == first.cap
    assert torch.equal(fresh.W_dec, first.model.W_dec)
    assert cache.load("other", fresh) is None
    (tmp_path / "key.pt").write_bytes(b"truncated")  # a torn entry is retrained, not trusted
    assert cache.load("key", fresh) is None


def test_convergence_needs_a_plateau_after_a_fall():
    # Last 10% within 1% of the previous 10%, after a fall from the first 10%.
    assert has_converged([5.0] * 50 + [1.0] * 50)
    assert has_converged([2.0] * 10 + [1.0] * 80 + [0.995] * 10)
    assert not has_converged([2.0] * 10 + [1.0] * 80 + [0.98] * 10)
    # Still falling steadily (-2% per tenth): not converged.
    assert not has_converged([1.0 - 0.002 * i for i in range(100)])
    # Flat from the start: nothing was learnt (learning rate 0), not converged.
    assert not has_converged([1.0] * 100)
    # A noisy flat loss whose first and last windows differ by chance: not a fall beyond noise.
    noisy = (torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 0.2 + 10).tolist()
    assert not has_converged(noisy)
    assert not has_converged([5.0] * 10 + [1.0] * 9)  # too few steps to show a plateau
    # A fall, then batch noise of 10% per step: the two last windows agree within 1% by chance at
    # 100 steps (windows of 10 cannot resolve 1%), not a plateau; at 10,000 steps they can.
    g = torch.Generator().manual_seed(3)
    for n, expected in [(100, False), (10_000, True)]:
        steps = torch.arange(n, dtype=torch.float64)
        curve = 1.0 + 4.0 * torch.exp(-steps / (n / 20)) + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
        curve[-2 * (n // 10):] = 1.0 + 0.1 * torch.randn(2 * (n // 10), generator=g, dtype=torch.float64)
        if n == 100:  # make the chance agreement exact: the last two window means equal
            curve[-(n // 10):] += curve[-2 * (n // 10) : -(n // 10)].mean() - curve[-(n // 10):].mean()
        assert has_converged(curve.tolist()) is expected, n


def test_a_model_at_learning_rate_zero_is_not_converged_and_trains_to_its_cap():
    result = trained(0, TrainConfig(max_steps=300, batch_size=32, lr=0.0))
    assert not result.converged and result.plateau_step is None
    assert result.steps == 300 == result.cap


def test_the_step_cap_is_honoured_and_reported():
    result = trained(0, TrainConfig(max_steps=30, batch_size=32, lr=1e-2, min_steps=20, check_every=10))
    assert result.steps <= 30 and result.cap == 30
    epochs = trained(0, TrainConfig(epochs=3, batch_size=32, lr=1e-2))
    assert epochs.cap == 18 and epochs.steps == 18  # below min_steps: no plateau check, the cap ends it


def test_training_stops_at_the_plateau_then_decays():
    cfg = TrainConfig(max_steps=5000, batch_size=32, lr=1e-2, min_steps=100, check_every=50)
    plain = trained(0, cfg)
    assert plain.converged and plain.steps == plain.plateau_step < 5000
    decayed = trained(0, TrainConfig(**{**cfg.__dict__, "schedule": "linear_decay", "decay_fraction": 0.5}))
    assert decayed.plateau_step == plain.plateau_step  # judged before the decay
    assert decayed.steps == plain.plateau_step + round(0.5 * plain.plateau_step)
    twice = trained(0, TrainConfig(**{**cfg.__dict__, "length": 2.0}))
    assert twice.plateau_step == plain.plateau_step and twice.steps == 2 * plain.plateau_step


def test_a_streamed_dataset_is_drawn_from_not_repeated():
    stream = CountingStream()
    data = tiny_dataset()
    data.stream = stream
    result = trained(0, TrainConfig(max_steps=40, batch_size=32, lr=1e-3), dataset=data)
    assert result.steps == 40 and stream.drawn == 40 * 32
    off = CountingStream()
    data.stream = off
    trained(0, TrainConfig(max_steps=40, batch_size=32, lr=1e-3, stream=False), dataset=data)
    assert off.drawn == 0  # stream: false trains in epochs over the pool


def test_a_control_counts_as_converged():
    from benchmark.training.loop import TrainedModel

    result = trained(0)
    assert TrainedModel(model=result.model, trained=False).converged


def _stackable():
    import baselines  # noqa: F401  (registers the variants)
    from benchmark.training.stacking import is_stackable

    return [name for name in VARIANTS.names() if is_stackable(VARIANTS.get(name))]


SWEEPS = {"k": [2, 3, 5], "l1_coeff": [0.05, 0.2, 0.6], "l0_coeff": [0.01, 0.05, 0.2]}


def toy_sweep(name):
    """(the variant's stackable knob, two seeds' float64 data, a short config with plateau checks
    and decay, fresh(value, seed) -> a model as the grid seeds it)."""
    cls = VARIANTS.get(name)
    (knob,) = cls.stackable_hparams
    g = torch.Generator().manual_seed(1)
    data = [Dataset(f"toy{s}", torch.randn(512, 12, generator=g).double(), torch.randn(64, 12, generator=g).double(), {})
            for s in range(2)]
    cfg = TrainConfig(max_steps=120, batch_size=32, lr=1e-2, min_steps=20, check_every=10,
                      schedule="linear_decay", decay_fraction=0.5)

    def fresh(value, seed):
        torch.manual_seed(seed)
        return cls((12,), 24, **{knob: value}).double()

    return knob, data, cfg, fresh


@pytest.mark.parametrize("name", _stackable())
def test_a_stacked_sweep_trains_like_its_models_alone(name):
    """Through the whole loop (plateau checks, decay, models leaving the stack at different
    steps, two seeds' data): weights, codes and loss curves equal those of each model alone.
    In float64, so that float32 rounding of batched products cannot tip a top-k choice."""
    from benchmark.training.loop import train_models

    knob, data, cfg, fresh = toy_sweep(name)
    cells = [(value, seed) for value in SWEEPS[knob] for seed in (0, 1)]

    alone = [train_models([fresh(v, s)], [data[s]], cfg, [s])[0] for v, s in cells]
    together = train_models([fresh(v, s) for v, s in cells], [data[s] for _, s in cells], cfg, [s for _, s in cells],
                            hparams=[{knob: v} for v, _ in cells])
    for a, b in zip(alone, together):
        assert a.steps == b.steps and a.plateau_step == b.plateau_step
        assert torch.allclose(torch.tensor(a.step_losses), torch.tensor(b.step_losses), rtol=1e-6)
        for (pname, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            assert torch.allclose(p.double(), q.double(), rtol=1e-6, atol=1e-9), pname
        x = data[0].test
        assert torch.allclose(a.model.encode(x), b.model.encode(x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", _stackable())
def test_a_fork_trains_like_the_longer_model_alone_without_repeating_the_shared_steps(name, monkeypatch):
    """The budget check's 2x model rides its parent's stack row until their schedules part: it
    ends where the 2x model trained alone ends (weights, loss curve, plateau), its parent where
    the 1x one does, and the steps they share are taken once."""
    from benchmark.training import loop
    from benchmark.training.loop import Fork, train_models

    knob, data, cfg, fresh = toy_sweep(name)
    longer = dataclasses.replace(cfg, length=2.0)
    cells = [(value, seed) for value in SWEEPS[knob][:2] for seed in (0, 1)]

    rows = []
    step = loop._stacked_step
    monkeypatch.setattr(loop, "_stacked_step", lambda module, opt, x, scales: rows.append(len(x)) or step(module, opt, x, scales))
    forks = [Fork(i, fresh(*cells[i]), longer) for i in (0, 3)]
    together = train_models([fresh(v, s) for v, s in cells], [data[s] for _, s in cells], cfg, [s for _, s in cells],
                            hparams=[{knob: v} for v, _ in cells], forks=forks)
    alone = [train_models([fresh(v, s)], [data[s]], cfg, [s])[0] for v, s in cells]
    alone += [train_models([fresh(*cells[f.parent])], [data[cells[f.parent][1]]], longer, [cells[f.parent][1]])[0]
              for f in forks]
    assert [r.model for r in together[len(cells):]] == [f.model for f in forks]
    for a, b in zip(alone, together):
        assert a.steps == b.steps and a.plateau_step == b.plateau_step
        assert torch.allclose(torch.tensor(a.step_losses), torch.tensor(b.step_losses), rtol=1e-6)
        for (pname, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values()):
            assert torch.allclose(p.double(), q.double(), rtol=1e-6, atol=1e-9), pname
    assert together[-1].steps > together[3].steps  # the fork trained on past its parent
    shared = sum(min(together[f.parent].steps, together[len(cells) + j].steps) for j, f in enumerate(forks))
    assert sum(rows) < sum(r.steps for r in together)  # the shared steps were taken once
    assert sum(rows) >= sum(r.steps for r in together) - shared


def test_a_fork_must_differ_from_its_parent_in_length_only():
    from benchmark.training.loop import Fork, train_models

    model = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=0.01)
    other = VARIANTS.get("relu")((1, 4, 4), 8, l1_coeff=0.01)
    cfg = TrainConfig(2, 32, 1e-3)
    with pytest.raises(ValueError, match="length"):
        train_models([model], [tiny_dataset()], cfg, [0], hparams=[{"l1_coeff": 0.01}],
                     forks=[Fork(0, other, dataclasses.replace(cfg, lr=1e-2, length=2.0))])
