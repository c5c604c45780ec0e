"""Evaluate a SAELens TopK checkpoint on an activations file far larger than the evaluation's
memory, and print rows per second and the peak anonymous memory (issue: your activations, your
SAEs). The file is written once (random rows; what is measured is the reading and scoring), the
checkpoint is random (d_in, d_sae, k), and `eval --activations` runs in this process while a
thread samples /proc/self/status every 2 ms.

    python scripts/activations_scale.py --gigabytes 3 --d 768 --d-sae 16384   # the issue's figures
    python scripts/activations_scale.py --gigabytes 0.25 --d 64 --d-sae 256   # a quick look

Anonymous memory (RssAnon) is what the process allocated; the memory-mapped file's pages are
file-backed (RssFile) and the kernel drops them under pressure. The peak is reported above the
baseline taken just before `eval` starts (torch and the package already imported).
"""
import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.cli import main  # noqa: E402


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakSampler(threading.Thread):
    def __init__(self, every: float = 0.002):
        super().__init__(daemon=True)
        self.every, self.peak, self.running = every, rss_anon_mib(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_anon_mib())
            time.sleep(self.every)


def write_activations(path: Path, gigabytes: float, d: int, chunk_rows: int = 65536) -> int:
    """A .npy of ~`gigabytes` of float32 rows, written chunk by chunk (never whole in memory)."""
    n = max(2, int(gigabytes * 2**30 / (4 * d)))
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    g = np.random.default_rng(0)
    for lo in range(0, n, chunk_rows):
        hi = min(lo + chunk_rows, n)
        array[lo:hi] = g.standard_normal((hi - lo, d), dtype=np.float32)
    array.flush()
    del array
    return n


def write_topk_checkpoint(folder: Path, d: int, d_sae: int, k: int) -> None:
    g = torch.Generator().manual_seed(0)
    W_dec = torch.randn(d_sae, d, generator=g)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"architecture": "topk", "d_in": d, "d_sae": d_sae, "k": k, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "normalize_activations": "none", "metadata": {}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({"W_enc": W_dec.T.contiguous(), "b_enc": torch.zeros(d_sae), "W_dec": W_dec,
               "b_dec": torch.zeros(d)}, str(folder / "sae_weights.safetensors"))


@torch.no_grad()
def rows_per_second(folder: Path, rows: torch.Tensor, chunk: int = 512) -> float:
    """Encode and decode `rows` through the checkpoint, chunk by chunk (as the tasks do)."""
    from benchmark.interop import checkpoint_class

    cls = checkpoint_class(folder)
    model = cls((rows.shape[1],), cls.checkpoint.d_sae)
    model.decode(model.encode(rows[:chunk]))  # warm-up
    start = time.perf_counter()
    for part in rows.split(chunk):
        model.decode(model.encode(part))
    return len(rows) / (time.perf_counter() - start)


def measure(workdir: Path, gigabytes: float, d: int, d_sae: int, k: int, tasks=("reconstruction", "sparsity")) -> dict:
    """Write the file and the checkpoint under `workdir`, run `eval`, return the figures."""
    path = workdir / "acts.npy"
    n = write_activations(path, gigabytes, d)
    write_topk_checkpoint(workdir / "ckpt", d, d_sae, k)
    baseline = rss_anon_mib()
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    code = main(["eval", "--checkpoint", str(workdir / "ckpt"), "--activations", str(path), "--task", *tasks,
                 "--out", str(workdir / "out"), "--no-progress", "--in-process", "--l0-targets", str(k)])
    wall = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    import pandas as pd

    rows = pd.read_csv(workdir / "out" / "results.csv")
    config = rows[rows.variant == "ckpt:ckpt"]
    from benchmark.interop.own_data import CODES_BUDGET

    test_rows = min(max(1024, min(8192, CODES_BUDGET // (4 * d_sae))), int(np.ceil(0.1 * n)))  # as eval caps it
    sample = torch.from_numpy(np.array(np.load(path, mmap_mode="r")[:test_rows]))
    return {"rows_per_s": rows_per_second(workdir / "ckpt", sample), "exit": code, "rows": n, "file_mib": path.stat().st_size / 2**20, "test_rows": test_rows,
            "wall_s": wall, "anon_peak_mib": sampler.peak - baseline, "models": len(set(zip(rows.variant, rows.setting))),
            "ok_rows": int((config.status == "ok").sum())}


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=3.0)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--d-sae", type=int, default=16384)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args()
    # A file 1/16 the size first, in the same process: the imports and first-call costs land
    # there, and the two peaks side by side show whether memory grows with the file.
    for size in (args.gigabytes / 16, args.gigabytes):
        with tempfile.TemporaryDirectory() as scratch:
            figures = measure(Path(scratch), size, args.d, args.d_sae, args.k)
        print(f"file: {figures['rows']:,} rows x {args.d} ({figures['file_mib']:,.0f} MiB); test split "
              f"{figures['test_rows']:,} rows; {figures['models']} models (the checkpoint and the controls)")
        print(f"  checkpoint: {figures['rows_per_s']:,.0f} rows/s (encode + decode, d_sae {args.d_sae}, k {args.k}, "
              f"{torch.get_num_threads()} threads)")
        print(f"  eval wall time {figures['wall_s']:.1f} s; peak anonymous memory above the baseline "
              f"{figures['anon_peak_mib']:,.0f} MiB ({figures['anon_peak_mib'] / figures['file_mib']:.1%} of the file)")


if __name__ == "__main__":
    main_cli()
