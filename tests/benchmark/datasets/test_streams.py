"""Streams: fresh training samples for every dataset that can make more (benchmark.data.Stream).

Every kind with a stream, at small sizes: the stream starts with `train`, replays the same
sequence on every call, repeats no sample before its population is used up, never touches the
test split, and draws in bounded memory.
"""
import functools
import gc
import math
import os
import pickle
import tracemalloc

import pytest
import torch

from benchmark.datasets import build_dataset
from benchmark.datasets.patches32 import downscale, load_photo, photo_split

SEED = 3
KINDS = {  # small, and with samples of a few hundred values so the memory check is cheap
    "whitened_patches": {"size": 6, "short_side": 32, "n_train": 400, "n_test": 64},
    "patches32": {"size": 8, "short_side": 32, "n_train": 300, "n_test": 32},
    "correlated": {"rho": 0.6, "dim": 128, "n_train": 300, "n_test": 100},
    "tree": {"dim": 128, "n_train": 300, "n_test": 100},
    "superposition": {"n_atoms": 64, "dim": 128, "n_train": 300, "n_test": 100},
    "shapes": {"size": 8, "renderings": 2},
    "shapes2": {"slot": 8, "renderings": 2},
}
CROPS = ("whitened_patches", "patches32")
RENDERINGS = ("shapes", "shapes2")
POOL_BYTES = 32 << 20  # what 200 drawn batches hold: a stream that kept them would exceed BOUND
BOUND = POOL_BYTES // 2  # memory a stream may use while drawing: its chunks, not its history
kinds = pytest.mark.parametrize("kind", list(KINDS))


def build(kind):
    return build_dataset(kind, {"kind": kind, **KINDS[kind]}, seed=SEED)


@functools.cache
def built(kind):
    return build(kind)


def draw(stream, batch_size: int, n_batches: int):
    """(x, concepts or None) of the stream's first n_batches batches, concatenated."""
    xs, cs = zip(*(batch for batch, _ in zip(stream.batches(batch_size), range(n_batches))))
    return torch.cat(xs), None if cs[0] is None else torch.cat(cs)


def rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


@kinds
def test_batches_are_shaped_like_the_training_split(kind):
    data = built(kind)
    x, concepts = next(data.stream.batches(16))
    assert x.shape == (16, *data.input_shape) and x.dtype == torch.float32 and x.device.type == "cpu"
    if data.train_concepts is None:
        assert concepts is None
    else:
        assert concepts.shape == (16, data.train_concepts.shape[1]) and concepts.dtype == torch.long


@kinds
def test_the_stream_starts_with_the_training_split(kind):
    data = built(kind)
    n = len(data.train)
    x, concepts = draw(data.stream, 37, math.ceil(n / 37) + 3)  # a batch size that straddles chunks
    assert torch.equal(x[:n], data.train)
    assert not torch.equal(x[n : n + 20], data.train[:20])  # then fresh samples
    if data.train_concepts is not None:
        assert torch.equal(concepts[:n], data.train_concepts)


@kinds
def test_every_call_replays_the_same_sequence_whatever_the_batch_size(kind):
    stream = built(kind).stream
    first, again = draw(stream, 64, 8), draw(stream, 64, 8)
    other_size = draw(stream, 200, 3)
    copied = draw(pickle.loads(pickle.dumps(stream)), 64, 8)  # it crosses to child processes
    for x, concepts in (again, copied):
        assert torch.equal(x, first[0]) and (concepts is None or torch.equal(concepts, first[1]))
    assert torch.equal(other_size[0][:512], first[0])


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in CROPS])
def test_no_sample_repeats_over_fifty_batches(kind):
    x, _ = draw(built(kind).stream, 128, 50)
    assert len(rows(x)) == len(x) == 6400


