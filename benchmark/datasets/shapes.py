"""`shapes`: procedurally drawn RGB images with concept factors, for unseen-composition tests.

Every image is one coloured shape on a black background, described by four factors:
shape (square, circle, triangle, cross), colour (6), position (a 3×3 grid: 9 values) and
size (2). Shapes are drawn anti-aliased by supersampling, so a sub-pixel shift changes pixels.

The split is by concept tuple, never by image: held-out tuples never appear in training.
- `split: tuple`: a seeded `heldout_fraction` of all tuples is held out.
- `split: pair`: `n_pairs` seeded (shape, colour) pairs, with distinct shapes and distinct
  colours, are held out together with every tuple containing them.
Either way every single concept value still appears in training (checked).

Training images are a stream (`RenderingStream`) of new renderings of the training tuples only
(held-out tuples never appear in it), each with a uniform position jitter of ±`position_jitter`
px and Gaussian colour jitter (std `colour_jitter`, clipped), in passes: each pass renders every
training tuple once, in a fresh seeded random order. `train` is the stream's first `renderings`
passes: `renderings` renderings of each training tuple.
Test images: one canonical (un-jittered) rendering of each held-out tuple, in sorted tuple order.
`truth["seen_test"]` holds the canonical renderings of the training tuples (labels in
`truth["seen_test_concepts"]`): images never trained on, of tuples that were, for the
seen-tuple score of `composition`.
`size` (pixels per side) should be a multiple of 4 so that the `conv` variant applies.
The `seed` fixes the split and (through a generator of the stream's own) the stream; truth keeps
factor names and sizes, value names, and the train and held-out tuples.
"""
import itertools
from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F

from benchmark.data import Dataset, Stream
from benchmark.datasets._synthetic import chunk_rows, rebatch, stream_seed, take
from benchmark.registry import DATASETS

SHAPES = ("square", "circle", "triangle", "cross")
COLOURS = {  # slightly desaturated so that colour jitter is not lost to clipping
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.1, 0.1, 0.9),
    "yellow": (0.9, 0.9, 0.1),
    "magenta": (0.9, 0.1, 0.9),
    "cyan": (0.1, 0.9, 0.9),
}
GRID = 3  # positions: cell centres of a GRID × GRID grid
SIZES = (0.55, 0.95)  # half-extent of a shape, as a fraction of half a grid cell
FACTOR_NAMES = ("shape", "colour", "position", "size")
FACTOR_SIZES = (len(SHAPES), len(COLOURS), GRID * GRID, len(SIZES))
SUPERSAMPLE = 4  # sub-samples per pixel side, for anti-aliasing


def all_tuples() -> torch.Tensor:
    """Every concept tuple, (n_tuples, 4) long, in lexicographic order."""
    return torch.tensor(list(itertools.product(*(range(n) for n in FACTOR_SIZES))), dtype=torch.long)


def covers_every_value(tuples: torch.Tensor) -> bool:
    return all(tuples[:, f].unique().numel() == n for f, n in enumerate(FACTOR_SIZES))


def heldout_mask(split: str, generator: torch.Generator, heldout_fraction: float, n_pairs: int) -> torch.Tensor:
    """Boolean mask over `all_tuples()`: True for held-out tuples."""
    tuples = all_tuples()
    if split == "tuple":
        n_heldout = int(round(heldout_fraction * len(tuples)))
        for _ in range(100):  # redraw (seeded) in the unlikely case a value vanishes from training
            mask = torch.zeros(len(tuples), dtype=torch.bool)
            mask[torch.randperm(len(tuples), generator=generator)[:n_heldout]] = True
            if covers_every_value(tuples[~mask]):
                return mask
        raise ValueError(f"heldout_fraction={heldout_fraction} leaves some concept value out of training")
    if split == "pair":
        n_shapes, n_colours = FACTOR_SIZES[0], FACTOR_SIZES[1]
        if not 1 <= n_pairs <= min(n_shapes, n_colours):
            raise ValueError(f"n_pairs must be in 1..{min(n_shapes, n_colours)}, got {n_pairs}")
        # Distinct shapes and distinct colours: each value loses at most one partner.
        shapes = torch.randperm(n_shapes, generator=generator)[:n_pairs]
        colours = torch.randperm(n_colours, generator=generator)[:n_pairs]
        mask = torch.zeros(len(tuples), dtype=torch.bool)
        for s, c in zip(shapes, colours):
            mask |= (tuples[:, 0] == s) & (tuples[:, 1] == c)
        return mask
    raise ValueError(f"split must be 'tuple' or 'pair', got {split!r}")


