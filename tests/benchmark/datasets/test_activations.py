"""`activations`: a file read in chunks, split by the seed, with bounded memory and labels."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from benchmark.datasets import build_dataset
from benchmark.datasets.activations import Matrix
from benchmark.errors import UserError


def build(path, **params):
    return build_dataset("acts", {"kind": "activations", "path": str(path), **params}, seed=params.pop("seed", 0))


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    path = tmp_path_factory.mktemp("acts") / "acts.npy"
    x = torch.randn(1000, 12, generator=torch.Generator().manual_seed(0))
    np.save(path, x.numpy())
    return path, x


def test_splits_are_disjoint_seeded_and_capped(rows):
    path, x = rows
    a, again, other = build(path, seed=1), build(path, seed=1), build(path, seed=2)
    assert a.test.shape == (100, 12) and a.train.shape == (900, 12)
    assert torch.equal(a.test, again.test) and not torch.equal(a.test, other.test)
    together = torch.cat([a.train, a.test])
    assert torch.equal(together.sort(0).values, x.sort(0).values)  # every row once, none twice
    capped = build(path, max_test=50, max_train=200)
    assert capped.test.shape == (50, 12) and capped.train.shape == (200, 12)
    assert capped.config["rows"] == 1000 and capped.config["train_rows"] == 200


def test_a_safetensors_file_with_several_tensors_names_the_one_to_use(tmp_path, rows):
    _, x = rows
    save_file({"activations": x, "positions": torch.arange(1000.0)[:, None]}, str(tmp_path / "two.safetensors"))
    assert torch.equal(build(tmp_path / "two.safetensors").test, build(rows[0]).test)
    save_file({"a": x, "b": x.clone()}, str(tmp_path / "ambiguous.safetensors"))
    with pytest.raises(UserError, match="holds 2 tensors .* name the one to use 'activations'"):
        build(tmp_path / "ambiguous.safetensors")


def test_bfloat16_rows_are_read_as_float32(tmp_path, rows):
    _, x = rows
    torch.save(x.bfloat16(), tmp_path / "half.pt")
    test = build(tmp_path / "half.pt").test
    assert test.dtype == torch.float32 and torch.equal(test, build(rows[0]).test.bfloat16().float())


def test_labels_become_probing_groups(tmp_path, rows):
    path, _ = rows
    groups = np.arange(1000) // 10  # 100 sequences of 10 rows
    pd.DataFrame({"group": groups, "odd": (groups % 2), "big": np.where(groups > 50, 1, 0)}).to_csv(
        tmp_path / "labels.csv", index=False)
    data = build(path, labels=str(tmp_path / "labels.csv"))
    probing = data.truth["probing"]
    assert set(probing["labels"]) == {"odd", "big"}
    assert len(probing["train_groups"]) == 900 and len(probing["test_groups"]) == 100
    n_groups = len(probing["labels"]["odd"])
    assert n_groups == 100 and int(torch.cat([probing["train_groups"], probing["test_groups"]]).max()) == 99
    pd.DataFrame({"odd": np.full(1000, 2)}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UserError, match="odd hold values other than 1, 0 and -1"):
        build(path, labels=str(tmp_path / "bad.csv"))


MEASURE = """
import sys, threading, time
from pathlib import Path
import numpy as np
from benchmark.datasets import build_dataset
from benchmark.datasets.activations import Matrix

def anon():
    line = next(s for s in Path("/proc/self/status").read_text().splitlines() if s.startswith("RssAnon:"))
    return int(line.split()[1]) / 1024

path, small, how = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
config = lambda p: {"kind": "activations", "path": str(p), "max_train": 12288, "max_test": 4096, "chunk_rows": 4096}
build_dataset("warm-up", config(small))  # first-call costs (allocator arenas, lazy imports) land here
start, peak, running = anon(), [0.0], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], anon() - start)
        time.sleep(0.001)
thread = threading.Thread(target=sample, daemon=True)
thread.start()
if how == "bounded":
    build_dataset("big", config(path))
else:  # the wrong way: the whole file in one chunk
    Matrix(path).count_bad_rows(chunk_rows=1 << 30)
running[0] = False
thread.join()
print(peak[0])
"""


def peak_anon_growth(path, small, how) -> float:
    """Peak RssAnon (MiB) above a warmed-up start, in a fresh process, while reading `path`."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(small), how], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[3])
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RssAnon from /proc (Linux)")
def test_memory_stays_bounded_on_a_file_many_times_the_chunk_budget(tmp_path):
    # 64 MiB of rows, read in 1 MiB chunks into splits of 4 MiB: anonymous memory stays far
    # below the file (its pages are file-backed). Reading it in one chunk is the wrong input:
    # the whole file passes through anonymous memory.
    path = tmp_path / "big.npy"
    big = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(262144, 64))
    big[:] = 1.0
    big.flush()
    del big
    np.save(tmp_path / "small.npy", np.ones((20000, 64), np.float32))
    bounded = peak_anon_growth(path, tmp_path / "small.npy", "bounded")
    whole = peak_anon_growth(path, tmp_path / "small.npy", "whole")
    assert bounded < 24, bounded
    assert whole > 60, whole
