"""`python -m benchmark perf`: training throughput of every variant against the machine's own
matrix-multiply peak, measured in the same process (and, with --peers, against overcomplete).

What is timed: `benchmark.training.loop.training_step`, the exact body of the shared training loop
(encode, loss, backward, Adam step, after_step), on one random batch of the stated size, with
each variant's constructor defaults.

FLOPs: counted by `torch.utils.flop_counter` over one whole training step, forward AND backward,
as executed (a first layer whose input needs no gradient does 2 products in the backward pass,
not the 3 of the usual "x3" rule), at 2 FLOPs per multiply-add (fvcore, used for the
leaderboard's `flops_per_sample`, counts 1). Matrix products, convolutions and our sparse decode
(`embedding_bag`, see baselines/_sparse.py) are counted; element-wise work is not. The peak is
torch.mm of two square matrices, 2·n³ FLOPs, so both figures are in the same unit.

Noise: other processes may share the machine, so absolute speeds drift from minute to minute.
Each timed step is therefore interleaved with a peak measurement, and both figures are the best
of the repeats (the least disturbed run); the fraction of peak is their ratio.
"""
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from benchmark.registry import VARIANTS
from benchmark.perf.counting import count_flops, gflops
from benchmark.perf.peers import run_peer_comparison
from benchmark.perf.stacked import run_stack_comparison, stackable_variants
from benchmark.perf.timing import build_variant, device_name, synchronize, timed  # noqa: F401 (re-exported)
from benchmark.training.loop import training_step

PERF_COLUMNS = ["variant", "device", "batch", "n_latents", "input_shape", "samples_per_s", "gflops",
                "peak_gflops", "frac_of_peak", "torch_version", "timestamp"]
IMAGE_CAPABILITIES = {"image"}  # a synthetic image batch has no concept labels


# ----- timing -----
class MatmulPeak:
    """fp32 torch.mm of two n×n matrices: the speed the dense layers can at best reach."""

    def __init__(self, device: torch.device, size: int):
        generator = torch.Generator().manual_seed(0)
        self.a, self.b = (torch.randn(size, size, generator=generator).to(device) for _ in range(2))
        self.flops = 2 * size**3
        self.device = device
        timed(self.run, device)  # warm-up: library initialisation, page faults

    def run(self):
        torch.mm(self.a, self.b)

    def sample(self) -> float:
        """GFLOP/s of one timed product."""
        return gflops(self.flops, timed(self.run, self.device))


# ----- variants -----
def image_variants() -> list[str]:
    """Registered variants that can train on a bare image batch (no concept labels)."""
    return [name for name in VARIANTS.names() if set(VARIANTS.get(name).requires) <= IMAGE_CAPABILITIES]


def step_runner(model, x: torch.Tensor, lr: float = 1e-3):
    """A closure running one `training_step` on `x`, as the training loop does."""
    model.init_from_data(x)
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    return lambda: training_step(model, optimiser, x)


@dataclass
class PerfRow:
    variant: str
    device: str
    batch: int
    n_latents: int
    input_shape: str
    samples_per_s: float
    gflops: float
    peak_gflops: float
    frac_of_peak: float
    torch_version: str
    timestamp: str


