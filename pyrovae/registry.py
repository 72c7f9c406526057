"""A name -> class registry whose ``make(name, **options)`` fails at once with the valid choices.

Option values are checked against the constructor's type annotations before the class sees them,
so a value of the wrong type (``alpha="abc"``) is one :class:`ConfigError` for every registered
class, not a ``TypeError`` deep inside one of them.
"""

from __future__ import annotations

import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from . import plugins
from .errors import ConfigError

T = TypeVar("T")


def _signatures(cls: type) -> list[tuple[inspect.Parameter, Any]]:
    """Each keyword parameter of ``cls``'s constructors with its annotation, following ``**kwargs``
    up the MRO; the first (most derived) declaration of a name wins."""
    out: dict[str, tuple[inspect.Parameter, Any]] = {}
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        init = vars(klass)["__init__"]
        try:
            hints = typing.get_type_hints(init)
        except (NameError, TypeError):  # an annotation that does not resolve: its values go unchecked
            hints = {}
        takes_more = False
        for p in inspect.signature(init).parameters.values():
            if p.name == "self" or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                takes_more = True
            elif p.name not in out:
                out[p.name] = (p, hints.get(p.name, Any))
        if not takes_more:
            break
    return list(out.values())


def option_names(cls: type) -> list[str]:
    """Keyword options a class accepts, following ``**kwargs`` up the MRO."""
    return [p.name for p, _ in _signatures(cls)]


def option_types(cls: type) -> dict[str, Any]:
    """Each option's annotation (``Any`` where there is none)."""
    return {p.name: hint for p, hint in _signatures(cls)}


_WORDS = {
    bool: "true or false (bool)",
    int: "an integer (int)",
    float: "a finite number (float)",
    str: "a string (str)",
}


def describe(hint: Any) -> str:
    """An annotation in words: ``float | str | None`` -> "a number (float) or a string (str)"."""
    if hint in _WORDS:
        return _WORDS[hint]
    if hint is Any:
        return "values"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict:
        return f"a table of {describe(args[1])}" if args else "a table"
    return getattr(hint, "__name__", str(hint))


def conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits ``hint``, and the value to pass: converted where that is lossless
    (an int where a float is wanted), else unchanged. Unknown kinds of annotation accept anything."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True, value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        # an exact match first (1 stays an int for ``int | float``), then a lossless conversion
        for exact in (True, False):
            for arg in args:
                ok, out = conform(value, arg)
                if ok and (not exact or type(out) is type(value)):
                    return True, out
        return False, value
    if origin is typing.Literal:
        return value in args, value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[A, B]: one type a place
            inner = list(args) if len(args) == len(value) else None
        else:  # list[A], tuple[A, ...]
            inner = [args[0] if args else Any] * len(value)
        if inner is None:
            return False, value
        results = [conform(v, h) for v, h in zip(value, inner, strict=True)]
        return all(ok for ok, _ in results), origin(out for _, out in results)
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        key_hint, value_hint = args if args else (Any, Any)
        entries = {k: conform(v, value_hint) for k, v in value.items()}
        ok = all(conform(k, key_hint)[0] for k in value) and all(ok for ok, _ in entries.values())
        return ok, {k: out for k, (_, out) in entries.items()}
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    number = isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"
    if hint is int:  # numpy's integers too, as Python ints
        ok = number and isinstance(value, numbers.Integral)
        return ok, int(value) if ok else value
    if hint is float:  # no option means anything by inf or nan; a check in every class would be missed once
        ok = number and math.isfinite(value)
        return ok, float(value) if ok else value
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value  # a TypeVar, a Protocol, ...: not ours to judge


class Registry(Generic[T]):
    """Classes registered under a name; ``kind`` ("likelihood", "estimator") words the errors.

    Besides the names registered here, ``get`` and ``make`` take a plugin (:mod:`pyrovae.plugins`):
    a name an installed distribution registers in the entry-point group ``pyrovae.<kind>s``, or an
    import path ``package.module:Name``, whose class must derive from ``base``.
    """

    def __init__(self, kind: str, implicit: tuple[str, ...] = (), base: type | None = None) -> None:
        self.kind = kind
        self.implicit = implicit  # arguments pyrovae passes itself, not options (x_dim)
        self.base = base
        self._classes: dict[str, type[T]] = {}
        self._plugins: dict[str, tuple[type[T], plugins.Origin]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        """The built-in names, then the names installed plugins register (a plugin never hides a
        built-in)."""
        return sorted(self._classes) + self.plugin_names()

    def builtin_names(self) -> list[str]:
        return sorted(self._classes)

    def plugin_names(self) -> list[str]:
        """Names installed distributions register as entry points (``pyrovae.<kind>s``)."""
        return sorted(n for n in plugins.entry_points(self.kind) if n not in self._classes)

    def shadowed(self) -> list[str]:
        """Entry-point names that a built-in of the same name hides."""
        return sorted(n for n in plugins.entry_points(self.kind) if n in self._classes)

    def get(self, name: str) -> type[T]:
        if name in self._classes:
            return self._classes[name]
        return self._plugin(name)[0]

    def origin(self, name: str) -> plugins.Origin | None:
        """Where the class ``name`` names came from; None for a built-in."""
        return None if name in self._classes else self._plugin(name)[1]

    def _plugin(self, name: str) -> tuple[type[T], plugins.Origin]:
        if name not in self._plugins:
            found = plugins.entry_points(self.kind).get(name)
            if found is not None:
                obj, via = plugins.load_entry_point(found, self.kind), f"entry point {name!r}"
            elif plugins.is_import_path(name):
                obj, via = plugins.load(name, self.kind), "import path"
            else:
                valid = ", ".join(self.names())
                raise ConfigError(
                    f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}, or a plugin's package.module:Name"
                )
            self._plugins[name] = (self._check_plugin(name, obj), plugins.origin(obj, via))
        return self._plugins[name]

    def _check_plugin(self, name: str, obj: Any) -> type[T]:
        base = self.base or object
        if not (isinstance(obj, type) and issubclass(obj, base)):
            what = obj.__name__ if isinstance(obj, type) else type(obj).__name__ + " object"
            raise ConfigError(
                f"{self.kind} {name!r} is {what}, not a subclass of {base.__module__}.{base.__qualname__}"
            )
        if "name" not in vars(obj):  # errors and reports name it as it was asked for
            obj.name = name  # type: ignore[attr-defined]
        return typing.cast(type[T], obj)

    def options(self, name: str) -> list[str]:
        return [o for o in option_names(self.get(name)) if o not in self.implicit]

    def make(self, name: str, **options: Any) -> T:
        """``cls(**options)`` for the class registered as ``name``, once every option is known
        and of its annotated type; a bad one is a :class:`ConfigError` naming it."""
        cls = self.get(name)
        types_ = option_types(cls)
        unknown = sorted(set(options) - set(types_))
        if unknown:
            valid = [o for o in types_ if o not in self.implicit]
            raise ConfigError(
                f"{self.kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(valid) or '(none)'}"
            )
        checked = {}
        for key, value in options.items():
            ok, checked[key] = conform(value, types_[key])
            if not ok:
                raise ConfigError(f"{self.kind} {name!r}: option {key} needs {describe(types_[key])}, got {value!r}")
        return cls(**checked)
