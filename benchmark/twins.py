"""Untrained twins: every trainable variant beside itself with zero training.

A number a trained SAE earns should be one its training produced. The twin of a variant is the
same constructor, hyperparameters and seed, `init_from_data` applied, zero optimiser steps; it
runs through every task beside the trained model, named `<variant>-untrained` in results and
"<variant> (untrained)" in the leaderboard, and is never cached (it costs nothing to rebuild).
Its L0 is whatever its own codes give: a k-sparse twin (topk, batchtopk, matryoshka, mp) sits at
L0 ≈ k by construction, so its sweep brackets the same targets as the trained sweep; a
penalty-based twin (relu, dense, jumprelu, tensor, conv) has the L0 its initialisation gives,
often far denser than any target, and is then `n/r` there, like any model whose sweep misses.
(`benchmark.training.untrained` builds one.)
"""
TWIN_SUFFIX = "-untrained"


def twin_name(variant: str) -> str:
    return variant + TWIN_SUFFIX


def is_twin(name: str) -> bool:
    return str(name).endswith(TWIN_SUFFIX)


def base_name(name: str) -> str:
    """The trained variant a twin stands beside (a name that is not a twin, unchanged)."""
    return name[: -len(TWIN_SUFFIX)] if is_twin(name) else name

