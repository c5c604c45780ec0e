"""Side-by-side with overcomplete (the vision SAE library; `pip install 'sae-benchmark[peers]'`):
its TopKSAE and MpSAE against our `topk` and `mp`, the same weights loaded into both, on the same
batch, in the same process.

Mapping our parameters onto theirs (read from overcomplete 0.3.0's source):
- TopKSAE: their encoder is Linear(d, K) then ReLU, codes = top-k of the ReLU'd values; ours is
  (x - b_dec)·W_enc + b_enc, top-k, then ReLU. Same codes with their weight = W_encᵀ and their
  bias = b_enc - b_dec·W_enc (their ReLU-then-top-k and our top-k-then-ReLU keep the same
  non-zeros). Their decoder has no bias: their x̂ = ours - b_dec.
- MpSAE: both select the largest *signed* inner product; we clip the coefficient at 0, they do
  not (the two differ only on a row whose every inner product is ≤ 0). Their encoder has no
  b_dec, so they get x - b_dec. Both dictionaries are our unit-norm W_dec (theirs divides by
  ‖row‖ + 1e-8: a rounding-level difference).
Codes are then equal up to float rounding; the comparison prints the largest difference and the
share of rows with the same support. Their MP recomputes residual·Dᵀ and a dense one-hot·D at
each of the k steps; ours updates the correlations through the Gram matrix (baselines/mp.py).
"""
import importlib.util
from datetime import datetime, timezone

import pandas as pd
import torch

from benchmark.registry import VARIANTS
from benchmark.perf.timing import timed
from benchmark.training.loop import training_step


def load_overcomplete():
    """overcomplete.sae, or None when the package is not installed.

    overcomplete 0.3.0's package __init__ imports its plotting helpers, which call
    matplotlib.cm.get_cmap (removed in matplotlib 3.9); we give it matplotlib's own replacement,
    `matplotlib.colormaps.get_cmap`, before importing. Nothing else of matplotlib changes.
    """
    if importlib.util.find_spec("overcomplete") is None:
        return None
    import matplotlib
    import matplotlib.cm

    if not hasattr(matplotlib.cm, "get_cmap"):
        matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    import overcomplete.sae

    return overcomplete.sae


# ----- the same weights in both -----
@torch.no_grad()
def topk_pair(oc, input_shape, n_latents: int, k: int, x: torch.Tensor):
    """(ours, theirs): our `topk` (b_dec = mean of x) and overcomplete's TopKSAE holding the same map."""
    ours = VARIANTS.get("topk")(input_shape, n_latents, k=k).to(x.device)
    ours.init_from_data(x)
    theirs = oc.TopKSAE(ours.input_dim, n_latents, top_k=k, device=str(x.device))
    linear = theirs.encoder.final_block[0]
    linear.weight.copy_(ours.W_enc.t())
    linear.bias.copy_(ours.b_enc - ours.b_dec @ ours.W_enc)
    theirs.dictionary._weights.copy_(ours.W_dec)
    return ours, theirs


@torch.no_grad()
def mp_pair(oc, input_shape, n_latents: int, k: int, x: torch.Tensor):
    """(ours, theirs): our `mp` (b_dec = mean of x) and overcomplete's MpSAE on the same atoms."""
    ours = VARIANTS.get("mp")(input_shape, n_latents, k=k).to(x.device)
    ours.init_from_data(x)
    theirs = oc.MpSAE(ours.input_dim, n_latents, k=k, device=str(x.device))
    theirs.dictionary._weights.copy_(ours.W_dec)
    return ours, theirs


def their_input(ours, x: torch.Tensor) -> torch.Tensor:
    """What overcomplete's TopKSAE gets: the flat batch (its bias absorbs our b_dec)."""
    return x.flatten(1)


def their_mp_input(ours, x: torch.Tensor) -> torch.Tensor:
    """What overcomplete's MpSAE gets: the flat batch minus our b_dec (it has no such bias)."""
    return (x.flatten(1) - ours.b_dec).detach()


@torch.no_grad()
def encode_both(ours, theirs, x: torch.Tensor, their_x: torch.Tensor):
    ours.eval()
    theirs.eval()
    return ours.encode(x), theirs.encode(their_x)[1]


