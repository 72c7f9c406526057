"""The house's shape, read from the code: every import points down through the layers, no import
circle, no import inside a function (the optional extras aside), no private name taken from another
package, no function over 80 lines. docs/architecture.md draws the layers.

The checker reads the source (``ast``), imports nothing; it is shown to catch each kind of fault
on a copy of the package with that fault planted.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pyrovae"
# bottom first: a module imports modules of its own layer (with no circle) and of layers below
LAYERS = [
    ("errors", "registry", "plugins", "version"),
    ("config", "presets", "distributed", "plates", "network", "textfile", "likelihoods", "networks", "tracking"),
    ("data",),
    ("families", "vae"),
    ("estimators",),
    ("evaluation",),
    ("diagnostics",),
    ("testing",),
    ("run",),
    ("compare",),
    ("cli", "__main__"),
]
OPTIONAL_EXTRAS = ("tensorboard", "torch.utils.tensorboard", "mlflow", "ray")
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, "pyrovae.run.train"
    target: str  # the imported module (a pyrovae module, or a third-party name)
    names: tuple[str, ...]  # the names taken ("from x import a, b")
    line: int
    in_function: bool


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    package = module if is_package else module.rsplit(".", 1)[0]
    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
    target = ".".join(filter(None, [base, node.module or ""]))
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]


def imports(root: Path) -> list[Import]:
    known = modules(root)
    found = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        inside = {
            id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = tuple(a.name for a in node.names)
                for target in dict.fromkeys(_resolve(module, path.name == "__init__.py", node, known)):
                    found.append(Import(module, target, names, node.lineno, id(node) in inside))
    return found


def layer(module: str) -> int | None:
    """A pyrovae module's layer (by its unit: ``pyrovae.run.train`` is in ``run``); None for the
    package's own ``__init__``, which re-exports every layer."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return next(i for i, units in enumerate(LAYERS) if parts[1] in units)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def long_functions(root: Path) -> list[str]:
    out = []
    for module, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{module}:{node.lineno} {node.name} is {lines} lines (at most {MAX_FUNCTION_LINES})")
    return out


def problems(root: Path) -> list[str]:
    """Every breach of the house rules in the package under ``root``, one line each."""
    known = modules(root)
    out, edges = [], {m: set() for m in known}
    for imp in imports(root):
        ours = imp.target in known
        if ours:
            edges[imp.source].add(imp.target)
        src, dst = layer(imp.source), layer(imp.target) if ours else None
        if ours and src is not None and dst is not None and dst > src:
            out.append(
                f"upward import: {imp.source}:{imp.line} imports {imp.target} ({LAYERS[dst][0]} is above "
                f"{LAYERS[src][0]})"
            )
        if imp.in_function and not imp.target.startswith(OPTIONAL_EXTRAS):
            out.append(f"import inside a function: {imp.source}:{imp.line} imports {imp.target}")
        private = [n for n in imp.names if n.startswith("_") and not n.endswith("__")]
        other_package = ours and imp.target.split(".")[:2] != imp.source.split(".")[:2]
        if private and other_package:
            out.append(
                f"private name across packages: {imp.source}:{imp.line} takes {', '.join(private)} from {imp.target}"
            )
    out += [f"import circle: {' -> '.join(c)}" for c in circles(edges)]
    return out + long_functions(root)


def test_the_package_has_the_shape_it_claims():
    assert problems(ROOT) == []


def test_every_unit_of_the_package_has_a_layer():
    units = {m.split(".")[1] for m in modules(ROOT) if m.count(".") >= 1}
    assert units == {u for layer_units in LAYERS for u in layer_units}


def _plant(tmp_path: Path, relative: str, text: str) -> Path:
    copy = tmp_path / "pyrovae"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__", "*.npz.xz"))
    path = copy / relative
    path.write_text(path.read_text() + "\n" + text + "\n")
    return copy


@pytest.mark.parametrize(
    "relative, planted, found",
    [
        ("errors.py", "from . import registry  # noqa", "import circle: pyrovae.errors -> "),
        ("estimators/elbo.py", "from ..run import train  # noqa", "upward import: pyrovae.estimators.elbo:"),
        ("vae.py", "from .families import gaussian\nfrom . import estimators  # noqa", "upward import: pyrovae.vae:"),
        (
            "plates.py",
            "def later():\n    from .likelihoods import make\n    return make",
            "import inside a function: pyrovae.plates:",
        ),
        (
            "run/parts.py",
            "from ..estimators.traced import _Constant  # noqa",
            "private name across packages: pyrovae.run.parts:",
        ),
        ("config.py", "def long():\n" + "    x = 1\n" * 90, "pyrovae.config:"),
    ],
    ids=["circle", "upward", "upward-vae", "hidden", "private", "long"],
)
def test_the_checker_catches_each_planted_fault(tmp_path, relative, planted, found):
    shown = problems(_plant(tmp_path, relative, planted))
    assert any(line.startswith(found) for line in shown), shown
    assert problems(ROOT) == []  # the real package is untouched


def test_an_optional_extra_may_be_imported_inside_a_function(tmp_path):
    copy = _plant(tmp_path, "tracking/base.py", "def later():\n    import mlflow\n    return mlflow")
    assert problems(copy) == []
