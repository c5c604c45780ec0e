"""`python -m benchmark perf --stack M`: the per-model time of one training step, a model trained
alone against M models trained as one stack (benchmark/training/stacking.py), for every stackable variant.

Both sides run `benchmark.training.loop.training_step` as the training loop does: the single model on
a (B, ...) batch with its own fused Adam, the stack on (M, B, ...) with one fused Adam over the
stacked parameters. The models of the stack are the variant with its constructor defaults under
M different initialisation seeds. Each repeat times both sides back to back (best and median of
the repeats are reported), so machine load affects both alike; the ratio is what to read.

The floor: what a step would cost if it were nothing but its matrix products. A step's FLOPs
(benchmark/perf/counting.py: products, convolutions and sparse decodes, forward and backward)
at the speed of the stack's own encoder product, (M, B, d) @ (M, d, K) as one batched product,
timed in the same repeats. Stacking removes per-step overhead, never products, so single / floor
bounds what any stacking can gain; stacked / floor is the overhead it leaves.
"""
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmark.perf.counting import count_flops, gflops
from benchmark.perf.timing import build_variant, device_name, synchronize, timed
from benchmark.registry import VARIANTS
from benchmark.training.stacking import is_stackable, stack
from benchmark.training.loop import adam, training_step


@dataclass
class StackRow:
    variant: str
    device: str
    batch: int
    n_latents: int
    input_shape: str
    models: int
    single_ms: float  # best single step
    stacked_ms_per_model: float  # best stacked step over M
    speedup: float  # single / stacked per model (best)
    speedup_median: float
    flops_per_model: int  # one step's products (the stack's over M; equal to the single model's)
    bmm_gflops: float  # the batched encoder product's speed (best)
    floor_ms_per_model: float  # flops_per_model at that speed
    torch_version: str


def stackable_variants() -> list[str]:
    return [name for name in VARIANTS.names() if is_stackable(VARIANTS.get(name))]


def _models(name: str, shape, n_latents: int, count: int, device, x) -> list:
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        model = build_variant(name, shape, n_latents, device)
        model.init_from_data(x)
        model.train()
        models.append(model)
    return models


def measure_stack(name: str, x: torch.Tensor, n_latents: int, count: int, repeats: int) -> StackRow:
    device = x.device
    single = _models(name, x.shape[1:], n_latents, 1, device, x)[0]
    single_opt = adam(single, 1e-3)
    stacked = stack(_models(name, x.shape[1:], n_latents, count, device, x),
                    [{}] * count)  # constructor defaults: nothing varies but the seed
    stacked_opt = adam(stacked, 1e-3)
    xs = x.expand(count, *x.shape).contiguous()
    run_single = lambda: training_step(single, single_opt, x)  # noqa: E731
    run_stack = lambda: training_step(stacked, stacked_opt, xs)  # noqa: E731
    products = encoder_product(xs, single.n_latents)
    flops = count_flops(run_stack) // count  # also a warm-up step: Adam state, allocator, first calls
    run_single(), run_stack(), products()
    synchronize(device)
    singles, stacks, product_seconds = [], [], []
    for _ in range(repeats):
        singles.append(timed(run_single, device))
        stacks.append(timed(run_stack, device) / count)
        product_seconds.append(timed(products, device))
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    speed = gflops(2 * xs.numel() * single.n_latents, min(product_seconds))
    return StackRow(name, device_name(device), x.shape[0], single.n_latents, "x".join(map(str, x.shape[1:])), count,
                    min(singles) * 1e3, min(stacks) * 1e3, min(singles) / min(stacks),
                    median(singles) / median(stacks), flops, speed, flops / (speed * 1e9) * 1e3, torch.__version__)


def encoder_product(xs: torch.Tensor, n_latents: int):
    """One (M, B, d) @ (M, d, K) batched product, as a stack's encoder does, to time."""
    weight = torch.randn(xs.shape[0], xs[0, 0].numel(), n_latents, generator=torch.Generator().manual_seed(1))
    weight, flat = weight.to(xs.device), xs.flatten(2)
    return lambda: torch.bmm(flat, weight)


def run_stack_comparison(names: list[str], x: torch.Tensor, n_latents: int, count: int, repeats: int,
                         out: Path) -> list[StackRow]:
    rows = []
    for name in names:
        if not is_stackable(VARIANTS.get(name)):
            print(f"  {name}: not stackable (trains one model at a time)")
            continue
        row = measure_stack(name, x, n_latents, count, repeats)
        rows.append(row)
        print(f"  {name}: single {row.single_ms:.3f} ms, stacked {row.stacked_ms_per_model:.3f} ms per model "
              f"({row.speedup:.2f}x)", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([asdict(r) for r in rows]).to_csv(out, index=False)
    print(format_stack_table(rows))
    print(f"wrote {out}")
    return rows


def format_stack_table(rows: list[StackRow]) -> str:
    lines = [f"{'variant':12s} {'single ms':>10s} {'stacked ms/model':>17s} {'speedup':>8s} {'(median)':>8s} "
             f"{'floor ms/model':>15s} {'single/floor':>13s} {'stacked/floor':>14s}"]
    for r in rows:
        lines.append(f"{r.variant:12s} {r.single_ms:10.3f} {r.stacked_ms_per_model:17.3f} {r.speedup:7.2f}x "
                     f"{r.speedup_median:7.2f}x {r.floor_ms_per_model:15.3f} {r.single_ms / r.floor_ms_per_model:12.2f}x "
                     f"{r.stacked_ms_per_model / r.floor_ms_per_model:13.2f}x")
    return "\n".join(lines)
