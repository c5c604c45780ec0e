"""Shared pieces of the generated datasets.

Streams (`benchmark.data.Stream`), for every builder that can make more samples: a stream makes
its samples in chunks of up to CHUNK rows (`chunks()`, from a generator seeded by
`stream_seed(seed)`, so its draws are separate from the builder's own draws of the test split
and the dictionary), `rebatch` cuts the chunks into batches, and `take` reads a stream's first
n samples: the builders' `train`. Chunks never depend on the batch size, so every call of
`batches(b)`, whatever b, yields the same sequence, beginning with `train`.

Synthetic dictionary datasets (`correlated`, `tree`, `superposition`): x = z·D + noise with a
known unit-norm dictionary D and known non-negative codes z, both kept in `truth`;
`DictionaryStream` draws fresh codes and noise on the same D.
"""
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from benchmark.data import Dataset, Stream
from benchmark.errors import UserError

# Active codes are drawn uniformly from this range: bounded away from zero, so that "this
# feature is active" stays well defined under the additive noise (support_f1 relies on it).
CODE_RANGE = (0.5, 1.5)

CHUNK = 4096  # samples a stream makes at once
CHUNK_ELEMENTS = 1 << 22  # ... but at most this many values (16 MB of float32) for large samples
STREAM_KEY = 0x57EA  # mixed into the seed: a stream's generator never replays the builder's draws


def stream_seed(seed: int) -> int:
    """The seed of a stream's generator: derived from the dataset's seed, distinct from it."""
    return int(np.random.SeedSequence([int(seed), STREAM_KEY]).generate_state(1)[0])


def chunk_rows(values_per_sample: int) -> int:
    """Samples per chunk for samples of this many values: CHUNK, fewer for large samples."""
    return max(1, min(CHUNK, CHUNK_ELEMENTS // max(1, values_per_sample)))


def rebatch(chunks: Iterable[tuple[torch.Tensor, torch.Tensor | None]], batch_size: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Batches of exactly `batch_size` rows cut from (x, concepts-or-None) chunks of any sizes, in
    order. Each batch owns its memory (a copy), and a chunk is let go before the next one is made:
    at most one chunk and one batch are held, however many batches are drawn."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    xs, cs, held = [], [], 0  # pieces of the next batch
    for x, c in chunks:
        start = 0
        while start < len(x):
            n = min(batch_size - held, len(x) - start)
            xs.append(x[start : start + n])
            cs.append(None if c is None else c[start : start + n])
            held, start = held + n, start + n
            if held == batch_size:
                yield torch.cat(xs), None if c is None else torch.cat(cs)
                xs, cs, held = [], [], 0
        xs, cs = [p.clone() for p in xs], [None if p is None else p.clone() for p in cs]  # not views of x
        del x, c  # before the next chunk is made


def take(chunks: Iterable[tuple], n: int) -> tuple:
    """The first n rows of a stream's chunks (tuples of tensors or arrays, rows first), each part
    concatenated: e.g. (x, codes) of its first n samples."""
    parts, held = [], 0
    for chunk in chunks:
        parts.append(chunk)
        held += len(chunk[0])
        if held >= n:
            break
    cat = lambda items: (torch.cat(items) if torch.is_tensor(items[0]) else np.concatenate(items))[:n]  # noqa: E731
    return tuple(cat(list(items)) for items in zip(*parts))


def orthonormal_rows(n: int, dim: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """(n, dim) float64 rows that are exactly orthonormal (QR of a Gaussian matrix)."""
    if n > dim:
        raise UserError(f"{what} needs {n} orthogonal directions but dim is {dim}; raise dim to at least {n}")
    q, r = np.linalg.qr(rng.standard_normal((dim, n)))
    return (q * np.sign(np.diag(r))).T  # sign fix: the same seed gives the same basis everywhere


def mixed_atoms(shared: np.ndarray, private: np.ndarray, cosine: float) -> np.ndarray:
    """sqrt(c)·shared + sqrt(1-c)·private: with shared ⟂ private, all unit norm, two atoms that
    share `shared` have cosine exactly c."""
    return np.sqrt(cosine) * shared + np.sqrt(1.0 - cosine) * private


def check_group_size(n_atoms: int, group_size: int, what: str) -> None:
    if n_atoms % group_size:
        raise UserError(f"{what}: n_atoms ({n_atoms}) must be a multiple of group_size ({group_size})")


def check_cosine(value: float, what: str) -> None:
    if not 0.0 <= value < 1.0:
        raise UserError(f"{what} must be in [0, 1) (1 would make atoms identical), got {value}")


def magnitudes(active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Non-negative codes: uniform in CODE_RANGE where `active`, zero elsewhere."""
    return np.where(active, rng.uniform(*CODE_RANGE, size=active.shape), 0.0)


# A code sampler: (n, rng, dictionary) -> (codes·D as (n, dim) float64, *code parts with n rows).
# Module-level functions (bound with functools.partial), so that a stream holding one pickles.
Sampler = Callable[..., tuple]


def draw(sample: Sampler, dictionary: np.ndarray, noise: float, n: int, rng: np.random.Generator) -> tuple:
    """n samples: (x = codes·D + N(0, noise²) per coordinate as float32, *code parts)."""
    x, *codes = sample(n, rng, dictionary)
    jitter = rng.standard_normal(x.shape)
    jitter *= noise
    x += jitter  # in place: a chunk's temporaries stay few
    return (torch.tensor(x, dtype=torch.float32), *codes)


class DictionaryStream(Stream):
    """Fresh codes and noise on the known dictionary, CHUNK samples at a time from the
    generator of `stream_seed(seed)`; population None (continuous codes never repeat)."""

    population = None

    def __init__(self, sample: Sampler, dictionary: np.ndarray, noise: float, seed: int):
        self.sample, self.dictionary, self.noise, self.seed = sample, dictionary, noise, seed

    def chunks(self) -> Iterator[tuple]:
        """Endless (x, *code parts) chunks, the same sequence on every call."""
        rng = np.random.default_rng(stream_seed(self.seed))
        while True:
            yield draw(self.sample, self.dictionary, self.noise, CHUNK, rng)

    def batches(self, batch_size: int):
        return rebatch(map(without_codes, self.chunks()), batch_size)


def without_codes(chunk: tuple) -> tuple:
    """(x, None) of an (x, ...) chunk: what `batches` yields for data without concept labels."""
    return chunk[0], None


def dense_codes(n: int, rng: np.random.Generator, dictionary: np.ndarray, supports: Callable) -> tuple:
    """A sampler for dense codes: `supports(n, rng=rng)` -> (n, n_atoms) bool, values in CODE_RANGE."""
    codes = magnitudes(supports(n, rng=rng), rng)
    return codes @ dictionary, codes


def dictionary_dataset(name: str, dictionary: np.ndarray, sample: Sampler, n_train: int, n_test: int,
                       noise: float, rng: np.random.Generator, seed: int, config: dict, **truth) -> Dataset:
    """A dataset of dense codes on `dictionary`: the test split drawn from `rng` (after the
    dictionary), `train` the first n_train samples of its DictionaryStream."""
    test, test_codes = draw(sample, dictionary, noise, n_test, rng)
    stream = DictionaryStream(sample, dictionary, noise, seed)
    train, train_codes = take(stream.chunks(), n_train)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Dataset(
        name=name,
        train=train,
        test=test,
        config=config,
        truth=dict(dictionary=as_tensor(dictionary), train_codes=as_tensor(train_codes),
                   test_codes=as_tensor(test_codes), **truth),
        stream=stream,
    )
