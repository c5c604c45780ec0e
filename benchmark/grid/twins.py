"""Untrained twins: every trainable variant beside itself with zero training.

A number a trained SAE earns should be one its training produced. The twin of a variant is the
same constructor, hyperparameters and seed, `init_from_data` applied, zero optimiser steps; it
runs through every task beside the trained model, named `<variant>-untrained` in results and
"<variant> (untrained)" in the leaderboard, and is never cached (it costs nothing to rebuild).
Its sparsity:
- a k-sparse variant (its constructor takes `k`: topk, batchtopk, matryoshka, mp) has one twin
  per sweep setting, at L0 ≈ k by construction, so the twins bracket the trained sweep's targets;
- any other variant (penalty-based: relu, dense, jumprelu, tensor, conv, and external variants
  without `k`) would sit at the L0 its initialisation gives (≈ K/2 for a ReLU encoder at init),
  `n/r` at every target. Its twin is built from its first sweep setting (a penalty's weight
  does not change an untrained model) and keeps each sample's `keep_top` = t largest |codes|,
  one twin per L0 target t and one at twice the largest (so that every target is bracketed even
  where a few samples have fewer than t non-zero codes): the same untrained encoder and decoder,
  read at the targets' sparsity.
(`benchmark.training.loop.untrained` builds one.)
"""
import inspect

from benchmark.registry import VARIANTS

TWIN_SUFFIX = "-untrained"
KEEP_TOP = "keep_top"  # a penalty-based twin's setting: the codes it keeps per sample


def twin_name(variant: str) -> str:
    return variant + TWIN_SUFFIX


def is_twin(name: str) -> bool:
    return str(name).endswith(TWIN_SUFFIX)


def base_name(name: str) -> str:
    """The trained variant a twin stands beside (a name that is not a twin, unchanged)."""
    return name[: -len(TWIN_SUFFIX)] if is_twin(name) else name



def is_k_sparse(cls) -> bool:
    """Whether the variant's sparsity is a constructor argument `k` (its twin is then as sparse
    as its trained self) rather than learned from a penalty."""
    return "k" in inspect.signature(cls).parameters


def k_sparse_variants() -> list[str]:
    """The registered variants whose sparsity is their `k` (is_k_sparse), by name."""
    return [name for name in VARIANTS.names() if is_k_sparse(VARIANTS.get(name))]


def keep_top_levels(l0_targets) -> list[int]:
    """The `keep_top` settings of a penalty-based twin: every target, and twice the largest."""
    levels = {max(1, round(t)) for t in l0_targets}
    return sorted(levels | {2 * max(levels)})
