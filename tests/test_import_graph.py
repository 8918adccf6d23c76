"""The package's modules import each other without a circle.

Every ``import`` statement counts, also one deferred into a function: a deferred import hides a
circle from the interpreter, not from the reader. The lazy re-exports of a package's
module-level ``__getattr__`` (PEP 562: ``diffcrystal.api`` from ``diffcrystal``) are not
counted, as they run only after the package is loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffcrystal"

def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module and package of ``package``."""
    files = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    return files


def _import_statements(tree: ast.Module):
    lazy_exports = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    skipped = {id(n) for export in lazy_exports for n in ast.walk(export)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skipped]


def imported_modules(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports."""
    found = set()
    for node in _import_statements(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:  # relative: from the module's package, one level up per extra dot
            base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module
        found.add(target)
        found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules imported by name
    return found & modules - {name}


def import_circles(files: dict[str, Path]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module in the import graph."""
    graph = {name: imported_modules(name, path, set(files)) for name, path in files.items()}
    order, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module: str) -> None:  # Tarjan's algorithm
        order[module] = low[module] = len(order)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            component = set()
            while not component or module not in component:
                component.add(stack.pop())
            on_stack.difference_update(component)
            if len(component) > 1:
                circles.append(frozenset(component))

    for module in graph:
        if module not in order:
            visit(module)
    return circles


def test_the_package_has_no_import_circle():
    files = module_files()
    assert "diffcrystal.overview" in files and "diffcrystal.sampling" in files
    circles = [sorted(c) for c in import_circles(files)]
    assert circles == [], f"modules importing each other: {circles}"


def test_a_deferred_import_closes_a_circle(tmp_path):
    package = tmp_path / "demo"
    package.mkdir()
    (package / "__init__.py").write_text("def __getattr__(name):\n    from demo import b\n    return b\n")
    (package / "a.py").write_text("from demo.b import f\n")
    (package / "b.py").write_text("def f():\n    from . import a\n")
    (package / "c.py").write_text("import demo\n")
    assert import_circles(module_files(package)) == [frozenset({"demo.a", "demo.b"})]
