"""Dataset builders, one file each, registered by kind.

A builder is `build(name, *, data_root, download, **params) -> Dataset`. A preset names dataset
instances; each instance has a `kind` (the builder; default: the instance name) and parameters.
"""
import inspect

from benchmark.errors import UserError
from benchmark.registry import DATASETS


def build_dataset(name: str, config: dict, data_root=None, download: bool = False, seed: int | None = None):
    """The dataset instance `name` of a preset. `seed` (the cell's) draws its random parts, so
    the spread over seeds includes data variation; builders without randomness take none."""
    params = dict(config)
    kind = params.pop("kind", name)
    builder = DATASETS.get(kind)
    accepted = set(inspect.signature(builder).parameters) - {"name", "data_root", "download"}
    if seed is not None and "seed" in accepted:
        params["seed"] = seed
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise UserError(
            f"dataset {name!r} (kind {kind}): unknown parameter(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    return builder(name, data_root=data_root, download=download, **params)
