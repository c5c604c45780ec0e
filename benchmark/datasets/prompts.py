"""`prompts`: MiniLM sentence embeddings of templated concept prompts, with their concept labels.

The supervised SAE's own setting (feature vectors of a generative model's text conditioning):
each prompt describes one object by the four factors of `shapes`, with the same vocabulary
sizes and held-out splits (benchmark/datasets/shapes.py): shape (4), colour (6), position on a
3×3 grid (9) and size (2), e.g. "a small red circle at the top left". A sample is the prompt's
all-MiniLM-L6-v2 sentence embedding (mean pooling, L2-normalised), 384-d.

- `split: tuple` / `split: pair`: exactly as `shapes` (seeded by `seed`); every concept value
  is still seen in training.
- Training samples: `renderings` paraphrases of each training tuple, templates drawn (seeded)
  from TEMPLATES[1:] without repetition. Test samples: the canonical paraphrase (TEMPLATES[0])
  of each held-out tuple, in sorted tuple order. `truth["seen_test"]` holds the canonical
  paraphrase of each training tuple (labels in `truth["seen_test_concepts"]`): prompts never
  trained on, of tuples that were, for composition's `seen_r2`.
- Embeddings are scaled by one number so that their mean square on the training split is 1
  (`truth["scale"]`; the same normalisation as `minilm`).

Every prompt of every tuple is embedded once and cached under `cache_dir` by content hash
(benchmark/minilm.py); `model_dir` and `cache_dir` are locations, not part of `config`.
"""
import torch

from benchmark import minilm as M
from benchmark.data import Dataset
from benchmark.datasets.shapes import COLOURS, FACTOR_NAMES, FACTOR_SIZES, SHAPES, all_tuples, heldout_mask
from benchmark.registry import DATASETS

POSITIONS = ("top left", "top centre", "top right", "centre left", "centre", "centre right",
             "bottom left", "bottom centre", "bottom right")  # shapes' grid cells, row by row
SIZES = ("small", "large")
TEMPLATES = (  # paraphrases; the first is the canonical one, used for the test samples
    "a {size} {colour} {shape} at the {position}",
    "there is a {size} {colour} {shape} at the {position}",
    "a {colour} {shape}, {size}, placed at the {position}",
    "at the {position} sits a {size} {colour} {shape}",
    "an image of a {size} {colour} {shape} in the {position}",
    "the {position} of the picture shows a {size} {shape} coloured {colour}",
    "{size} {colour} {shape}, {position}",
    "a drawing of a {colour} {shape} that is {size}, at the {position}",
)
VALUE_NAMES = (SHAPES, tuple(COLOURS), POSITIONS, SIZES)  # in FACTOR_NAMES order


def prompt(concepts, template: int) -> str:
    shape, colour, position, size = (VALUE_NAMES[f][int(v)] for f, v in enumerate(concepts))
    return TEMPLATES[template].format(size=size, colour=colour, shape=shape, position=position)


def all_prompts() -> list[str]:
    """Every template of every tuple: tuple-major, template-minor (row t·len(TEMPLATES) + j)."""
    return [prompt(t, j) for t in all_tuples().tolist() for j in range(len(TEMPLATES))]


@DATASETS.register("prompts")
def build(
    name: str,
    *,
    data_root=None,
    download: bool = False,
    split: str = "tuple",
    renderings: int = 7,
    heldout_fraction: float = 0.2,
    n_pairs: int = 4,
    model_dir: str | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> Dataset:
    if not 1 <= renderings < len(TEMPLATES):  # the canonical template is kept for the test prompts
        raise ValueError(f"renderings must be in 1..{len(TEMPLATES) - 1}, got {renderings}")
    config = dict(kind="prompts", split=split, renderings=renderings, heldout_fraction=heldout_fraction,
                  n_pairs=n_pairs, weights_sha256=M.WEIGHTS_SHA256, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    tuples = all_tuples()
    heldout = heldout_mask(split, generator, heldout_fraction, n_pairs)
    train_tuples, heldout_tuples = tuples[~heldout], tuples[heldout]

    texts = all_prompts()
    embeddings = M.cached_sentence_embeddings(texts, model_dir, cache_dir).view(len(tuples), len(TEMPLATES), -1)
    train_rows = torch.nonzero(~heldout).flatten()
    templates = 1 + torch.stack([torch.randperm(len(TEMPLATES) - 1, generator=generator)[:renderings]
                                 for _ in range(len(train_rows))])  # (n_train_tuples, renderings)
    train = embeddings[train_rows[:, None], templates].flatten(0, 1)
    test = embeddings[torch.nonzero(heldout).flatten(), 0]
    scale = float(train.pow(2).mean().sqrt())

    truth = {
        "factor_names": FACTOR_NAMES,
        "factor_sizes": FACTOR_SIZES,
        "value_names": VALUE_NAMES,
        "train_tuples": train_tuples,
        "heldout_tuples": heldout_tuples,
        "train_prompts": [texts[int(t) * len(TEMPLATES) + int(j)]
                          for t, row in zip(train_rows, templates) for j in row],
        "test_prompts": [texts[int(t) * len(TEMPLATES)] for t in torch.nonzero(heldout).flatten()],
        "scale": scale,
        "seen_test": embeddings[train_rows, 0] / scale,
        "seen_test_concepts": train_tuples.clone(),
    }
    train_concepts = train_tuples.repeat_interleave(renderings, dim=0)
    return Dataset(name, train / scale, test / scale, config, train_concepts, heldout_tuples.clone(), truth)