def measure_variant(name: str, x: torch.Tensor, n_latents: int, peak: MatmulPeak, repeats: int) -> tuple[PerfRow, dict]:
    """Best-of-`repeats` training step, each interleaved with a peak sample."""
    device = x.device
    torch.manual_seed(0)
    model = build_variant(name, x.shape[1:], n_latents, device)
    step = step_runner(model, x)
    flops = count_flops(step)  # also the warm-up step: Adam state, allocator, first-call costs
    step_seconds, peaks = [], []
    for _ in range(repeats):
        peaks.append(peak.sample())
        step_seconds.append(timed(step, device))
    best, best_peak = min(step_seconds), max(peaks)
    row = PerfRow(
        variant=name, device=device_name(device), batch=x.shape[0], n_latents=model.n_latents,
        input_shape="x".join(map(str, x.shape[1:])), samples_per_s=x.shape[0] / best,
        gflops=gflops(flops, best), peak_gflops=best_peak, frac_of_peak=gflops(flops, best) / best_peak,
        torch_version=torch.__version__, timestamp=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    median_step, median_peak = _median(step_seconds), _median(peaks)
    return row, {"step_s": best, "step_gflop": flops / 1e9, "frac_median": gflops(flops, median_step) / median_peak}


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def write_csv(rows: list[PerfRow], path: Path) -> None:
    """Atomically (temporary file, then rename): a killed run never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pd.DataFrame([asdict(r) for r in rows], columns=PERF_COLUMNS).to_csv(tmp, index=False)
    tmp.replace(path)


def format_table(rows: list[PerfRow], extras: list[dict]) -> str:
    lines = [f"{'variant':12s} {'step s':>8s} {'GFLOP/step':>10s} {'samples/s':>10s} {'GFLOP/s':>8s} "
             f"{'peak':>7s} {'of peak':>7s} {'(median)':>8s}"]
    for r, e in zip(rows, extras):
        lines.append(f"{r.variant:12s} {e['step_s']:8.3f} {e['step_gflop']:10.1f} {r.samples_per_s:10.1f} "
                     f"{r.gflops:8.1f} {r.peak_gflops:7.1f} {r.frac_of_peak:7.0%} {e['frac_median']:8.0%}")
    return "\n".join(lines)


# ----- command -----
def add_perf(sub):
    p = sub.add_parser("perf", help="training throughput and GFLOP/s of each variant against the matmul peak",
                       description="Time one training step of every image variant (or --variant) on a random "
                       "batch, count its FLOPs (forward + backward, 2 per multiply-add), and compare with the "
                       "fp32 torch.mm peak measured in the same process, interleaved. Writes a CSV and prints a "
                       "table. --peers adds a side-by-side with the overcomplete library (pip install "
                       "'sae-benchmark[peers]').")
    p.add_argument("--variant", nargs="+", metavar="NAME", help="variants to time (default: every image variant)")
    p.add_argument("--batch", type=int, default=4096, help="samples per training step (default: 4096)")
    p.add_argument("--n-latents", type=int, default=4096, help="latents K (default: 4096)")
    p.add_argument("--input-shape", type=int, nargs="+", default=[3, 32, 32], metavar="N", help="default: 3 32 32")
    p.add_argument("--steps", type=int, default=3, help="timed steps per variant, best of (default: 3)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="default: cpu")
    p.add_argument("--peak-size", type=int, default=4096, help="n of the n×n torch.mm peak (default: 4096)")
    p.add_argument("--peers", action="store_true", help="also compare topk and mp with overcomplete's TopKSAE and MpSAE")
    p.add_argument("--peer-encode-batch", type=int, default=1024, help="batch of the MP encode comparison (default: 1024)")
    p.add_argument("--peer-k", type=int, default=32, help="k of the peer comparison (default: 32)")
    p.add_argument("--peer-repeats", type=int, default=5, help="timed calls of each side (default: 5)")
    p.add_argument("--stack", type=int, default=0, metavar="M", help="instead: per-model step time of each "
                   "stackable variant alone against M models trained as one stack (writes OUT's *_stacked.csv)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's; the grid's children use 1)")
    p.add_argument("--out", type=Path, default=Path("results/perf.csv"), help="default: results/perf.csv")
    p.set_defaults(handler=cmd_perf)


def resolve_device(choice: str) -> torch.device:
    from benchmark.errors import UserError

    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda, but no CUDA device is available: use --device cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def cmd_perf(args) -> int:
    from benchmark.errors import UserError

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stack < 0 or args.stack == 1:
        raise UserError(f"--stack needs at least 2 models, got {args.stack}")
    if args.stack:
        names = args.variant or stackable_variants()
        x = torch.randn(args.batch, *args.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
        print(f"perf --stack on {device_name(device)}, torch {torch.__version__}: batch {args.batch}, K "
              f"{args.n_latents}, input {'x'.join(map(str, args.input_shape))}, {args.stack} models; best of "
              f"{args.steps} (median beside)")
        run_stack_comparison(names, x, args.n_latents, args.stack, args.steps,
                             args.out.with_name(args.out.stem + "_stacked.csv"))
        return 0
    names = args.variant or image_variants()
    unknown = [n for n in names if n not in VARIANTS.names()]
    if unknown:
        raise UserError(f"unknown variant(s) {', '.join(unknown)}; see `python -m benchmark list`")
    x = torch.rand(args.batch, *args.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    peak = MatmulPeak(device, args.peak_size)
    print(f"perf on {device_name(device)}, torch {torch.__version__}: batch {args.batch}, K {args.n_latents}, "
          f"input {'x'.join(map(str, args.input_shape))}; best of {args.steps} steps, each after a "
          f"{args.peak_size}² torch.mm peak sample (ratios within this run; other load on the machine "
          "slows both alike)")
    rows, extras, failed = [], [], []
    for name in names:
        try:
            row, extra = measure_variant(name, x, args.n_latents, peak, args.steps)
        except Exception as err:  # one broken variant (e.g. out of memory) must not stop the rest
            failed.append(name)
            print(f"  {name}: error: {type(err).__name__}: {err}", flush=True)
            continue
        rows.append(row)
        extras.append(extra)
        print(f"  {name}: {row.samples_per_s:.1f} samples/s, {row.frac_of_peak:.0%} of peak", flush=True)
    write_csv(rows, args.out)
    print(format_table(rows, extras))
    print(f"wrote {args.out}")
    if args.peers:
        run_peer_comparison(args, x, args.out.with_name(args.out.stem + "_peers.csv"))
    return 1 if failed else 0
