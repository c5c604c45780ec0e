"""`shapes2`: two coloured shapes per image, one in each half, for composing unseen object pairs.

An object is a (shape, colour) pair: 4 shapes × 6 colours = 24 objects, drawn as in `shapes`
(anti-aliased, the same colours). The image is `slot` px high and 2·`slot` px wide; the left
object sits in the left square half, the right object in the right half. The halves are
disjoint and every object stays inside its half (its extent plus the jitter is below half a
slot), so an image is exactly the sum of its two objects' renderings: additive across slots,
never across shape and colour. Two concept factors: `left` and `right`, each one of the 24
objects (`truth["objects"]` maps an object index to its (shape, colour) indices).

Split by object pair, never by image: a seeded `heldout_fraction` of the 24 × 24 pairs is held
out, redrawn (seeded) until every object still appears in training in each slot. So a held-out
pair is two objects each seen in its slot, never seen together.

Training images are a stream (`shapes.RenderingStream`) of new renderings of the training pairs
only (held-out pairs never appear in it), each object with its own uniform position jitter of
±`position_jitter` px and Gaussian colour jitter (std `colour_jitter`, clipped), in passes: each
pass renders every training pair once, in a fresh seeded random order. `train` is the stream's
first `renderings` passes: `renderings` renderings of each training pair. Test images: one
canonical (un-jittered) rendering of each held-out pair, in sorted pair order.
`truth["seen_test"]` holds the canonical renderings of the training pairs with their labels in
`truth["seen_test_concepts"]`: images never trained on, of pairs that were, for the seen-tuple
score of `composition`. `slot` should be a multiple of 4 so that the `conv` variant applies.
Every random choice comes from `seed` (the stream's from a generator of its own).
"""
import itertools
from functools import partial

import torch

from benchmark.data import Dataset
from benchmark.datasets._synthetic import take
from benchmark.datasets.shapes import COLOURS, SHAPES, SUPERSAMPLE, RenderingStream, inside
from benchmark.errors import UserError
from benchmark.registry import DATASETS

N_OBJECTS = len(SHAPES) * len(COLOURS)
FACTOR_NAMES = ("left", "right")
FACTOR_SIZES = (N_OBJECTS, N_OBJECTS)
RADIUS = 0.36  # an object's half-extent, as a fraction of the slot side
CHUNK = 512  # images rendered at once: bounded memory for the supersampled masks


def objects() -> torch.Tensor:
    """(24, 2) long: object index -> (shape index, colour index), shape-major."""
    return torch.tensor(list(itertools.product(range(len(SHAPES)), range(len(COLOURS)))), dtype=torch.long)


def object_names() -> tuple[str, ...]:
    colours = tuple(COLOURS)
    return tuple(f"{colours[c]} {SHAPES[s]}" for s, c in objects().tolist())


def all_pairs() -> torch.Tensor:
    """Every (left, right) object pair, (576, 2) long, in lexicographic order."""
    return torch.cartesian_prod(torch.arange(N_OBJECTS), torch.arange(N_OBJECTS))


