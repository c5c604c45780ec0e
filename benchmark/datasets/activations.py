"""`activations`: a researcher's own activations file, [N, d], as a dataset (SPEC section 12).

- Formats: `.npy` (memory-mapped), `.safetensors` (its only tensor, or the one named
  `activations`; read by slices) and `.pt` (a tensor saved with `torch.save`, memory-mapped by
  `torch.load(mmap=True)`). Any float dtype is read as float32. The file is never loaded whole:
  rows are gathered in chunks of `chunk_rows` (default: CHUNK_BYTES of float32 rows), so
  anonymous memory is bounded by the splits below and one chunk, whatever N.
- Splits, drawn by the seed from one permutation of the rows: `test` holds
  min(`max_test`, ⌈`test_fraction`·N⌉) rows, `train` the next min(`max_train`, the rest) rows.
  Nothing trains on more than `train` (the controls' fits, `init_from_data`, a suite variant's
  epochs), and every task scores `test`: on a file of millions of rows both are a bounded
  sample, and the rows they hold are recorded in `config` (part of every config hash).
- Bad input is one line: an unknown suffix, an empty file, not [N, d], a non-float dtype, and
  NaN or inf anywhere (the scan reads every row once, in chunks, and counts the rows).
- `labels` (optional): a CSV with one row per activation row and one column per binary
  attribute (1, 0, or -1 / empty where it does not apply), plus an optional `group` column
  (the sequence each row belongs to: codes are mean-pooled over a group's rows, as SAEBench
  pools over a sequence's tokens; without it every row is its own group). It enables
  `sparse_probing` through `truth["probing"]`.
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmark.data import Dataset
from benchmark.errors import UserError
from benchmark.registry import DATASETS

SUFFIXES = (".npy", ".safetensors", ".pt")
CHUNK_BYTES = 32 * 2**20
GROUP_COLUMN = "group"


class Matrix:
    """Row access to an [N, d] array on disk without reading it whole."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"activations file {self.path} does not exist")
        suffix = self.path.suffix.lower()
        if suffix not in SUFFIXES:
            raise UserError(f"activations file {self.path}: unknown format {suffix or '(no suffix)'}; "
                            f"expected one of {', '.join(SUFFIXES)} holding an [N, d] float tensor")
        if self.path.stat().st_size == 0:
            raise UserError(f"activations file {self.path} is empty")
        try:
            self._open(suffix)
        except UserError:
            raise
        except Exception as err:  # a corrupt or foreign file: one line, not a traceback
            raise UserError(f"activations file {self.path}: cannot read it as {suffix}: "
                            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
        if len(self.shape) != 2:
            raise UserError(f"activations file {self.path}: shape {list(self.shape)}; expected [N, d]")
        if self.shape[0] == 0 or self.shape[1] == 0:
            raise UserError(f"activations file {self.path} is empty (shape {list(self.shape)})")

    def _open(self, suffix: str) -> None:
        if suffix == ".npy":
            self._array = np.load(self.path, mmap_mode="r")
            self.shape, floating = self._array.shape, np.issubdtype(self._array.dtype, np.floating)
            self._rows = lambda lo, hi: torch.from_numpy(np.array(self._array[lo:hi], dtype=np.float32))
        elif suffix == ".pt":
            tensor = torch.load(self.path, mmap=True, weights_only=True, map_location="cpu")
            if not isinstance(tensor, torch.Tensor):
                raise UserError(f"activations file {self.path} holds a {type(tensor).__name__}, not a tensor "
                                "(save it with torch.save(tensor, path))")
            self.shape, floating = tuple(tensor.shape), tensor.is_floating_point()
            self._rows = lambda lo, hi: tensor[lo:hi].to(torch.float32)
        else:
            from safetensors import safe_open

            handle = safe_open(str(self.path), framework="pt")
            names = list(handle.keys())
            name = names[0] if len(names) == 1 else "activations"
            if name not in names:
                raise UserError(f"activations file {self.path} holds {len(names)} tensors "
                                f"({', '.join(names[:6]) or 'none'}); name the one to use 'activations'")
            view = handle.get_slice(name)
            self.shape = tuple(view.get_shape())
            floating = view.get_dtype().startswith(("F", "BF"))
            self._rows = lambda lo, hi: view[lo:hi].to(torch.float32)
        if not floating:
            raise UserError(f"activations file {self.path}: its values are not floating point")

    @property
    def n_rows(self) -> int:
        return int(self.shape[0])

    def chunks(self, chunk_rows: int):
        """(first row, float32 rows) of the whole file, chunk by chunk, with a progress bar on a
        terminal (a file of gigabytes takes a while)."""
        starts = range(0, self.n_rows, chunk_rows)
        for lo in tqdm(starts, desc=f"reading {self.path.name}", unit="chunk", leave=False, disable=None):
            yield lo, self._rows(lo, min(lo + chunk_rows, self.n_rows))

    def gather(self, indices: torch.Tensor, chunk_rows: int) -> torch.Tensor:
        """The rows `indices` (in that order), reading one chunk of the file at a time."""
        out = torch.empty(len(indices), self.shape[1], dtype=torch.float32)
        order = torch.argsort(indices)
        wanted = indices[order]
        for lo in range(0, self.n_rows, chunk_rows):
            hi = min(lo + chunk_rows, self.n_rows)
            start, stop = torch.searchsorted(wanted, torch.tensor([lo, hi])).tolist()
            if start < stop:
                out[order[start:stop]] = self._rows(lo, hi)[wanted[start:stop] - lo]
        return out

    def count_bad_rows(self, chunk_rows: int) -> int:
        """Rows holding a NaN or an infinity."""
        return sum(int((~torch.isfinite(rows)).any(1).sum()) for _, rows in self.chunks(chunk_rows))


def split_rows(n_rows: int, seed: int, test_fraction: float, max_test: int, max_train: int):
    """(train row indices, test row indices): one seeded permutation, test first."""
    n_test = min(max_test, max(1, math.ceil(test_fraction * n_rows)))
    if n_rows - n_test < 1:
        raise UserError(f"an activations file of {n_rows} row(s) cannot be split into a training and a test split")
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    return order[n_test:n_test + min(max_train, n_rows - n_test)], order[:n_test]


def read_labels(path: Path, n_rows: int) -> tuple[pd.DataFrame, torch.Tensor]:
    """(attribute columns, group id of every row) from a labels CSV (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels file {path} does not exist")
    try:
        frame = pd.read_csv(path)
    except Exception as err:
        raise UserError(f"labels file {path}: not a readable CSV ({type(err).__name__})") from None
    if len(frame) != n_rows:
        raise UserError(f"labels file {path} has {len(frame)} rows; the activations file has {n_rows} "
                        "(one label row per activation row)")
    groups = frame.pop(GROUP_COLUMN) if GROUP_COLUMN in frame else pd.Series(np.arange(n_rows))
    attributes = frame.fillna(-1)
    bad = [c for c in attributes if not attributes[c].isin([0, 1, -1]).all()]
    if not len(attributes.columns) or bad:
        what = f"column(s) {', '.join(bad)} hold values other than 1, 0 and -1" if bad else "no attribute columns"
        raise UserError(f"labels file {path}: {what}")
    codes, _ = pd.factorize(groups)
    return attributes.astype(np.int64), torch.as_tensor(codes, dtype=torch.long)


def probing_truth(attributes: pd.DataFrame, groups: torch.Tensor, train_rows, test_rows) -> dict:
    """`truth["probing"]` (tasks/sparse_probing.py): groups renumbered 0.. over the rows used, a
    group's label taken from its first row."""
    used = torch.cat([train_rows, test_rows])
    ids, inverse = torch.unique(groups[used], return_inverse=True)
    first = {}
    for row, group in zip(used.tolist(), inverse.tolist()):
        first.setdefault(group, row)
    firsts = torch.tensor([first[g] for g in range(len(ids))])
    labels = {name: torch.tensor(attributes[name].to_numpy())[firsts] for name in attributes}
    return {"train_groups": inverse[:len(train_rows)], "test_groups": inverse[len(train_rows):], "labels": labels}


@DATASETS.register("activations")
def build(name, *, data_root=None, download=False, path: str, labels: str | None = None, seed: int = 0,
          test_fraction: float = 0.1, max_test: int = 8192, max_train: int = 32768,
          chunk_rows: int | None = None):
    matrix = Matrix(Path(path))
    chunk_rows = chunk_rows or max(1, CHUNK_BYTES // (4 * matrix.shape[1]))
    bad = matrix.count_bad_rows(chunk_rows)
    if bad:
        raise UserError(f"activations file {path}: {bad} of {matrix.n_rows} rows hold NaN or inf")
    attributes = groups = None
    if labels is not None:
        attributes, groups = read_labels(Path(labels), matrix.n_rows)
    train_rows, test_rows = split_rows(matrix.n_rows, seed, test_fraction, max_test, max_train)
    truth = {"activations_file": str(path), "rows": matrix.n_rows}
    if attributes is not None:
        truth["probing"] = probing_truth(attributes, groups, train_rows, test_rows)
    config = dict(kind="activations", path=str(Path(path).resolve()), labels=labels, seed=seed,
                  test_fraction=test_fraction, max_test=max_test, max_train=max_train,
                  rows=matrix.n_rows, train_rows=len(train_rows), test_rows=len(test_rows))
    return Dataset(name=name, train=matrix.gather(train_rows, chunk_rows), test=matrix.gather(test_rows, chunk_rows),
                   config=config, truth=truth)
