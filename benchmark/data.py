"""The dataset container shared by builders, the trainer and the tasks (SPEC section 3)."""
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch


class Stream:
    """Fresh training samples for as long as training runs (SPEC section 3), for a dataset that
    can make more: new crops of the seed's training photographs, new codes on the known
    dictionary. Training then counts samples seen, never epochs, and no sample repeats while
    the source has unseen ones (`population` says how many distinct samples there are; None:
    unbounded, e.g. continuous random codes). Memory does not grow with the steps drawn.

    `batches(batch_size)` starts the same seeded sequence on every call (every model trained on
    the dataset sees the same batches, which is what lets a stack share them): an endless
    iterator of (x, concepts) on the CPU, x float32 shaped like the dataset's samples, concepts
    a (B, n_factors) long tensor or None. A stream must be picklable (it crosses to child
    processes) and is never touched by the test split, which stays fixed and disjoint.
    """

    population: int | None = None

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        raise NotImplementedError


@dataclass
class Dataset:
    """One dataset instance: float32 tensors, images in [0, 1], (N, C, H, W) or (N, D).

    `name` is the instance name used in results (e.g. "correlated-rho0.6"); `config` holds every
    parameter it was built from (part of the config hash). `truth` keeps ground truth for tasks
    that score against it (true dictionary, true codes, held-out tuples...).
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    config: dict
    train_concepts: torch.Tensor | None = None  # (N, n_factors) long, when the data has concepts
    test_concepts: torch.Tensor | None = None
    truth: dict = field(default_factory=dict)
    # Fresh training samples from the seed (None: a finite dataset, trained in epochs over
    # `train`). With a stream, `train` is the stream's first samples: the pool that statistics
    # (whitening, controls, `init_from_data`) are fitted on.
    stream: Stream | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train.ndim == 4

    def capabilities(self) -> set[str]:
        caps = {"image"} if self.is_image else set()
        if self.train_concepts is not None:
            caps.add("concepts")
        return caps

    def concept_sizes(self) -> tuple[int, ...]:
        """Values per concept factor: `truth["factor_sizes"]` when the builder declares the
        vocabulary, else inferred from the labels (largest label + 1)."""
        if "factor_sizes" in self.truth:
            return tuple(int(n) for n in self.truth["factor_sizes"])
        labels = [c for c in (self.train_concepts, self.test_concepts) if c is not None]
        if not labels:
            raise ValueError(f"{self.name} has no concept labels")
        return tuple(int(n) for n in torch.cat(labels).amax(0) + 1)

    def to(self, device) -> "Dataset":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(
            self,
            train=move(self.train),
            test=move(self.test),
            train_concepts=move(self.train_concepts),
            test_concepts=move(self.test_concepts),
        )


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded train/test split of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return perm[n_test:].sort().values, perm[:n_test].sort().values
