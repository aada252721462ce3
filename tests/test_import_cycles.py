"""No module of the package imports another in a circle (issue 21), lazy imports included.

A lazy import (inside a function) is still a dependency: it only moves the failure from import
time to the first call, and it hides the cycle from import-linter's layers. Imports under
``if TYPE_CHECKING:`` are left out: they never run. Modules are found through pyproject's
package-dir, so a folder added there is walked too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def package_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module pyproject's package-dir maps."""
    dirs: dict[str, str] = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for package, folder in dirs.items():
        for file in (root / folder).rglob("*.py"):
            parts = [p for p in file.relative_to(root / folder).with_suffix("").parts if p != "__init__"]
            name = ".".join([package, *parts])
            # a sub-folder mapped on its own entry is named through that entry
            if any(o != package and o.startswith(package + ".") and name.startswith(o + ".") for o in dirs):
                continue
            modules[name] = file
    return modules


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(name: str, file: Path, known: set[str]) -> set[str]:
    """The package's modules ``file`` imports at run time, wherever the import statement is."""
    package = name if file.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(file.read_text()))
    return {m for m in found if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = package_modules(root)
    return {name: imported_modules(name, file, set(modules)) for name, file in modules.items()}


def test_no_module_imports_another_in_a_circle() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 100  # the walk found the package, not an empty folder
    found = cycles(graph)
    assert found == [], "import cycles (lazy imports count):\n" + "\n".join(" -> ".join(c) for c in found)


def test_a_lazy_import_cycle_is_found(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.setuptools]\npackage-dir = { "pkg" = "src" }\n')
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "__init__.py").write_text("")
    (tmp_path / "src" / "a.py").write_text("from pkg.b import thing\n")
    (tmp_path / "src" / "b.py").write_text("def thing():\n    from . import c\n")
    (tmp_path / "src" / "c.py").write_text("def later():\n    import pkg.a\n")
    (tmp_path / "src" / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import thing\n")
    (tmp_path / "src" / "e.py").write_text("from pkg import d\n")
    assert cycles(import_graph(tmp_path)) == [["pkg.a", "pkg.b", "pkg.c"]]