def code_agreement(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Largest difference relative to the largest code, and the share of rows whose sets of
    non-zero latents are identical."""
    scale = a.abs().max().clamp_min(1e-30)
    return {
        "max_rel_code_diff": float((a - b).abs().max() / scale),
        "same_support_frac": float(((a != 0) == (b != 0)).all(1).float().mean()),
    }


# ----- timing -----
def interleaved_times(fns: dict, repeats: int, device) -> dict:
    """Wall seconds of each call, the callables interleaved round by round so that a change in
    the machine's load hits them alike."""

    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times


def their_training_step(theirs, x_flat: torch.Tensor):
    """The body of overcomplete's `train_sae` loop with a squared-error criterion."""
    optimiser = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    theirs.train()

    def step():
        optimiser.zero_grad()
        _, _, x_hat = theirs(x_flat)
        loss = (x_flat - x_hat).square().mean()
        loss.backward()
        optimiser.step()
        return loss.detach()
    return step


def our_training_step(ours, x: torch.Tensor):
    optimiser = torch.optim.Adam(ours.parameters(), lr=1e-3)
    ours.train()
    return lambda: training_step(ours, optimiser, x)


def compare_topk(oc, x: torch.Tensor, n_latents: int, k: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    ours, theirs = topk_pair(oc, x.shape[1:], n_latents, k, x)
    agreement = code_agreement(*encode_both(ours, theirs, x, their_input(ours, x)))
    with torch.no_grad():
        enc = interleaved_times({"ours": lambda: ours.encode(x), "theirs": lambda: theirs.encode(their_input(ours, x))},
                                repeats, x.device)
    ours_step, theirs_step = our_training_step(ours, x), their_training_step(theirs, their_input(ours, x))
    ours_step(), theirs_step()  # warm-up: Adam state, first-call costs
    train = interleaved_times({"ours": ours_step, "theirs": theirs_step}, repeats, x.device)
    return [dict(comparison="topk encode", **_ratio(enc), **agreement),
            dict(comparison="topk train step", **_ratio(train), **agreement)]


def compare_mp(oc, x: torch.Tensor, n_latents: int, k: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    ours, theirs = mp_pair(oc, x.shape[1:], n_latents, k, x)
    their_x = their_mp_input(ours, x)
    agreement = code_agreement(*encode_both(ours, theirs, x, their_x))
    with torch.no_grad():
        enc = interleaved_times({"ours": lambda: ours.encode(x), "theirs": lambda: theirs.encode(their_x)},
                                repeats, x.device)
    return [dict(comparison="mp encode", **_ratio(enc), **agreement)]


def _ratio(times: dict) -> dict:
    """Best-of and median seconds, and their/our time (above 1: ours is faster)."""
    best = {name: min(t) for name, t in times.items()}
    median = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    return {"ours_s": best["ours"], "theirs_s": best["theirs"], "speedup": best["theirs"] / best["ours"],
            "ours_median_s": median["ours"], "theirs_median_s": median["theirs"],
            "speedup_median": median["theirs"] / median["ours"]}


def run_peer_comparison(args, x: torch.Tensor, out_path) -> None:
    oc = load_overcomplete()
    if oc is None:
        print("peers: overcomplete is not installed (pip install 'sae-benchmark[peers]'); comparison skipped")
        return
    import overcomplete

    k, mp_x = args.peer_k, x[: args.peer_encode_batch]
    print(f"peers: overcomplete {overcomplete.__version__}; topk at batch {x.shape[0]}, mp encode at batch "
          f"{mp_x.shape[0]}; K {args.n_latents}, k {k}; {args.peer_repeats} calls each, ours and theirs interleaved")
    repeats = args.peer_repeats
    rows = [dict(r, batch=x.shape[0]) for r in compare_topk(oc, x, args.n_latents, k, repeats)]
    rows += [dict(r, batch=mp_x.shape[0]) for r in compare_mp(oc, mp_x, args.n_latents, k, repeats)]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for r in rows:
        r.update(n_latents=args.n_latents, k=k, input_dim=x[0].numel(), device=str(x.device),
                 torch_version=torch.__version__,
                 overcomplete_version=overcomplete.__version__, timestamp=stamp)
    frame = pd.DataFrame(rows)
    tmp = out_path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(out_path)
    print(f"{'comparison':16s} {'ours s':>8s} {'theirs s':>9s} {'speedup':>8s} {'(median)':>8s} "
          f"{'max rel code diff':>18s} {'same support':>13s}")
    for r in rows:
        print(f"{r['comparison']:16s} {r['ours_s']:8.3f} {r['theirs_s']:9.3f} {r['speedup']:7.1f}x "
              f"{r['speedup_median']:7.1f}x {r['max_rel_code_diff']:18.1e} {r['same_support_frac']:13.1%}")
    print(f"wrote {out_path}")
