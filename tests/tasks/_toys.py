"""Hand-built models and data shared by the atom_entropy and intervention tests."""
import functools

import torch

from benchmark.config import load_preset
from benchmark.data import Dataset
from benchmark.registry import VARIANTS
from benchmark.training.loop import TrainConfig, TrainedModel, train_model
from benchmark.variant import SAE


class AffineToy(SAE):
    """x_hat = codes · D + b with a fixed dictionary D; codes = ReLU(x · E): known atoms and a
    known set of latents that can fire."""

    def __init__(self, dictionary: torch.Tensor, bias: torch.Tensor, encoder: torch.Tensor):
        super().__init__(tuple(bias.shape), dictionary.shape[0])
        self.dictionary = torch.nn.Parameter(dictionary.flatten(1).clone())
        self.bias = torch.nn.Parameter(bias.flatten().clone())
        self.encoder = torch.nn.Parameter(encoder.clone())  # (input_dim, n_latents)

    def encode(self, x):
        return (x.flatten(1) @ self.encoder).relu()

    def decode(self, codes):
        return (codes @ self.dictionary + self.bias).view(-1, *self.input_shape)

    def loss(self, x, x_hat, codes):
        mse = (x - x_hat).pow(2).mean()
        return mse, {"mse": mse.detach()}


def image_dataset(n_train=96, n_test=80, shape=(3, 16, 16), seed=0, concepts=True) -> Dataset:
    """Random images in [0, 1], with two concept factors (so the supervised variant runs too)."""
    g = torch.Generator().manual_seed(seed)
    train, test = torch.rand(n_train, *shape, generator=g), torch.rand(n_test, *shape, generator=g)
    labels = (lambda n: torch.stack([torch.randint(3, (n,), generator=g), torch.randint(2, (n,), generator=g)], 1))
    return Dataset(
        name="tiny", train=train, test=test, config={"kind": "tiny", "seed": seed},
        train_concepts=labels(n_train) if concepts else None,
        test_concepts=labels(n_test) if concepts else None,
    )


def trained_variant(name: str, dataset: Dataset, epochs: int, callbacks=None, n_latents=48,
                    check_every: int = 50) -> TrainedModel:
    """A variant trained briefly with the smoke preset's hyperparameters, resolved as the runner
    does (without parameter matching, irrelevant here); callbacks run every `check_every` steps."""
    cls = VARIANTS.get(name)
    hparams = next(iter(load_preset("smoke").settings(name, "whitened8").values()))  # the first sweep setting
    hparams.pop("match_params_of", None)
    step = cls.latent_step(dataset.input_shape)
    n_latents, hparams = cls.configure(dataset, max(step, n_latents // step * step), hparams)
    torch.manual_seed(0)
    model = cls(dataset.input_shape, n_latents, **hparams)
    return train_model(model, dataset, TrainConfig(epochs, 32, 1e-3, check_every=check_every), seed=0,
                       callbacks=callbacks)


@functools.cache
def untrained_and_trained_whitened_topk():
    """TopK (216 latents, k = 4) on whitened 6×6 crops, untrained and after 15 epochs (240
    steps), shared by the atom and intervention tests; one thread, as the runner's children use:
    faster on a busy 2-core machine."""
    from benchmark.datasets import build_dataset

    data = build_dataset("wp", {"kind": "whitened_patches", "size": 6, "n_train": 2000, "n_test": 256})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = []
        for epochs in (0, 15):
            torch.manual_seed(0)
            model = VARIANTS.get("topk")(data.input_shape, 216, k=4, aux_k=108, dead_steps=50)
            models.append(train_model(model, data, TrainConfig(epochs, 128, 3e-3), seed=0))
    finally:
        torch.set_num_threads(threads)
    return data, *models
