"""Plugins: classes from outside pyrovae, named by import path or registered by an installed package.

Wherever pyrovae takes a registry name (an estimator, a likelihood), it also takes

- an import path ``package.module:Name`` (a module in the working directory is found too, as
  ``python -m`` would find it), or
- a name an installed distribution registers as an entry point in the group ``pyrovae.<kind>s``
  (``pyrovae.estimators``, ``pyrovae.likelihoods``), e.g. in its ``pyproject.toml``::

      [project.entry-points."pyrovae.estimators"]
      vargrad = "my_package.vargrad:VarGrad"

Every plugin class carries an :class:`Origin`: its import path, where it came from, and its
version (its distribution's version, and a hash of its source file), which run identities and
comparison reports record, so that a result can be traced to the code that produced it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
GROUP_PREFIX = "pyrovae."


def is_import_path(name: str) -> bool:
    """Whether ``name`` is written ``package.module:Name``."""
    return bool(IMPORT_PATH.match(name))


def group(kind: str) -> str:
    """The entry-point group of a kind of plugin: ``pyrovae.estimators``."""
    return f"{GROUP_PREFIX}{kind}s"


@dataclass(frozen=True)
class Origin:
    """Where a plugin class came from and which version of its code it is."""

    import_path: str  # module:Name, what a worker imports
    via: str  # "import path" or "entry point"
    distribution: str | None  # the installed distribution that holds the module, if any
    version: str | None  # that distribution's version
    source_sha256: str | None  # of the module's source file (first 16 hex digits)
    root: str | None  # the sys.path entry the module was found under, for workers elsewhere

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def code(self) -> dict[str, Any]:
        """What identifies the plugin's code: its import path, version and source hash."""
        return {"import_path": self.import_path, "version": self.version, "source_sha256": self.source_sha256}

    def describe(self) -> str:
        """``my_module:MyBound (source sha256 1a2b...)``, ``pkg.mod:Cls (my-dist 0.3.1, ...)``."""
        parts = [f"{self.distribution} {self.version}"] if self.distribution else []
        parts += [f"source sha256 {self.source_sha256}"] if self.source_sha256 else []
        return f"{self.import_path} ({', '.join(parts) or 'no version'}; {self.via})"


def load(path: str, what: str) -> Any:
    """The object at ``package.module:Name``; one :class:`ConfigError` line naming the module and
    the error when it does not import or lacks the name (``what`` words it: "estimator ...")."""
    module_name, _, attr = path.partition(":")
    module = _import(module_name, f"{what} {path!r}")
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = ", ".join(sorted(n for n in vars(module) if not n.startswith("_"))) or "(nothing)"
            raise ConfigError(f"{what} {path!r}: module {module_name!r} has no {attr!r}; it defines: {public}")
        obj = getattr(obj, part)
    return obj


def _import(module_name: str, what: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        top = module_name.split(".")[0]
        if e.name == top and _add_working_directory():
            return _import(module_name, what)
        raise ConfigError(f"{what}: cannot import module {module_name!r}: {_one_line(e)}") from e
    except Exception as e:  # a plugin's own error at import (a SyntaxError, a failed import inside it)
        raise ConfigError(f"{what}: cannot import module {module_name!r}: {_one_line(e)}") from e


def _add_working_directory() -> bool:
    """Put the working directory on ``sys.path`` (last) if it is not there: whether it was added."""
    cwd = os.getcwd()
    if cwd in sys.path or "" in sys.path:
        return False
    sys.path.append(cwd)
    importlib.invalidate_caches()
    return True


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@functools.cache
def entry_points(kind: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points installed distributions register for ``kind``, by name (read once a process)."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=group(kind))}


def load_entry_point(ep: importlib.metadata.EntryPoint, kind: str) -> Any:
    what = f"{kind} {ep.name!r} (entry point {ep.value!r} of {_dist_name(ep) or 'an unknown distribution'})"
    if not is_import_path(ep.value):
        raise ConfigError(f"{what}: an entry point must name a class, package.module:Name")
    return load(ep.value, what)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


def origin(obj: Any, via: str) -> Origin:
    """The origin of a plugin class (or function) ``obj``."""
    module = sys.modules.get(obj.__module__)
    file = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()[:16] if file and Path(file).is_file() else None
    dist = _distribution(obj.__module__)
    version = None
    if dist is not None:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            dist = None
    return Origin(f"{obj.__module__}:{obj.__qualname__}", via, dist, version, digest, _root(obj.__module__, file))


def _distribution(module_name: str) -> str | None:
    names = _packages().get(module_name.split(".")[0], [])
    return names[0] if names else None


@functools.cache
def _packages() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _root(module_name: str, file: str | None) -> str | None:
    """The folder that holds the module's top-level package (or the module itself)."""
    if not file:
        return None
    path = Path(file).resolve()
    depth = module_name.count(".") + (1 if path.name == "__init__.py" else 0)
    return str(path.parents[depth])


def add_roots(roots: list[str]) -> None:
    """Make plugins found under ``roots`` importable here (a worker on another node, a Ray task)."""
    for root in roots:
        if root not in sys.path:
            sys.path.append(root)
    importlib.invalidate_caches()
