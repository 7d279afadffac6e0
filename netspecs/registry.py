"""Name -> builder registries shared by `flaxnets` and `torchref`.

One registry name per model everywhere: the Flax builder, the torch reference builder, the
converter and `train.main --model` all look models up by torchvision's name.
"""
from __future__ import annotations

import difflib
import functools
import importlib
from typing import Any, Callable, Mapping


class Registry:
    """A name -> builder table. Registering a name twice raises."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, builder: Callable[..., Any] | None = None):
        """Register `builder` under `name`; usable as `@registry.register("name")`."""

        def add(fn: Callable[..., Any]):
            if name in self._builders:
                raise ValueError(f"{self.kind} model {name!r} is already registered")
            self._builders[name] = fn
            return fn

        return add if builder is None else add(builder)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._builders[name]
        except KeyError:
            close = difflib.get_close_matches(str(name), self._builders, n=5, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ValueError(
                f"unknown model {name!r}{hint} (see list_models(): {len(self._builders)} names)"
            ) from None

    def create(self, name: str, **kwargs):
        builder = self.get(name)
        try:
            return builder(**kwargs)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from e


def register_variants(registry: Registry, variants: Mapping[str, Any],
                      build: Callable[..., Any]) -> None:
    """Register `build(config, **knobs)` under every name of `variants` (name -> config).

    The registered builder is `functools.partial(build, config)`: its signature is `build`'s
    keyword knobs, which the parity harness and the trainer read with `inspect.signature`.
    """
    for name, config in variants.items():
        registry.register(name, functools.partial(build, config))


def import_families(package: str) -> None:
    """Import `package.<family>` for every family of `netspecs.FAMILIES` (each registers its
    models in `package`'s registry)."""
    from netspecs import FAMILIES

    for family in FAMILIES:
        importlib.import_module(f"{package}.{family}")