def inside(shape: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Whether the offsets (dx, dy) from the centre (y pointing down) lie inside the shape."""
    if SHAPES[shape] == "square":
        return (dx.abs() <= r) & (dy.abs() <= r)
    if SHAPES[shape] == "circle":
        return dx.pow(2) + dy.pow(2) <= r.pow(2)
    if SHAPES[shape] == "triangle":  # apex up, base down, height = base = 2r
        return (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2)
    bar = r / 3  # cross: two bars of width 2r/3
    return ((dx.abs() <= bar) & (dy.abs() <= r)) | ((dy.abs() <= bar) & (dx.abs() <= r))


def render(concepts: torch.Tensor, size: int, offsets: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(N, 3, size, size) images of `concepts` (N, 4), centre offsets (N, 2) px, colours (N, 3)."""
    cell = size / GRID
    position = concepts[:, 2]
    centre_x = (position % GRID + 0.5) * cell + offsets[:, 0]
    centre_y = (position // GRID + 0.5) * cell + offsets[:, 1]
    radius = torch.tensor(SIZES)[concepts[:, 3]] * cell / 2
    samples = (torch.arange(size * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # sub-sample centres, px
    dx = samples[None, None, :] - centre_x[:, None, None]
    dy = samples[None, :, None] - centre_y[:, None, None]
    r = radius[:, None, None]
    mask = torch.zeros(len(concepts), size * SUPERSAMPLE, size * SUPERSAMPLE)
    for shape in range(len(SHAPES)):
        rows = concepts[:, 0] == shape
        if rows.any():
            mask[rows] = inside(shape, dx[rows], dy[rows], r[rows]).float()
    coverage = F.avg_pool2d(mask[:, None], SUPERSAMPLE)  # (N, 1, size, size), in [0, 1]
    return (colours[:, :, None, None] * coverage).clamp(0, 1)


def render_in_chunks(concepts, size, offsets, colours, chunk: int = 512) -> torch.Tensor:
    # Bounded memory: the supersampled masks of a large dataset would not fit at once.
    parts = [
        render(concepts[i : i + chunk], size, offsets[i : i + chunk], colours[i : i + chunk])
        for i in range(0, len(concepts), chunk)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, 3, size, size)


def jittered(concepts: torch.Tensor, generator: torch.Generator, size: int, position_jitter: float,
             colour_jitter: float) -> torch.Tensor:
    """Renderings of `concepts` (N, 4), each with its own position and colour jitter."""
    n = len(concepts)
    offsets = (torch.rand(n, 2, generator=generator) * 2 - 1) * position_jitter
    base = torch.tensor(list(COLOURS.values()))[concepts[:, 1]]
    colours = (base + colour_jitter * torch.randn(n, 3, generator=generator)).clamp(0, 1)
    return render_in_chunks(concepts, size, offsets, colours)


class RenderingStream(Stream):
    """New renderings of the training tuples (or pairs) only, with their concept labels: passes
    over `tuples`, each pass a fresh seeded permutation of them, rendered by `render(concepts,
    generator)` (picklable; it draws the jitter). population None: the jitter is continuous."""

    population = None

    def __init__(self, tuples: torch.Tensor, render: Callable, values_per_sample: int, seed: int):
        self.tuples, self.render, self.seed = tuples, render, seed
        self.passes = max(1, chunk_rows(values_per_sample) // len(tuples))  # passes per chunk

    def chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless (images, concepts) chunks of whole passes, the same sequence on every call."""
        generator = torch.Generator().manual_seed(stream_seed(self.seed))
        while True:
            order = torch.cat([torch.randperm(len(self.tuples), generator=generator) for _ in range(self.passes)])
            concepts = self.tuples[order]
            yield self.render(concepts, generator), concepts

    def batches(self, batch_size: int):
        return rebatch(self.chunks(), batch_size)


@DATASETS.register("shapes")
def build(
    name: str,
    *,
    data_root=None,
    download: bool = False,
    split: str = "tuple",
    size: int = 16,
    renderings: int = 8,
    heldout_fraction: float = 0.2,
    n_pairs: int = 4,
    position_jitter: float = 0.5,
    colour_jitter: float = 0.05,
    seed: int = 0,
) -> Dataset:
    config = dict(
        kind="shapes", split=split, size=size, renderings=renderings, heldout_fraction=heldout_fraction,
        n_pairs=n_pairs, position_jitter=position_jitter, colour_jitter=colour_jitter, seed=seed,
    )
    generator = torch.Generator().manual_seed(seed)
    tuples = all_tuples()
    heldout = heldout_mask(split, generator, heldout_fraction, n_pairs)
    train_tuples, heldout_tuples = tuples[~heldout], tuples[heldout]

    base_colours = torch.tensor(list(COLOURS.values()))
    render_jittered = partial(jittered, size=size, position_jitter=position_jitter, colour_jitter=colour_jitter)
    stream = RenderingStream(train_tuples, render_jittered, 3 * size * size, seed)
    train, train_concepts = take(stream.chunks(), renderings * len(train_tuples))
    canonical = lambda tuples: render_in_chunks(  # noqa: E731
        tuples, size, torch.zeros(len(tuples), 2), base_colours[tuples[:, 1]]
    )
    test = canonical(heldout_tuples)
    truth = {
        "factor_names": FACTOR_NAMES,
        "factor_sizes": FACTOR_SIZES,
        "value_names": (SHAPES, tuple(COLOURS), tuple(f"cell{i}" for i in range(GRID * GRID)), ("small", "large")),
        "train_tuples": train_tuples,
        "heldout_tuples": heldout_tuples,
        "seen_test": canonical(train_tuples),
        "seen_test_concepts": train_tuples.clone(),
    }
    return Dataset(name, train, test, config, train_concepts, heldout_tuples.clone(), truth, stream)
