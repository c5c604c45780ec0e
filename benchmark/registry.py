"""Name -> object registries for variants, tasks and datasets.

Registering a name twice is refused: two files silently overriding each other would make
results depend on import order.
"""
import importlib
import pkgutil
from difflib import get_close_matches

from benchmark.errors import UserError


class Registry:
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package  # the package whose modules register into this registry
        self._items: dict[str, object] = {}
        self._loaded = False

    def register(self, name: str):
        """Decorator: `@VARIANTS.register("relu")`."""

        def decorator(obj):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
            self._items[name] = obj
            obj.name = name
            return obj

        return decorator

    def _load(self):
        # Import every module of the package once, so that one file per entry is all it takes.
        if not self._loaded:
            self._loaded = True
            package = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(package.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str):
        self._load()
        if name not in self._items:
            hint = get_close_matches(name, self._items, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UserError(
                f"unknown {self.kind} {name!r}{suggestion}; known: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


VARIANTS = Registry("variant", "baselines")
CONTROLS = Registry("control", "controls")  # untrained reference bases (SPEC section 2)
TASKS = Registry("task", "tasks")
DATASETS = Registry("dataset", "benchmark.datasets")
