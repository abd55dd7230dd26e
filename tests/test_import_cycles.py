"""No import cycles in `mile`, neither between modules nor between packages.

A cycle means neither side can be read, tested or imported without the other, and it is what pushes imports into
function bodies. So imports at any depth count (inside functions too): hiding a cycle in a function does not
pass. Packages are `mile.<first-level name>`; a top-level module such as `mile.config` is its own node.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import mile

Graph = Mapping[str, set[str]]


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at `root` (packages by their __init__)."""
    files: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _base(node: ast.ImportFrom, package: str) -> str:
    """The module a `from ... import` reads from, relative levels resolved against `package`."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    parts = parts[: len(parts) - node.level + 1]
    return ".".join([*parts, node.module] if node.module else parts)


def imported_modules(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The modules of `known` that module `name` imports anywhere in its file; `from pkg import mod` is `mod`."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base(node, package)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return (found & known) - {name}


def module_graph(root: Path) -> dict[str, set[str]]:
    files = module_files(root)
    return {name: imported_modules(name, path, files) for name, path in files.items()}


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def package_graph(modules: Graph) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {package_of(m): set() for m in modules}
    for module, imports in modules.items():
        graph[package_of(module)].update(package_of(i) for i in imports)
    for package, imports in graph.items():
        imports.discard(package)
    return graph


def _reachable(graph: Graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: Graph) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (the graphs are small: plain reachability)."""
    reach = {node: _reachable(graph, node) for node in graph}
    found = {
        frozenset({node} | {o for o in reach[node] if node in reach[o]})
        for node in graph
        if node in reach[node]
    }
    return sorted(found, key=sorted)


def describe(cycle: frozenset[str], modules: Graph, node_of: Callable[[str], str] | None = None) -> str:
    """The imports that make up a cycle (of modules, or of the nodes `node_of` maps modules to), one a line."""
    node_of = node_of or (lambda module: module)
    edges = sorted(
        f"  {m} -> {i}"
        for m, imports in modules.items()
        for i in imports
        if node_of(m) in cycle and node_of(i) in cycle and node_of(m) != node_of(i)
    )
    return f"{' <-> '.join(sorted(cycle))}:\n" + "\n".join(edges)


ROOT = Path(mile.__file__).parent


def test_no_module_cycles() -> None:
    modules = module_graph(ROOT)
    found = cycles(modules)
    assert not found, "module import cycles:\n" + "\n".join(describe(c, modules) for c in found)


def test_no_package_cycles() -> None:
    modules = module_graph(ROOT)
    found = cycles(package_graph(modules))
    assert not found, "package import cycles:\n" + "\n".join(describe(c, modules, package_of) for c in found)


def test_scanner_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from .. import a\n")
    (package / "c.py").write_text("import pkg.a\nfrom .sub.b import x\n")
    modules = module_graph(package)
    assert modules == {"pkg": set(), "pkg.sub": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub.b": {"pkg.a"},
                       "pkg.c": {"pkg.a", "pkg.sub.b"}}  # fmt: skip
    assert cycles(modules) == [frozenset({"pkg.a", "pkg.sub.b"})]
    assert cycles(package_graph(modules)) == [frozenset({"pkg.a", "pkg.sub"})]