def heldout_mask(heldout_fraction: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean mask over `all_pairs()`: True for held-out pairs; every object stays in training
    in both slots."""
    pairs = all_pairs()
    n_heldout = int(round(heldout_fraction * len(pairs)))
    for _ in range(100):  # redraw (seeded) in the rare case an object vanishes from a slot
        mask = torch.zeros(len(pairs), dtype=torch.bool)
        mask[torch.randperm(len(pairs), generator=generator)[:n_heldout]] = True
        kept = pairs[~mask]
        if all(kept[:, slot].unique().numel() == N_OBJECTS for slot in range(2)):
            return mask
    raise UserError(f"shapes2: heldout_fraction={heldout_fraction} leaves some object out of training; lower it")


def render_objects(object_ids: torch.Tensor, slot: int, offsets: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(N, 3, slot, slot): each object centred in its square (plus `offsets`, px), in `colours`."""
    shape_of = objects()[object_ids, 0]
    samples = (torch.arange(slot * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # sub-sample centres, px
    dx = samples[None, None, :] - (slot / 2 + offsets[:, 0])[:, None, None]
    dy = samples[None, :, None] - (slot / 2 + offsets[:, 1])[:, None, None]
    r = torch.full((len(object_ids), 1, 1), RADIUS * slot)
    mask = torch.zeros(len(object_ids), slot * SUPERSAMPLE, slot * SUPERSAMPLE)
    for shape in range(len(SHAPES)):
        rows = shape_of == shape
        if rows.any():
            mask[rows] = inside(shape, dx[rows], dy[rows], r[rows]).float()
    coverage = torch.nn.functional.avg_pool2d(mask[:, None], SUPERSAMPLE)
    return (colours[:, :, None, None] * coverage).clamp(0, 1)


def render_pairs(pairs: torch.Tensor, slot: int, offsets: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """(N, 3, slot, 2·slot) images of `pairs` (N, 2); offsets (N, 2, 2) and colours (N, 2, 3)
    per object."""
    parts = []
    for lo in range(0, len(pairs), CHUNK):
        hi = lo + CHUNK
        halves = [render_objects(pairs[lo:hi, s], slot, offsets[lo:hi, s], colours[lo:hi, s]) for s in range(2)]
        parts.append(torch.cat(halves, dim=3))  # disjoint halves side by side
    return torch.cat(parts) if parts else torch.zeros(0, 3, slot, 2 * slot)


def base_colours(pairs: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3): the un-jittered colour of each object of each pair."""
    palette = torch.tensor(list(COLOURS.values()))
    return palette[objects()[pairs, 1]]


def jittered(pairs: torch.Tensor, generator: torch.Generator, slot: int, position_jitter: float,
             colour_jitter: float) -> torch.Tensor:
    """Renderings of `pairs` (N, 2), each object with its own position and colour jitter."""
    n = len(pairs)
    offsets = (torch.rand(n, 2, 2, generator=generator) * 2 - 1) * position_jitter
    colours = (base_colours(pairs) + colour_jitter * torch.randn(n, 2, 3, generator=generator)).clamp(0, 1)
    return render_pairs(pairs, slot, offsets, colours)


def canonical(pairs: torch.Tensor, slot: int) -> torch.Tensor:
    return render_pairs(pairs, slot, torch.zeros(len(pairs), 2, 2), base_colours(pairs))


@DATASETS.register("shapes2")
def build(name, *, data_root=None, download=False, slot=12, renderings=4, heldout_fraction=0.25,
          position_jitter=0.5, colour_jitter=0.05, seed=0) -> Dataset:
    if RADIUS * slot + position_jitter >= slot / 2:
        raise UserError(f"shapes2: position_jitter={position_jitter} lets objects leave their {slot}px slot")
    config = dict(kind="shapes2", slot=slot, renderings=renderings, heldout_fraction=heldout_fraction,
                  position_jitter=position_jitter, colour_jitter=colour_jitter, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    pairs = all_pairs()
    heldout = heldout_mask(heldout_fraction, generator)
    train_pairs, heldout_pairs = pairs[~heldout], pairs[heldout]

    render_jittered = partial(jittered, slot=slot, position_jitter=position_jitter, colour_jitter=colour_jitter)
    stream = RenderingStream(train_pairs, render_jittered, 3 * slot * 2 * slot, seed)
    train, train_concepts = take(stream.chunks(), renderings * len(train_pairs))
    truth = {
        "factor_names": FACTOR_NAMES,
        "factor_sizes": FACTOR_SIZES,
        "value_names": (object_names(), object_names()),
        "objects": objects(),
        "train_tuples": train_pairs,
        "heldout_tuples": heldout_pairs,
        "seen_test": canonical(train_pairs, slot),
        "seen_test_concepts": train_pairs.clone(),
    }
    return Dataset(name, train, canonical(heldout_pairs, slot), config, train_concepts, heldout_pairs.clone(), truth,
                   stream)