@pytest.mark.parametrize("kind", CROPS)
def test_crops_enumerate_every_position_once_per_pass(kind):
    data = built(kind)
    stream, size = data.stream, KINDS[kind]["size"]
    photos = [downscale(load_photo(p), KINDS[kind]["short_side"]) for p in photo_split(SEED)[0]]
    assert stream.names == photo_split(SEED)[0]  # the training photographs only
    assert stream.population == sum((p.shape[1] - size + 1) * (p.shape[2] - size + 1) for p in photos)
    chunks, held = [], 0
    for chunk in stream.positions():
        chunks.append(chunk)
        held += len(chunk)
        if held >= 2 * stream.population + 10:
            break
    positions = torch.cat(chunks)
    first, second = positions[: stream.population], positions[stream.population : 2 * stream.population]
    for one_pass in (first, second):  # every position exactly once, then a new order
        assert len(one_pass.unique(dim=0)) == stream.population
        heights = torch.tensor([p.shape[1] - size + 1 for p in photos])[one_pass[:, 0]]
        widths = torch.tensor([p.shape[2] - size + 1 for p in photos])[one_pass[:, 0]]
        assert bool(((one_pass[:, 1:] >= 0).all(1) & (one_pass[:, 1] < heights) & (one_pass[:, 2] < widths)).all())
    assert not torch.equal(first, second)
    # The samples are the crops at those positions (in pixels for patches32).
    if kind == "patches32":
        x, _ = draw(stream, 50, 1)
        expected = torch.stack([photos[i][:, y : y + size, x0 : x0 + size] for i, y, x0 in first[:50].tolist()])
        torch.testing.assert_close(x, expected.clamp(0, 1), atol=1e-6, rtol=0)


@kinds
def test_the_test_split_is_fixed_and_never_streamed(kind):
    data, again = built(kind), build(kind)
    assert torch.equal(data.test, again.test)
    if data.test_concepts is not None:
        assert torch.equal(data.test_concepts, again.test_concepts)
    if "test_codes" in data.truth:
        assert torch.equal(data.truth["test_codes"], again.truth["test_codes"])
    x, _ = draw(data.stream, 128, 20)
    assert not rows(x) & rows(data.test)
    if kind in CROPS:  # held-out photographs, never cropped for training
        assert not set(data.stream.names) & set(photo_split(SEED)[1])


@pytest.mark.parametrize("kind", RENDERINGS)
def test_held_out_tuples_never_appear_in_the_stream(kind):
    data = built(kind)
    trained = {tuple(t) for t in data.truth["train_tuples"].tolist()}
    heldout = {tuple(t) for t in data.truth["heldout_tuples"].tolist()}
    _, concepts = draw(data.stream, 128, 40)  # several passes over the training tuples
    streamed = {tuple(t) for t in concepts.tolist()}
    assert streamed == trained and not streamed & heldout
    # Each pass renders every training tuple once: the first pass is a permutation of them.
    first_pass = concepts[: len(trained)]
    assert len(first_pass.unique(dim=0)) == len(trained)


def test_synthetic_truth_describes_the_training_split():
    data = built("correlated")
    noise = data.train - data.truth["train_codes"] @ data.truth["dictionary"]
    assert float(noise.std()) == pytest.approx(0.02, rel=0.1)  # the builder's default noise
    sparse = built("superposition")
    noise = sparse.train - sparse.truth["train_codes"].to_dense() @ sparse.truth["dictionary"]
    assert float(noise.std()) == pytest.approx(0.02, rel=0.1)


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident set size from /proc")
@kinds
def test_drawing_many_batches_does_not_grow_memory(kind):
    # tracemalloc sees NumPy and Python allocations but not torch's, so the resident set size
    # is read as well: neither the traced peak nor the resident set's growth may reach half of
    # what the drawn batches hold.
    data = built(kind)
    per_sample = data.train[0].numel() * 4
    batch_size = math.ceil(POOL_BYTES / (200 * per_sample))
    batches = data.stream.batches(batch_size)
    for _ in range(20):  # warm-up: first chunks, photographs, permutation, thread pools
        next(batches)
    gc.collect()
    before = resident_bytes()
    tracemalloc.start()
    try:
        for _ in range(200):
            next(batches)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = resident_bytes() - before
    print(f"{kind}: resident set grew by {grown / 2**20:.1f} MiB, traced peak {peak / 2**20:.1f} MiB")
    assert 200 * batch_size * per_sample >= POOL_BYTES > BOUND  # a materialised pool would exceed it
    assert grown < BOUND, f"resident set grew by {grown / 2**20:.1f} MiB"
    assert peak < BOUND, f"traced peak {peak / 2**20:.1f} MiB"


def test_finite_datasets_have_no_stream():
    assert build_dataset("digits8", {}).stream is None
