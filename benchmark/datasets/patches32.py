"""`patches32`: 32×32 RGB crops of the colour photographs bundled with scikit-learn and
scikit-image, a stand-in for CIFAR-10 that needs no download.

Each photograph is first downscaled so its short side is `short_side` pixels, so that a crop
covers a sizeable part of a scene (as a CIFAR image does) rather than a flat patch of it.
Test crops come from photographs never used for training: the seed picks 3 of the 10 bundled
photographs for the test split, so the spread over seeds includes which scenes are held out;
the test crops sit at uniform random positions drawn from `seed`, fixed per seed.

Training crops are a stream (`CropStream`): every distinct crop position (photograph, top, left)
of the training photographs, in a seeded random order without replacement (one random
permutation of all positions per pass, a new one for the next pass), so no crop repeats before
all of them have been used; `population` is their number. `train` is the stream's first
`n_train` crops.
"""
from collections.abc import Callable, Iterator
from functools import lru_cache

import skimage.data
import torch
from sklearn.datasets import load_sample_images

from benchmark.data import Dataset, Stream
from benchmark.datasets._synthetic import chunk_rows, rebatch, stream_seed, take, without_codes
from benchmark.registry import DATASETS

PHOTOS = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "stereo_motorcycle",
          "china.jpg", "chelsea", "flower.jpg", "retina")
N_TEST_PHOTOS = 3


def photo_split(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training photographs, test photographs): a seeded choice of N_TEST_PHOTOS held out."""
    order = torch.randperm(len(PHOTOS), generator=torch.Generator().manual_seed(seed)).tolist()
    test = {PHOTOS[i] for i in order[:N_TEST_PHOTOS]}
    return tuple(p for p in PHOTOS if p not in test), tuple(p for p in PHOTOS if p in test)


TRAIN_PHOTOS, TEST_PHOTOS = photo_split(0)


def load_photo(name: str) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]; names ending in .jpg come from scikit-learn."""
    if name.endswith(".jpg"):
        sample = load_sample_images()
        image = sample.images[[f.rsplit("/", 1)[-1] for f in sample.filenames].index(name)]
    else:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left view
    return torch.tensor(image[..., :3]).permute(2, 0, 1).float() / 255


def downscale(photo: torch.Tensor, short_side: int) -> torch.Tensor:
    scale = short_side / min(photo.shape[1:])
    size = [max(round(s * scale), short_side) for s in photo.shape[1:]]
    return torch.nn.functional.interpolate(photo[None], size=size, mode="bilinear", antialias=True)[0]


@lru_cache(maxsize=8)
def downscaled_photos(names: tuple[str, ...], short_side: int) -> tuple[torch.Tensor, ...]:
    """The photographs, downscaled; cached because every seed of a run, and every stream, crops
    the same ones (callers only read them: crops are copies)."""
    return tuple(downscale(load_photo(p), short_side) for p in names)


def random_crops(photos: list[torch.Tensor], n: int, size: int, generator) -> torch.Tensor:
    """n crops, photographs drawn uniformly, positions uniform within each photograph."""
    which = torch.randint(len(photos), (n,), generator=generator)
    crops = torch.empty(n, 3, size, size)
    for i, p in enumerate(which.tolist()):
        photo = photos[p]
        top = int(torch.randint(photo.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(photo.shape[2] - size + 1, (1,), generator=generator))
        crops[i] = photo[:, top : top + size, left : left + size]
    return crops.clamp_(0, 1)


class CropStream(Stream):
    """Every size×size crop position (photograph, top, left) of the photographs `names`
    (downscaled to `short_side`), in a seeded random order without replacement: one
    `torch.randperm` of all positions per pass (memory O(positions), fixed), then a new one.
    `population` is the number of positions. `transform` (picklable, e.g. ZCA whitening) maps
    each chunk of [0, 1] crops. The photographs are not pickled: a process loads them once."""

    def __init__(self, names, short_side: int, size: int, seed: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.names, self.short_side, self.size, self.seed = tuple(names), short_side, size, seed
        self.transform = transform
        self.population = int(self.grid().prod(1).sum())

    def photos(self) -> tuple[torch.Tensor, ...]:
        return downscaled_photos(self.names, self.short_side)

    def grid(self) -> torch.Tensor:
        """(n_photos, 2) long: crop positions per photograph, vertically and horizontally."""
        return torch.tensor([[p.shape[1] - self.size + 1, p.shape[2] - self.size + 1] for p in self.photos()])

    def positions(self) -> Iterator[torch.Tensor]:
        """Endless (n, 3) long chunks of crop positions (photograph, top, left): the same sequence
        on every call."""
        generator = torch.Generator().manual_seed(stream_seed(self.seed))
        grid = self.grid()
        ends = grid.prod(1).cumsum(0)
        starts = ends - grid.prod(1)
        step = chunk_rows(3 * self.size * self.size)
        while True:  # one pass: every position once
            order = torch.randperm(self.population, generator=generator)
            for lo in range(0, self.population, step):
                flat = order[lo : lo + step]
                photo = torch.searchsorted(ends, flat, right=True)
                local, width = flat - starts[photo], grid[photo, 1]
                yield torch.stack([photo, local // width, local % width], 1)

    def chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (crops (n, 3, size, size), positions (n, 3)) chunks."""
        windows = [p.unfold(1, self.size, 1).unfold(2, self.size, 1) for p in self.photos()]  # views
        for positions in self.positions():
            crops = torch.empty(len(positions), 3, self.size, self.size)
            for i, window in enumerate(windows):
                rows = (positions[:, 0] == i).nonzero().flatten()
                if len(rows):
                    crops[rows] = window[:, positions[rows, 1], positions[rows, 2]].transpose(0, 1)
            crops.clamp_(0, 1)
            if self.transform is not None:
                crops = self.transform(crops)
            yield crops, positions
            del crops  # not held while the next chunk is made

    def batches(self, batch_size: int):
        return rebatch(map(without_codes, self.chunks()), batch_size)


@DATASETS.register("patches32")
def build(name, *, data_root=None, download=False, n_train=10000, n_test=2000, size=32,
          short_side=128, seed=0):
    train_names, test_names = photo_split(seed)
    stream = CropStream(train_names, short_side, size, seed)
    train, _ = take(stream.chunks(), n_train)
    test = random_crops(downscaled_photos(test_names, short_side), n_test, size, torch.Generator().manual_seed(seed))
    return Dataset(
        name=name,
        train=train,
        test=test,
        config=dict(kind="patches32", n_train=n_train, n_test=n_test, size=size,
                    short_side=short_side, seed=seed),
        stream=stream,
    )
