"""A name -> class registry whose ``make(name, **options)`` fails at once with the valid choices."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def option_names(cls: type) -> list[str]:
    """Keyword options a class accepts, following ``**kwargs`` up the MRO."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        takes_more = False
        for p in params:
            if p.name == "self" or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                takes_more = True
            elif p.name not in names:
                names.append(p.name)
        if not takes_more:
            break
    return names


class Registry(Generic[T]):
    """Classes registered under a name; ``kind`` ("likelihood", "estimator") words the errors."""

    def __init__(self, kind: str, implicit: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.implicit = implicit  # arguments pyrovae passes itself, not options (x_dim)
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type[T]:
        if name not in self._classes:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {', '.join(self.names())}")
        return self._classes[name]

    def options(self, name: str) -> list[str]:
        return [o for o in option_names(self.get(name)) if o not in self.implicit]

    def make(self, name: str, **options: Any) -> T:
        cls = self.get(name)
        valid = option_names(cls)
        unknown = sorted(set(options) - set(valid))
        valid = [o for o in valid if o not in self.implicit]
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )
        return cls(**options)
